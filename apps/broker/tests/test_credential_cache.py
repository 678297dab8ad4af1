"""The per-process cache of opened credentials (apps/connections/custody.py): a call
after a change of the secret never uses the old one, whoever made the change.

The cache is keyed by the sealed value (the ciphertext) the connection lookup reads
from the row on every call, so no test here tells the cache anything: each change is
made the way its real writer makes it (a service, a command, or a plain UPDATE as
another process would) and the next call must send the new secret."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from pytest_django.fixtures import Settings

from apps.broker.tests.conftest import CONNECTION_SECRET, Agent, make_agent
from apps.broker.tests.upstream import RecordingUpstream
from apps.connections import custody
from apps.connections.models import Connection
from apps.connections.services import connection_disconnect, connection_replace_api_key
from apps.organizations.models import Organization

pytestmark = pytest.mark.django_db

EXECUTE = "/api/v1/actions/sandbox.list_projects/execute"


@pytest.fixture(autouse=True)
def _empty_cache() -> Any:
    custody.forget_opened()
    yield
    custody.forget_opened()


def _call(client: Client, agent: Agent) -> Any:
    return client.post(
        EXECUTE, json.dumps({"input": {}}), content_type="application/json", **agent.headers
    )


def _sent(upstream: RecordingUpstream) -> str:
    return upstream.requests[-1].headers["Authorization"]


def _cached(connection: Connection) -> tuple[bytes, str, float]:
    return custody._opened[connection.pk]


def test_a_second_call_uses_the_opened_credential(
    client: Client, org: Organization, upstream: RecordingUpstream
) -> None:
    agent = make_agent(org)
    assert _call(client, agent).status_code == 200
    entry = _cached(agent.connection)
    assert _call(client, agent).status_code == 200
    assert _cached(agent.connection) is entry  # not opened again
    assert [r.headers["Authorization"] for r in upstream.requests] == [
        f"Bearer {CONNECTION_SECRET}"
    ] * 2
    assert CONNECTION_SECRET not in repr(agent.connection)


def test_a_replaced_key_is_used_by_the_next_call(
    client: Client, org: Organization, upstream: RecordingUpstream, settings: Settings
) -> None:
    # The replacement checks the new key with the provider's identity call first.
    settings.GRANTRY_PROVIDER_URLS = {"sandbox": upstream.url, "sandbox.userinfo_url": upstream.url}
    agent = make_agent(org)
    assert _call(client, agent).status_code == 200
    connection_replace_api_key(
        organization=org, connection_id=agent.connection.pk, api_key="sbx_the_new_key_987654321"
    )
    assert _call(client, agent).status_code == 200
    assert _sent(upstream) == "Bearer sbx_the_new_key_987654321"


def test_a_write_nobody_told_the_cache_about_is_seen(
    client: Client, org: Organization, upstream: RecordingUpstream
) -> None:
    """Another process (a refresh on a Celery worker, another web node) changes the row:
    this process hears nothing, and its next call still sends the new secret."""
    agent = make_agent(org)
    assert _call(client, agent).status_code == 200
    Connection.objects.filter(pk=agent.connection.pk).update(api_key="sbx_written_elsewhere_42")
    assert _call(client, agent).status_code == 200
    assert _sent(upstream) == "Bearer sbx_written_elsewhere_42"


def test_a_refreshed_access_token_is_used_by_the_next_call(
    client: Client, org: Organization, upstream: RecordingUpstream
) -> None:
    oauth = Connection.objects.create(
        organization=org,
        provider_key="sandbox",
        name="oauth",
        auth_type="oauth2",
        access_token="at_first_0123456789",
        api_key="never-sent",
    )
    agent = make_agent(org, connection=oauth)
    assert _call(client, agent).status_code == 200
    assert _sent(upstream) == "Bearer at_first_0123456789"
    oauth.access_token = "at_second_0123456789"  # what connection_refresh stores
    oauth.save(update_fields=["access_token"])
    assert _call(client, agent).status_code == 200
    assert _sent(upstream) == "Bearer at_second_0123456789"


def test_a_disconnected_credential_is_never_sent_again(
    client: Client, org: Organization, upstream: RecordingUpstream
) -> None:
    agent = make_agent(org)
    assert _call(client, agent).status_code == 200
    connection_disconnect(connection_id=agent.connection.pk, organization=org)
    sent_before = len(upstream.requests)
    response = _call(client, agent)
    assert response.status_code in (404, 409), response.content
    assert len(upstream.requests) == sent_before


def test_a_key_rotation_reopens_the_rewritten_value(
    client: Client, org: Organization, upstream: RecordingUpstream, settings: Settings
) -> None:
    settings.GRANTRY_ENCRYPTION_KEY = "key-A-0123456789"
    settings.GRANTRY_ENCRYPTION_OLD_KEYS = []
    agent = make_agent(org)
    assert _call(client, agent).status_code == 200
    sealed_under_a = _cached(agent.connection)[0]
    settings.GRANTRY_ENCRYPTION_KEY = "key-B-0123456789"
    call_command("rotate_encryption_key", "--old-key", "key-A-0123456789", stdout=StringIO())
    # Key A is gone from this process: only the value rewritten under B can be opened.
    assert _call(client, agent).status_code == 200
    assert _sent(upstream) == f"Bearer {CONNECTION_SECRET}"
    assert _cached(agent.connection)[0] != sealed_under_a


def test_no_cache_when_its_lifetime_is_zero(
    client: Client, org: Organization, upstream: RecordingUpstream, settings: Settings
) -> None:
    settings.GRANTRY_CREDENTIAL_CACHE_SECONDS = 0
    agent = make_agent(org)
    assert _call(client, agent).status_code == 200
    assert _call(client, agent).status_code == 200
    assert agent.connection.pk not in custody._opened
    assert _sent(upstream) == f"Bearer {CONNECTION_SECRET}"


def test_an_expired_entry_is_opened_again(
    client: Client, org: Organization, upstream: RecordingUpstream
) -> None:
    agent = make_agent(org)
    assert _call(client, agent).status_code == 200
    sealed, secret, _ = _cached(agent.connection)
    custody._opened[agent.connection.pk] = (sealed, secret, 0.0)  # long past
    assert _call(client, agent).status_code == 200
    assert _cached(agent.connection)[2] > 0.0
    assert _sent(upstream) == f"Bearer {CONNECTION_SECRET}"
