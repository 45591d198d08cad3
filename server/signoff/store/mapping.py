"""Rows ↔ models, derived once per table from the model's dataclass fields and the table's
columns, so that a new field is spelled in the model, the schema and a migration only.

A field maps to the column of the same name. What is not the same value on both sides is
converted by its type: an enum is stored as its value, a tuple as a JSON list. A field whose
type is a dataclass with columns of its own (Action.proposal) is spread over those columns.
Anything else is named where the mapper is made (`convert`), as are columns computed from
the model (`derived`: never read back) and those only the database fills (`database_only`).
A field without a column, or a column without a field, fails at import."""

import dataclasses
import types
import typing
from collections.abc import Callable, Collection, Mapping
from enum import Enum
from typing import Any, Generic, TypeVar

from sqlalchemy import Table

M = TypeVar("M")

# A named conversion: (model value -> column value, column value -> model value).
Conversion = tuple[Callable[[Any], Any], Callable[[Any], Any]]


def _enum_of(hint: Any) -> type[Enum] | None:
    """The enum of a field typed `SomeEnum` or `SomeEnum | None`."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for option in options:
        if isinstance(option, type) and issubclass(option, Enum):
            return option
    return None


def _by_type(hint: Any) -> Conversion | None:
    enum = _enum_of(hint)
    if enum is not None:
        return (
            lambda value: None if value is None else value.value,
            lambda value: None if value is None else enum(value),
        )
    if typing.get_origin(hint) is tuple:
        return list, tuple
    return None


class Mapper(Generic[M]):
    def __init__(
        self,
        model: type[M],
        table: Table,
        *,
        convert: Mapping[str, Conversion] | None = None,
        derived: Mapping[str, Callable[[M], Any]] | None = None,
        database_only: Collection[str] = ("seq",),
    ) -> None:
        self.model = model
        self.table = table
        self._derived = dict(derived or {})
        # (attribute path, column, conversion) per mapped column; the path has two steps
        # for a field of a nested dataclass.
        self._columns: list[tuple[tuple[str, ...], str, Conversion | None]] = []
        self._nested: dict[str, type[Any]] = {}
        named = dict(convert or {})
        hints = typing.get_type_hints(model)
        for field in dataclasses.fields(model):  # type: ignore[arg-type]
            hint = hints[field.name]
            if field.name in table.c:
                conversion = named.pop(field.name, None) or _by_type(hint)
                self._columns.append(((field.name,), field.name, conversion))
            elif dataclasses.is_dataclass(hint):
                self._nested[field.name] = hint  # type: ignore[assignment]
                inner = typing.get_type_hints(hint)
                for sub in dataclasses.fields(hint):
                    assert sub.name in table.c, f"{table.name} has no column {sub.name}"
                    conversion = named.pop(sub.name, None) or _by_type(inner[sub.name])
                    self._columns.append(((field.name, sub.name), sub.name, conversion))
            else:
                raise AssertionError(
                    f"{table.name} has no column for {model.__name__}.{field.name}"
                )
        assert not named, f"conversions for no field: {sorted(named)}"
        # A column the model neither holds nor derives would be left to its default unseen.
        mapped = {column for _, column, _ in self._columns} | set(self._derived)
        unmapped = set(table.c.keys()) - mapped - set(database_only)
        assert not unmapped, f"{table.name} columns {sorted(unmapped)} map to no field"

    def values(self, model: M, *, without: Collection[str] = ()) -> dict[str, Any]:
        """The columns' values for `model` (all but `without`), derived columns included."""
        found: dict[str, Any] = {}
        for path, column, conversion in self._columns:
            if column in without:
                continue
            value: Any = model
            for step in path:
                value = getattr(value, step)
            found[column] = conversion[0](value) if conversion else value
        for column, derive in self._derived.items():
            if column not in without:
                found[column] = derive(model)
        return found

    def of(self, row: Any) -> M:
        """The model a row (of this table, and perhaps more columns) holds."""
        fields: dict[str, Any] = {}
        nested: dict[str, dict[str, Any]] = {name: {} for name in self._nested}
        for path, column, conversion in self._columns:
            value = getattr(row, column)
            value = conversion[1](value) if conversion else value
            if len(path) == 1:
                fields[column] = value
            else:
                nested[path[0]][path[1]] = value
        for name, kind in self._nested.items():
            fields[name] = kind(**nested[name])
        return self.model(**fields)
