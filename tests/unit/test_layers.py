"""Dependencies point inward: the domain imports none of the other layers, and use cases
work through the repository (a unit of work), never through SQLAlchemy itself, so that the
execution layer under them can be replaced alone."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "server" / "signoff"


def imports(folder: str) -> list[tuple[str, str]]:
    found = []
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found += [(path.name, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.append((path.name, node.module))
    return found


@pytest.mark.parametrize(
    "folder,forbidden",
    [
        (
            "domain",
            (
                "signoff.services",
                "signoff.store",
                "signoff.api",
                "signoff.policy",
                "signoff.telemetry",
                "sqlalchemy",
            ),
        ),
        ("services", ("sqlalchemy", "signoff.api")),
    ],
)
def test_dependencies_point_inward(folder: str, forbidden: tuple[str, ...]) -> None:
    wrong = [(file, name) for file, name in imports(folder) if name.startswith(forbidden)]
    assert wrong == []


def test_use_cases_type_their_transaction_as_the_repository_interface() -> None:
    # The notifier's before-commit hook writes the webhook outbox on the transaction itself.
    concrete = {file for file, name in imports("services") if name == "signoff.store.repository"}
    assert concrete <= {"notifier.py"}
