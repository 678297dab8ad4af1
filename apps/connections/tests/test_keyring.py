"""Encryption at rest: no plaintext in the column, GRANTRY_ENCRYPTION_KEY rotation,
SECRET_KEY independence."""

from __future__ import annotations

import pickle
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection as db
from django.test import override_settings
from pytest_django.fixtures import Settings

from apps.connections.keyring import UndecryptableSecret, _legacy_fernet_for, encrypted_fields
from apps.connections.models import Connection, ProviderApp
from apps.organizations.models import Organization

CANARY = "canary-plaintext-7f3a9c"


def _raw(column: str, table: str, pk: int) -> bytes:
    with db.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])
        return bytes(cursor.fetchone()[0])


def _make(org: Organization, **secrets: Any) -> Connection:
    return Connection.objects.create(
        organization=org, provider_key="sandbox", name="c1", auth_type="oauth2", **secrets
    )


@pytest.mark.django_db
def test_the_raw_columns_hold_no_plaintext(org: Organization) -> None:
    conn = _make(org, access_token=CANARY, refresh_token=CANARY + "-r", api_key=CANARY + "-k")
    app = ProviderApp.objects.create(
        organization=org, provider_key="sandbox", client_id="cid", client_secret=CANARY + "-s"
    )
    for column in ("access_token", "refresh_token", "api_key"):
        raw = _raw(column, "connections_connection", conn.pk)
        assert CANARY.encode() not in raw
        assert len(raw) > len(CANARY)
    assert CANARY.encode() not in _raw("client_secret", "connections_providerapp", app.pk)
    assert Connection.objects.get(pk=conn.pk).access_token == CANARY


@pytest.mark.django_db
def test_rotating_secret_key_leaves_every_secret_readable(org: Organization) -> None:
    conn = _make(org, access_token=CANARY)
    with override_settings(SECRET_KEY="a-completely-different-secret-key-0123456789"):
        assert Connection.objects.get(pk=conn.pk).access_token == CANARY


@pytest.mark.django_db
def test_rotate_encryption_key_from_a_to_b(org: Organization) -> None:
    with override_settings(GRANTRY_ENCRYPTION_KEY="key-A-0123456789"):
        conn = _make(org, access_token=CANARY, refresh_token="r-" + CANARY)
        ProviderApp.objects.create(
            organization=org, provider_key="sandbox", client_id="cid", client_secret="s-" + CANARY
        )
    with override_settings(
        GRANTRY_ENCRYPTION_KEY="key-B-0123456789", GRANTRY_ENCRYPTION_OLD_KEYS=[]
    ):
        with pytest.raises(UndecryptableSecret):
            Connection.objects.get(pk=conn.pk)
        dry = StringIO()
        with pytest.raises(CommandError):  # without the old key nothing can be opened
            call_command("rotate_encryption_key", stdout=dry)
        out = StringIO()
        call_command("rotate_encryption_key", "--old-key", "key-A-0123456789", stdout=out)
        report = out.getvalue()
        assert "connections.Connection.access_token: 1 rows, 1 re-encrypted" in report
        assert "connections.ProviderApp.client_secret: 1 rows, 1 re-encrypted" in report
        assert "Every secret is under the current key." in report
        row = Connection.objects.get(pk=conn.pk)
        assert (row.access_token, row.refresh_token) == (CANARY, "r-" + CANARY)
        assert ProviderApp.objects.get().client_secret == "s-" + CANARY
        again = StringIO()
        call_command("rotate_encryption_key", stdout=again)  # idempotent
        assert "0 re-encrypted" in again.getvalue()
    with (
        override_settings(GRANTRY_ENCRYPTION_KEY="key-A-0123456789"),
        pytest.raises(UndecryptableSecret),
    ):
        Connection.objects.get(pk=conn.pk)  # really re-encrypted, A no longer opens it


@pytest.mark.django_db
def test_old_keys_stay_readable_during_a_rotation(org: Organization) -> None:
    with override_settings(GRANTRY_ENCRYPTION_KEY="key-A-0123456789"):
        conn = _make(org, access_token=CANARY)
    with override_settings(
        GRANTRY_ENCRYPTION_KEY="key-B-0123456789", GRANTRY_ENCRYPTION_OLD_KEYS=["key-A-0123456789"]
    ):
        assert Connection.objects.get(pk=conn.pk).access_token == CANARY


@pytest.mark.django_db
def test_values_in_stock_django_cryptography_format_are_read_and_rotated(
    org: Organization, settings: Settings
) -> None:
    conn = _make(org)
    legacy = _legacy_fernet_for(settings.GRANTRY_ENCRYPTION_KEY, settings.SECRET_KEY)
    with db.cursor() as cursor:
        cursor.execute(
            "UPDATE connections_connection SET access_token = %s WHERE id = %s",
            [legacy.encrypt(pickle.dumps(CANARY)), conn.pk],
        )
    assert Connection.objects.get(pk=conn.pk).access_token == CANARY
    call_command("rotate_encryption_key", stdout=StringIO())
    with override_settings(SECRET_KEY="another-secret-key-after-migration-0123"):
        assert Connection.objects.get(pk=conn.pk).access_token == CANARY


def test_every_encrypted_field_is_discovered() -> None:
    found = {f"{m._meta.label}.{f.name}" for m, f in encrypted_fields()}
    assert {
        "connections.Connection.access_token",
        "connections.Connection.refresh_token",
        "connections.Connection.api_key",
        "connections.ProviderApp.client_secret",
        "connections.OAuthState.code_verifier",
    } <= found
