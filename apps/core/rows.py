"""Model instances from hand-written SQL, for the few fixed queries of the hot path.

Compiling a queryset costs more CPU than running it: a `select_related`
lookup of four tables spends milliseconds in Django's SQL compiler per call.
The broker's token and connection lookups are fixed statements, so they are
written once (`ModelRows.columns()` names every concrete column) and each row
is turned into real model instances exactly as the ORM would: the backend's
and the fields' converters run (decryption, JSON, SQLite datetimes), then
`Model.from_db`. The instances behave like ORM-loaded ones (saving,
`refresh_from_db`, related caches set with `relate`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from django.db import models

M = TypeVar("M", bound=models.Model)

Converter = Callable[[Any, Any, Any], Any]


class ModelRows(Generic[M]):
    """Selects and loads every concrete column of `model` under one table alias."""

    def __init__(self, model: type[M], alias: str) -> None:
        self.model = model
        self.alias = alias
        self.fields = list(model._meta.concrete_fields)
        self.attnames = [f.attname for f in self.fields]
        self.width = len(self.fields)
        self._converters: dict[str, list[tuple[int, Any, list[Converter]]]] = {}

    def columns(self, connection: Any) -> str:
        quote = connection.ops.quote_name
        return ", ".join(f"{quote(self.alias)}.{quote(f.column)}" for f in self.fields)

    def _converters_for(self, connection: Any) -> list[tuple[int, Any, list[Converter]]]:
        found = self._converters.get(connection.alias)
        if found is None:
            found = []
            for index, field in enumerate(self.fields):
                col = field.get_col(self.alias)
                funcs = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
                if funcs:
                    found.append((index, col, funcs))
            self._converters[connection.alias] = found
        return found

    def load(self, row: Sequence[Any], connection: Any, start: int = 0) -> M:
        """The instance held in `row[start : start + width]`."""
        values = list(row[start : start + self.width])
        for index, col, funcs in self._converters_for(connection):
            value = values[index]
            for func in funcs:
                value = func(value, col, connection)
            values[index] = value
        return self.model.from_db(connection.alias, self.attnames, values)


def relate(instance: models.Model, field_name: str, related: models.Model) -> None:
    """Cache `related` as `instance.<field_name>` (what select_related does)."""
    instance._meta.get_field(field_name).set_cached_value(instance, related)
