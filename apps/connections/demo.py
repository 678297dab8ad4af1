"""The Connections part of the `make run` demo: a connected Sandbox connection.

Seeding runs before the web server listens, so the first token pair is issued
by the Sandbox in-process (`sandbox_tokens_issue`); from then on the
connection refreshes, calls and revokes over real HTTP like any other."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from apps.connections import services
from apps.connections.models import Connection, ConnectionStatus, ProviderApp
from apps.core.ports import Port
from apps.organizations.models import Organization

DEMO_CONNECTION = "sandbox-demo"

# The Sandbox (apps.sandbox, installed only when GRANTRY_SANDBOX_ENABLED) is imported by no
# app: when installed, it plugs in the two things the demo seed needs from it (apps.core.ports).
sandbox_tokens_issue: Port[..., dict[str, Any]] = Port(
    "sandbox_tokens_issue", answered_by="apps.sandbox.services.sandbox_tokens_issue"
)
sandbox_client_register: Port[..., tuple[str, str]] = Port(
    "sandbox_client_register", answered_by="apps.sandbox.services.sandbox_client_register"
)


@transaction.atomic
def seed_sandbox_connection(*, organization: Organization, user: Any) -> str:
    """Give the demo org its Sandbox OAuth app and a connected 'sandbox-demo'. Idempotent."""
    existing = Connection.objects.for_organization(organization).filter(name=DEMO_CONNECTION)
    if existing.filter(status=ConnectionStatus.ACTIVE).exists():
        return f"Connection '{DEMO_CONNECTION}' is already connected."
    app = sandbox_app_register(organization=organization)
    token = sandbox_tokens_issue(client_id=app.client_id, user=user, scope="read write")
    connection = services.connection_create_from_oauth(
        organization=organization,
        provider_key="sandbox",
        name=DEMO_CONNECTION,
        token=token,
        provider_app=app,
        scopes=token["scope"].split(),
        account_label=user.get_username(),
        actor=user,
        reconnect=existing.first(),
    )
    return f"Connection '{connection.name}' to the Sandbox is connected (OAuth, read write)."


@transaction.atomic
def sandbox_app_register(*, organization: Organization, actor: Any = None) -> ProviderApp:
    """The organization's OAuth app at the built-in Sandbox, registered there and
    saved here in one step (development only: the Sandbox runs when
    GRANTRY_SANDBOX_ENABLED). Audited by provider_app_save. Idempotent."""
    app = ProviderApp.objects.for_organization(organization).filter(provider_key="sandbox").first()
    if app is not None:
        return app
    client_id, secret = sandbox_client_register(
        name=f"Grantry ({organization.slug})", redirect_uris=[services.oauth_redirect_uri()]
    )
    return services.provider_app_save(
        organization=organization,
        provider_key="sandbox",
        client_id=client_id,
        client_secret=secret,
        actor=actor,
    )
