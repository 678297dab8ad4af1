"""Model instances from hand-written SQL, for the few fixed queries of the hot path.

Compiling a queryset costs more CPU than running it: a `select_related`
lookup of four tables spends milliseconds in Django's SQL compiler per call.
The broker's token and connection lookups are fixed statements, so they are
written once (`ModelRows.columns()` names every concrete column) and each row
is turned into real model instances exactly as the ORM would: the backend's
and the fields' converters run (decryption, JSON, SQLite datetimes), then
`Model.from_db`. The instances behave like ORM-loaded ones (saving,
`refresh_from_db`, related caches set with `relate`).

`fixed_query_cursor()` runs such a statement on PostgreSQL with server-side
parameters, so psycopg prepares it after `OPTIONS["prepare_threshold"]`
executions on a connection (PostgreSQL then skips parsing and planning it;
Django's own client-side-binding cursors never prepare, so the option touches
nothing else); elsewhere it is Django's ordinary cursor.
Either way the cursor is Django's wrapper (query capture, execute wrappers,
error translation work as usual).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from django.db import connection as default_connection
from django.db import models
from django.db.models import DEFERRED

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

    def index(self, attname: str) -> int:
        return self.attnames.index(attname)

    def load(
        self,
        row: Sequence[Any],
        connection: Any,
        start: int = 0,
        defer: frozenset[str] = frozenset(),
    ) -> M:
        """The instance held in `row[start : start + width]`. Fields named in `defer`
        are left unconverted and deferred, as `.defer()` would leave them: Django loads
        one with a query if it is ever read."""
        values = list(row[start : start + self.width])
        if defer:
            for index, attname in enumerate(self.attnames):
                if attname in defer:
                    values[index] = DEFERRED
        for index, col, funcs in self._converters_for(connection):
            value = values[index]
            if value is DEFERRED:
                continue
            for func in funcs:
                value = func(value, col, connection)
            values[index] = value
        return self.model.from_db(connection.alias, self.attnames, values)


def relate(instance: models.Model, field_name: str, related: models.Model) -> None:
    """Cache `related` as `instance.<field_name>` (what select_related does)."""
    field: Any = instance._meta.get_field(field_name)  # a ForeignKey
    field.set_cached_value(instance, related)


@contextmanager
def fixed_query_cursor(connection: Any = default_connection) -> Iterator[Any]:
    """A cursor for a statement whose text never changes (see the module docstring)."""
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            yield cursor
        return
    import psycopg
    from django.db.backends.postgresql.base import TIMESTAMPTZ_OID
    from django.db.backends.postgresql.psycopg_any import register_tzloader
    from psycopg.pq import Format

    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        raw = psycopg.Cursor(connection.connection)
        # What Django's create_cursor() does for its own cursors.
        tzloader = connection.connection.adapters.get_loader(TIMESTAMPTZ_OID, Format.TEXT)
        if connection.timezone != tzloader.timezone:
            register_tzloader(connection.timezone, raw)
        cursor = connection._prepare_cursor(raw)
    with cursor:
        yield cursor
