"""The refresh-ahead window is relative to the token's lifetime: min(window, lifetime/2).

With a fixed 30 s window a provider issuing tokens of 30 s or less got a refresh
on every call."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.test import Client, override_settings
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.connections import credentials
from apps.connections.models import Connection, ConnectionStatus
from apps.connections.tests.conftest import connect
from apps.providers.registry import get_provider


def _token(issued: Any, lifetime_seconds: Any) -> Connection:
    return Connection(
        auth_type="oauth2",
        status=ConnectionStatus.ACTIVE,
        has_refresh_token=True,
        created_at=issued,
        last_refreshed_at=issued,
        expires_at=issued + timedelta(seconds=lifetime_seconds),
    )


def test_the_window_is_at_most_half_the_lifetime() -> None:
    issued = timezone.now()
    short = _token(issued, 2)
    assert short.refresh_ahead_seconds(30) == 1.0
    assert not short.is_refresh_due(now=issued + timedelta(seconds=0.5))
    assert short.is_refresh_due(now=issued + timedelta(seconds=1.5))
    hour = _token(issued, 3600)
    assert hour.refresh_ahead_seconds(600) == 600
    assert not hour.is_refresh_due(now=issued + timedelta(minutes=49))
    assert hour.is_refresh_due(now=issued + timedelta(minutes=51))


def _drop_cached_oauthlib_cores() -> None:
    from oauth2_provider.views.mixins import OAuthLibMixin

    classes = [OAuthLibMixin]
    while classes:
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        if "_oauthlib_core" in cls.__dict__:
            delattr(cls, "_oauthlib_core")


@pytest.fixture
def fresh_oauth_server() -> Iterator[Any]:
    """DOT caches its oauthlib server, and the token lifetime in it, on the view class:
    build it under this test's settings, and never hand a 2-second one to the next."""
    _drop_cached_oauthlib_cores()
    yield
    _drop_cached_oauthlib_cores()


@pytest.mark.usefixtures("fresh_oauth_server", "sandbox")
def test_calls_with_a_two_second_sandbox_token_do_not_refresh_every_time(
    admin_client: Client,
) -> None:
    two_seconds = {**settings.OAUTH2_PROVIDER, "ACCESS_TOKEN_EXPIRE_SECONDS": 2}
    provider = get_provider("sandbox")
    with override_settings(OAUTH2_PROVIDER=two_seconds):
        connection = connect(admin_client)
        assert (connection.expires_at - connection.last_refreshed_at).total_seconds() <= 2
        calls = 0
        # Call on through more than one lifetime of the token.
        until = time.monotonic() + 3
        while time.monotonic() < until:
            applied = credentials.auth_for(connection, provider)
            assert applied.headers["Authorization"].startswith("Bearer ")
            calls += 1
    refreshes = AuditEvent.objects.filter(
        action="connection.refreshed", connection_id=connection.pk
    ).count()
    # Refreshed when half its life was gone (so more than once over 3 s) but not per call.
    assert 1 <= refreshes < calls / 2, (refreshes, calls)
    assert Connection.objects.get(pk=connection.pk).expires_at > connection.last_refreshed_at
