"""Input checks for every RPC: nothing malformed reaches the database.

Each check adds a field violation; `done()` raises them all at once so a caller fixes
everything in one round trip.
"""

import json
import math
import re
from typing import Any

from google.protobuf import struct_pb2

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
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SHOWN_KEY = 64  # a key quoted in a violation's path is cut to this many characters
SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")  # how signoff writes a digest (domain/canonical)


def _member(path: str, key: str) -> str:
    """`path.key`, or `path["odd key"]` for a key that is not a plain name."""
    if _KEY.match(key):
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key[:_SHOWN_KEY])}]"


def struct_problem(message: struct_pb2.Struct, path: str) -> tuple[str, str] | None:
    """The first value of a Struct that JSON (and so signoff) cannot hold, as (path,
    description): a NaN or infinite number, or a NUL character in a key or a string.
    Walked without recursion: a Struct may nest as deep as protobuf parses."""
    pending: list[tuple[str, Any]] = [(path, message)]
    while pending:
        where, item = pending.pop()
        if isinstance(item, struct_pb2.Struct):
            for key, value in item.fields.items():
                if "\x00" in key:
                    return where, "must not contain NUL characters in keys"
                pending.append((_member(where, key), value))
        elif isinstance(item, struct_pb2.ListValue):
            pending.extend((f"{where}[{i}]", value) for i, value in enumerate(item.values))
        else:
            kind = item.WhichOneof("kind")
            if kind == "number_value" and not math.isfinite(item.number_value):
                return where, "must be a finite number (JSON has no NaN or Infinity)"
            if kind == "string_value" and "\x00" in item.string_value:
                return where, NUL
            if kind == "struct_value":
                pending.append((where, item.struct_value))
            elif kind == "list_value":
                pending.append((where, item.list_value))
    return None


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

    def struct(self, field: str, message: struct_pb2.Struct) -> None:
        if message.ByteSize() > MAX_STRUCT_BYTES:
            self.fail(field, f"must be at most {MAX_STRUCT_BYTES} bytes encoded")
        elif (problem := struct_problem(message, field)) is not None:
            self.fail(*problem)

    def digest(self, field: str, value: str) -> None:
        """An optional sha256 as signoff writes it (an action_sha256, say)."""
        if value and not SHA256.match(value):
            self.fail(field, "must be sha256: and 64 lowercase hex digits (an action_sha256)")

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
