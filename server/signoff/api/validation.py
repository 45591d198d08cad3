"""Input checks for every RPC: nothing malformed reaches the database.

Each check adds a field violation; `done()` raises them all at once so a caller fixes
everything in one round trip.
"""

import math
import re
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from signoff.domain.budget import MAX_CENTS
from signoff.domain.errors import FieldViolation, InvalidArgument

MAX_ID = 128
MAX_TEXT = 16 * 1024
MAX_STRUCT_BYTES = 64 * 1024
MAX_REFS = 64
MAX_REF = 512
TOOL = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)+$")
ID = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces
# Text is stored as-is; PostgreSQL cannot hold NUL in text or JSON, so no store accepts it.
NUL = "must not contain NUL characters"


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class Validator:
    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []

    def fail(self, field: str, description: str) -> None:
        self.violations.append(FieldViolation(field, description))

    def identifier(self, field: str, value: str, *, required: bool = True) -> None:
        # ID allows printable ASCII only, so NUL and other control characters fail here too.
        if not value:
            if required:
                self.fail(field, "is required")
        elif len(value) > MAX_ID:
            self.fail(field, f"must be at most {MAX_ID} characters")
        elif not ID.match(value):
            self.fail(field, "must be printable ASCII without spaces")

    def text(self, field: str, value: str, limit: int = MAX_TEXT) -> None:
        if len(value) > limit:
            self.fail(field, f"must be at most {limit} characters")
        elif "\x00" in value:
            self.fail(field, NUL)

    def refs(self, field: str, values: Any) -> None:
        if len(values) > MAX_REFS:
            self.fail(field, f"must have at most {MAX_REFS} entries")
        for i, value in enumerate(values):
            if not value or len(value) > MAX_REF:
                self.fail(f"{field}[{i}]", f"must be 1 to {MAX_REF} characters")
            elif "\x00" in value:
                self.fail(f"{field}[{i}]", NUL)

    def enum(self, field: str, enum_type: Any, number: int, *, required: bool) -> None:
        if number not in enum_type.DESCRIPTOR.values_by_number:
            self.fail(field, f"unknown value {number}")
        elif required and number == 0:
            names = ", ".join(v.name for v in enum_type.DESCRIPTOR.values if v.number)
            self.fail(field, f"is required: one of {names}")

    def struct(self, field: str, message: Message) -> None:
        if message.ByteSize() > MAX_STRUCT_BYTES:
            self.fail(field, f"must be at most {MAX_STRUCT_BYTES} bytes encoded")
        elif _has_nul(json_format.MessageToDict(message)):
            self.fail(field, NUL)

    def number(self, field: str, value: float) -> None:
        if value < 0 or not math.isfinite(value):
            self.fail(field, "must be a finite number >= 0")

    def cents(self, field: str, value: float) -> None:
        """A cost or a budget in cents."""
        if not 0 <= value <= MAX_CENTS:  # NaN fails every comparison
            self.fail(field, f"must be a finite number of cents from 0 to {MAX_CENTS:g}")

    def page(self, size: int) -> None:
        if size < 0:
            self.fail("page_size", "must not be negative")

    def done(self) -> None:
        if self.violations:
            raise InvalidArgument(self.violations)
