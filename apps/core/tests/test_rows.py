"""ModelRows / fixed_query_cursor: hand-written SQL that loads what the ORM would."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.connections.models import Connection
from apps.core.rows import ModelRows, fixed_query_cursor

pytestmark = pytest.mark.django_db

ROWS = ModelRows(Connection, "c")


def _load(pk: int) -> Connection:
    table = connection.ops.quote_name(Connection._meta.db_table)
    sql = f"SELECT {ROWS.columns(connection)} FROM {table} c WHERE c.id = %s"  # noqa: S608
    with fixed_query_cursor(connection) as cursor:
        cursor.execute(sql, [pk])
        row = cursor.fetchone()
    return ROWS.load(row, connection)


def test_loaded_instance_equals_the_orm_one_field_by_field(org):
    made = Connection.objects.create(
        organization=org,
        provider_key="sandbox",
        name="rows-test",
        auth_type="api_key",
        api_key="sbx_secret_value",
        scopes=["read", "write"],
        base_url_params={"subdomain": "acme"},
    )
    loaded = _load(made.pk)
    orm = Connection.objects.get(pk=made.pk)
    for field in Connection._meta.concrete_fields:
        assert getattr(loaded, field.attname) == getattr(orm, field.attname), field.name
    # Converters ran: the secret is decrypted, JSON is parsed, datetimes are aware.
    assert loaded.api_key == "sbx_secret_value"
    assert loaded.scopes == ["read", "write"]
    assert loaded.base_url_params == {"subdomain": "acme"}
    assert loaded.created_at.tzinfo is not None
    # It behaves like an ORM instance: it can be saved and refreshed.
    assert loaded._state.adding is False
    loaded.status_detail = "saved through a hand-loaded instance"
    loaded.save(update_fields=["status_detail"])
    orm.refresh_from_db()
    assert orm.status_detail == "saved through a hand-loaded instance"


def test_fixed_queries_stay_visible_to_query_capture(org):
    made = Connection.objects.create(
        organization=org, provider_key="sandbox", name="rows-capture", auth_type="api_key"
    )
    with CaptureQueriesContext(connection) as captured:
        _load(made.pk)
    assert len(captured) == 1
    assert 'FROM "connections_connection" c' in captured[0]["sql"]


def test_fixed_queries_are_prepared_on_postgresql(org):
    threshold = connection.settings_dict["OPTIONS"].get("prepare_threshold")
    assert threshold, "settings should enable psycopg's prepare_threshold on PostgreSQL"
    made = Connection.objects.create(
        organization=org, provider_key="sandbox", name="rows-prepared", auth_type="api_key"
    )
    for _ in range(threshold + 1):
        assert _load(made.pk).pk == made.pk
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            ['%FROM "connections_connection" c WHERE c.id = $1%'],
        )
        (prepared,) = cursor.fetchone()
    assert prepared == 1


def test_deferred_fields_are_not_converted_and_load_on_first_read(org):
    from apps.connections.custody import secrets_not_needed

    made = Connection.objects.create(
        organization=org,
        provider_key="sandbox",
        name="rows-deferred",
        auth_type="api_key",
        api_key="sbx_key",
        access_token="unused-access",
    )
    table = connection.ops.quote_name(Connection._meta.db_table)
    sql = f"SELECT {ROWS.columns(connection)} FROM {table} c WHERE c.id = %s"  # noqa: S608
    with fixed_query_cursor(connection) as cursor:
        cursor.execute(sql, [made.pk])
        row = cursor.fetchone()
    loaded = ROWS.load(row, connection, defer=secrets_not_needed("api_key"))
    assert loaded.get_deferred_fields() == {"access_token", "refresh_token"}
    assert loaded.api_key == "sbx_key"  # the one the broker needs, already decrypted
    with CaptureQueriesContext(connection) as captured:
        assert loaded.access_token == "unused-access"  # still correct if anything asks
    assert len(captured) == 1
