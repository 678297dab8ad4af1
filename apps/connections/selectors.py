"""Reads about connections that are more than one line.

For the agent hot path:

`connections_for_call()` answers "which of this organization's connections does
this agent call mean?" in one fixed statement through `connection.cursor()` (no
query compilation and no `RawQuerySet` column resolution per call), and builds
the instances with `Model.from_db`. No secret is decrypted here: the three secret
fields stay deferred, and the one secret custody will use (the access token of an
OAuth connection, the API key of the others) comes back sealed, as stored, in the
`sealed_credential` attribute. Custody opens it (`custody.applied_auth`), from its
per-process cache when the sealed value is the one it opened before. The
instances are for reading: never save one.

This is the agent side of the tenant boundary (apps/core/models.py): the statement
filters by `organization_id`, the one the authenticator read with the token
(`AgentContext.organization_id`), as `TenantQuerySet.for_organization()` would;
it is written out only so the hot path compiles nothing per call.

A member's personal connection (`Connection.owner`) is found only for a worker that
acts for that member (`acting_for`); for every other caller it does not exist, by id,
by name or among the provider's connections, so no rule can reach it."""

from __future__ import annotations

from typing import Any

from django.db import connection as db

from apps.connections.models import Connection, ConnectionStatus
from apps.core.ports import Port

_SECRET_FIELDS = frozenset({"access_token", "refresh_token", "api_key"})
_LOADED = [f for f in Connection._meta.concrete_fields if f.attname not in _SECRET_FIELDS]
_NAMES = [f.attname for f in _LOADED]
# Fields whose database value needs converting (the JSON ones: Django loads jsonb as text).
_CONVERTED = [(i, f) for i, f in enumerate(_LOADED) if hasattr(f, "from_db_value")]
# The secret custody will use, sealed (the ciphertext as stored): the access token of an
# OAuth connection, the API key of the others.
_SEALED = "CASE WHEN auth_type = 'oauth2' THEN access_token ELSE api_key END"
_SELECT = (
    f"SELECT {', '.join(str(f.column) for f in _LOADED)}, {_SEALED}"  # noqa: S608 - metadata
    f" FROM {Connection._meta.db_table}"
    " WHERE organization_id = %s AND NOT status = %s"
    # Shared, or the personal connection of the member the worker acts for (NULL when it
    # acts for no one: `owner_id = NULL` is never true).
    " AND (owner_id IS NULL OR owner_id = %s)"
)
_BY_ID = _SELECT + " AND id = %s"
_BY_NAME = _SELECT + " AND name = %s"
_BY_ID_OF = _BY_ID + " AND provider_key = %s"
_BY_NAME_OF = _BY_NAME + " AND provider_key = %s"
_OF_PROVIDER = _SELECT + " AND provider_key = %s ORDER BY name"


def _as_id(ref: str | int) -> int | None:
    """A reference that is a plain ASCII id within bigint ("³".isdigit() is true, and
    int("³") fails); anything else is a name."""
    text = str(ref)
    if isinstance(ref, int) or (text.isascii() and text.isdigit() and len(text) <= 18):
        return int(text)
    return None


def _fetch(sql: str, params: list[Any]) -> list[Connection]:
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    found = []
    for row in rows:
        values = list(row[:-1])
        for index, field in _CONVERTED:
            values[index] = field.from_db_value(values[index], None, db)
        instance = Connection.from_db(db.alias, _NAMES, values)
        sealed = row[-1]
        instance.sealed_credential = bytes(sealed) if sealed is not None else b""  # type: ignore[attr-defined]
        found.append(instance)
    return found


def connections_for_call(
    *,
    organization_id: int,
    provider_key: str | None,
    ref: str | int | None,
    acting_for: int | None = None,
) -> list[Connection]:
    """The organization's connection an agent names (id or name), optionally of one
    provider; naming none, every connection of the provider. Revoked ones never, and
    of the personal ones only those of `acting_for` (the member the worker acts for)."""
    revoked = ConnectionStatus.REVOKED.value
    head: list[Any] = [organization_id, revoked, acting_for]
    if ref is None or ref == "":
        if provider_key is None:
            return []
        return _fetch(_OF_PROVIDER, [*head, provider_key])
    as_id = _as_id(ref)
    if as_id is not None and not -(2**63) <= as_id < 2**63:
        return []
    value: str | int = as_id if as_id is not None else str(ref)
    if provider_key is None:
        sql = _BY_ID if as_id is not None else _BY_NAME
        return _fetch(sql, [*head, value])
    sql = _BY_ID_OF if as_id is not None else _BY_NAME_OF
    return _fetch(sql, [*head, value, provider_key])


# Who can use a connection is the workers' question (roles name connections, workers hold
# roles: both layers above this one); apps.workers plugs its answer in when it is ready.
connection_users: Port[[Any], tuple[list[str], list[str]]] = Port(
    "connection_users", answered_by="apps.workers.selectors.connection_users"
)


def live_connection_names(provider: Any) -> list[str]:
    """Names of a custom provider's connections that are not revoked (the catalog asks before
    a delete or a change of where credentials go: apps.providers.services)."""
    return sorted(
        Connection.objects.for_organization(provider.organization_id)
        .filter(provider_key=provider.key)
        .exclude(status=ConnectionStatus.REVOKED)
        .values_list("name", flat=True)
    )


def connection_ids_named(name: str, organization: Any = None) -> list[int]:
    """Ids of the connections called `name` (of `organization` when given): the audit
    filter's name lookup (apps.audit.filters.IDS_NAMED)."""
    rows = Connection.objects.filter(name=name)
    if organization is not None:
        rows = rows.for_organization(organization)
    return list(rows.values_list("pk", flat=True)[:50])
