"""Refresh against the real Sandbox token endpoint: rotation, reuse, races, tasks."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.db import close_old_connections
from django.db import connection as db_connection
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_refresh_token_model
from pytest_django.fixtures import Settings

from apps.audit.models import AuditEvent
from apps.connections import credentials, custody
from apps.connections.models import Connection, ConnectionStatus
from apps.connections.services import connection_ids_refresh_due, connection_refresh
from apps.connections.tests.conftest import checksum
from apps.providers.registry import get_provider


def _expire(connection: Connection) -> None:
    Connection.objects.filter(pk=connection.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )


def test_refresh_rotates_and_stores_both_tokens(connected: Connection) -> None:
    old_access, old_refresh = connected.access_token, connected.refresh_token
    fresh = connection_refresh(connection_id=connected.pk, force=True)
    assert fresh.access_token != old_access
    assert fresh.refresh_token != old_refresh  # the Sandbox rotates refresh tokens
    reloaded = Connection.objects.get(pk=connected.pk)
    assert reloaded.access_token == fresh.access_token
    assert reloaded.refresh_token == fresh.refresh_token
    assert reloaded.status == ConnectionStatus.ACTIVE
    assert sorted(reloaded.scopes) == ["read", "write"]  # refresh kept the granted scope
    assert (
        get_access_token_model()
        .objects.filter(token_checksum=checksum(fresh.access_token))
        .exists()
    )
    old = get_refresh_token_model().objects.get(token_checksum=checksum(old_refresh))
    assert old.revoked is not None
    assert (
        AuditEvent.objects.filter(action="connection.refreshed", connection_id=connected.pk).count()
        == 1
    )


def test_refresh_is_skipped_when_not_due(connected: Connection) -> None:
    before = connected.access_token
    assert connection_refresh(connection_id=connected.pk).access_token == before
    assert not AuditEvent.objects.filter(action="connection.refreshed").exists()


@pytest.mark.usefixtures("member", "celery_worker")
def test_reusing_an_old_refresh_token_marks_needs_reauth_and_emails_admins(
    connected: Connection, admin: User, owner: User
) -> None:
    old_refresh = connected.refresh_token
    connection_refresh(connection_id=connected.pk, force=True)
    # Put the already-rotated refresh token back, as a stale copy would be.
    row = Connection.objects.get(pk=connected.pk)
    row.refresh_token = old_refresh
    row.save()
    result = connection_refresh(connection_id=connected.pk, force=True)
    assert result.status == ConnectionStatus.NEEDS_REAUTH
    assert "invalid_grant" in result.status_detail
    event = AuditEvent.objects.get(action="connection.needs_reauth")
    assert event.outcome == "failure"
    assert event.connection_id == connected.pk
    # The email goes out from a real Celery worker after commit.
    deadline = timezone.now() + timedelta(seconds=20)
    while not mail.outbox and timezone.now() < deadline:
        threading.Event().wait(0.2)
    assert len(mail.outbox) == 1
    assert sorted(mail.outbox[0].to) == sorted([admin.email, owner.email])
    assert "Reconnect" in mail.outbox[0].body
    # The broker gets NeedsReauth, and the inventory shows the Reconnect button.
    with pytest.raises(custody.NeedsReauth):
        credentials.auth_for(result, get_provider("sandbox"))


def test_auth_for_refreshes_an_expired_token_on_demand(connected: Connection) -> None:
    _expire(connected)
    stale = Connection.objects.get(pk=connected.pk)
    applied = credentials.auth_for(stale, get_provider("sandbox"))
    fresh = Connection.objects.get(pk=connected.pk)
    assert applied.headers == {"Authorization": f"Bearer {fresh.access_token}"}
    assert fresh.access_token != connected.access_token
    assert fresh.expires_at > timezone.now()
    assert "Bearer" not in repr(applied)  # repr never shows the credential


def test_twenty_concurrent_callers_cause_exactly_one_refresh(connected: Connection) -> None:
    _expire(connected)
    tokens = get_access_token_model().objects
    refresh_tokens = get_refresh_token_model().objects
    # DOT deletes a replaced access token, so count rows created after this point.
    last_access = tokens.order_by("-pk").values_list("pk", flat=True).first()
    last_refresh = refresh_tokens.order_by("-pk").values_list("pk", flat=True).first()
    provider = get_provider("sandbox")
    start = threading.Barrier(20)
    results: list[str] = []
    errors: list[BaseException] = []

    def racer() -> None:
        try:
            mine = Connection.objects.get(pk=connected.pk)  # each its own stale copy
            start.wait()
            results.append(credentials.auth_for(mine, provider).headers["Authorization"])
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            close_old_connections()
            db_connection.close()

    threads = [threading.Thread(target=racer) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert len(results) == 20
    fresh = Connection.objects.get(pk=connected.pk)
    # Exactly one token request reached the Sandbox: one new access and refresh token.
    assert tokens.filter(pk__gt=last_access).count() == 1
    assert refresh_tokens.filter(pk__gt=last_refresh).count() == 1
    assert set(results) == {f"Bearer {fresh.access_token}"}
    assert AuditEvent.objects.filter(action="connection.refreshed").count() == 1


@pytest.mark.usefixtures("org")
def test_periodic_selection_picks_expiring_and_idle_connections(connected: Connection) -> None:
    assert connection_ids_refresh_due() == []
    Connection.objects.filter(pk=connected.pk).update(
        expires_at=timezone.now() + timedelta(minutes=5)
    )
    assert connection_ids_refresh_due() == [connected.pk]
    Connection.objects.filter(pk=connected.pk).update(
        expires_at=timezone.now() + timedelta(hours=1),
        last_refreshed_at=timezone.now() - timedelta(days=30),
    )
    assert connection_ids_refresh_due() == [connected.pk]  # keep-alive
    Connection.objects.filter(pk=connected.pk).update(status=ConnectionStatus.REVOKED)
    assert connection_ids_refresh_due() == []


@pytest.mark.usefixtures("celery_worker")
def test_the_periodic_task_refreshes_through_a_real_worker(connected: Connection) -> None:
    from apps.connections.tasks import refresh_due_connections

    _expire(connected)
    assert refresh_due_connections.delay() is not None
    deadline = timezone.now() + timedelta(seconds=30)
    fresh = Connection.objects.get(pk=connected.pk)
    while fresh.access_token == connected.access_token and timezone.now() < deadline:
        threading.Event().wait(0.3)
        fresh = Connection.objects.get(pk=connected.pk)
    assert fresh.access_token != connected.access_token
    assert fresh.expires_at > timezone.now()


def test_a_transient_failure_is_counted_and_raised_for_retry(
    connected: Connection, settings: Settings
) -> None:
    from apps.connections.services import RefreshTemporarilyFailed

    # Nothing listens on port 1: the token endpoint is unreachable.
    settings.GRANTRY_PROVIDER_URLS = {"sandbox.token_url": "http://127.0.0.1:1/o/token/"}
    with pytest.raises(RefreshTemporarilyFailed):
        connection_refresh(connection_id=connected.pk, force=True)
    row = Connection.objects.get(pk=connected.pk)
    assert row.refresh_failures == 1
    assert row.status == ConnectionStatus.ACTIVE
    assert row.refresh_token == connected.refresh_token  # untouched
