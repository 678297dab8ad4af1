"""The demo org of `make run` gets a connected 'sandbox-demo' that really works."""

from __future__ import annotations

from django.core.management import call_command
from pytest_django.fixtures import Settings
from pytest_django.live_server_helper import LiveServer

from apps.connections import credentials
from apps.connections.models import Connection, ConnectionStatus
from apps.connections.services import connection_refresh
from apps.core.egress import egress_request
from apps.providers.registry import get_provider


def test_seed_demo_connects_the_sandbox_and_it_works_over_http(
    live_server: LiveServer, settings: Settings
) -> None:
    settings.GRANTRY_BASE_URL = live_server.url
    settings.GRANTRY_SANDBOX_URL = ""
    call_command("seed_demo")
    call_command("seed_demo")  # idempotent
    connection = Connection.objects.get(organization__slug="demo", name="sandbox-demo")
    assert connection.status == ConnectionStatus.ACTIVE
    assert Connection.objects.filter(name="sandbox-demo").count() == 1
    provider = get_provider("sandbox")
    applied = credentials.auth_for(connection, provider)
    response = egress_request("GET", f"{provider.api_base_url}/projects", headers=applied.headers)
    assert response.status_code == 200
    assert len(response.json()["projects"]) >= 2
    # The seeded refresh token rotates through the real token endpoint.
    fresh = connection_refresh(connection_id=connection.pk, force=True)
    assert fresh.status == ConnectionStatus.ACTIVE
    assert fresh.access_token != connection.access_token
