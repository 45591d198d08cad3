"""Opaque page tokens: the position after which the next page starts."""

import base64
import binascii
from typing import TypeVar

from signoff.domain.errors import FieldViolation, InvalidArgument

MAX_PAGE_SIZE = 1000


def page_size(requested: int, default: int) -> int:
    if requested < 0:
        raise InvalidArgument([FieldViolation("page_size", "must not be negative")])
    return min(requested or default, MAX_PAGE_SIZE)


def encode(position: int) -> str:
    return base64.urlsafe_b64encode(f"p{position}".encode()).decode().rstrip("=")


def decode(token: str) -> int | None:
    if not token:
        return None
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        if not text.startswith("p"):
            raise ValueError(token)
        return int(text[1:])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument(
            [FieldViolation("page_token", "not a token from a previous response")]
        ) from None


T = TypeVar("T")


def page(rows: list[tuple[int, T]], limit: int) -> tuple[list[T], str]:
    """Rows fetched with limit + 1 → the page and the token of the next one ("" if last)."""
    kept = rows[:limit]
    return [item for _, item in kept], encode(kept[-1][0]) if len(rows) > limit else ""
