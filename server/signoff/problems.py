"""Validation mistakes in a file or the environment, as a person reads them: the dotted path
of each wrong key and what is wrong with it (pydantic's "Value error, " prefix dropped)."""

from pydantic import ValidationError


def problems(error: ValidationError) -> list[tuple[str, str]]:
    """(path, message) per problem; the path is "" for the document as a whole."""
    return [
        (
            ".".join(str(part) for part in problem["loc"]),
            problem["msg"].removeprefix("Value error, "),
        )
        for problem in error.errors()
    ]


def summary(error: ValidationError) -> str:
    """Every problem as "path: message", joined by "; "."""
    return "; ".join(f"{path}: {message}" if path else message for path, message in problems(error))
