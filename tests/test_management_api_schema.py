"""The management API's routes that mirror the dashboard, against /api/schema/:
each is documented (with the shared error body), the schema is valid OpenAPI,
and schemathesis finds no server error and no undocumented status or shape —
with an owner's personal token and with deliberately invalid input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from apps.accounts.services import personal_token_mint
from tests.factories import MembershipFactory, OrganizationFactory, UserFactory

PREFIX = "/api/v1/orgs/{org_slug}/"
# (path, methods) added for issue 17.
DOCUMENTED = {
    "members/": {"get"},
    "members/{membership_id}/": {"get", "patch", "delete"},
    "invitations/": {"get", "post"},
    "invitations/{invitation_id}/revoke/": {"post"},
    "settings/": {"get", "patch"},
    "provider-apps/": {"get"},
    "provider-apps/{provider_key}/": {"get", "put"},
    "connections/api-key/": {"post"},
    "connections/oauth/start/": {"post"},
    "custom-providers/": {"get", "post"},
    "custom-providers/{provider_slug}/": {"get", "patch", "delete"},
    "custom-providers/{provider_slug}/actions/": {"get", "post"},
    "custom-providers/{provider_slug}/actions/{action_name}/": {"get", "delete"},
    "custom-providers/{provider_slug}/openapi-import/": {"post"},
    "custom-providers/{provider_slug}/openapi-import/{id}/": {"get", "post"},
    "personal-tokens/": {"get"},
    "personal-tokens/{public_id}/revoke/": {"post"},
    "audit/exports/": {"get", "post"},
    "audit/exports/{export_id}/": {"get"},
    "audit/exports/{export_id}/download/": {"get"},
    "roles/{role_id}/test/": {"post"},
    # issue 15: MCP clients
    "mcp/policy/": {"get", "patch"},
    "mcp/grants/": {"get"},
    "mcp/grants/{grant_id}/": {"get", "delete"},
    "mcp/grants/{grant_id}/revoke/": {"post"},
    # issue 24: MCP servers fronted as connections
    "connections/mcp/": {"post"},
    "connections/mcp/oauth/start/": {"post"},
    "connections/{connection_id}/mcp/tools/": {"get"},
    "connections/{connection_id}/mcp/tools/{tool_id}/approve/": {"post"},
    "connections/{connection_id}/mcp/refresh/": {"post"},
    # issue 25: the inventory of raw keys
    "inventory/summary/": {"get"},
    "inventory/scans/": {"post"},
    "inventory/findings/": {"get"},
    "inventory/findings/{finding_id}/": {"get"},
    "inventory/findings/{finding_id}/import/": {"post"},
    "inventory/findings/{finding_id}/config-replaced/": {"post"},
    "inventory/findings/{finding_id}/new-key/": {"post"},
    "inventory/findings/{finding_id}/confirm-rotated/": {"post"},
    "inventory/findings/{finding_id}/role-proposal/": {"get", "post"},
    # issue 29: trust policies (workload identity federation)
    "workers/{worker_id}/trust-policies/": {"get", "post"},
    "workers/{worker_id}/trust-policies/{trust_policy_id}/": {"get", "patch", "delete"},
}


def _schema(client: Any) -> dict:
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def test_every_new_route_is_documented_with_the_standard_errors(client: Client) -> None:
    schema = _schema(client)
    validate(schema)  # a valid OpenAPI 3 document
    assert "Error" in schema["components"]["schemas"]
    for suffix, methods in DOCUMENTED.items():
        path = PREFIX + suffix
        assert path in schema["paths"], path
        for method in methods:
            operation = schema["paths"][path][method]
            assert operation.get("summary"), (path, method)
            responses = operation["responses"]
            assert "401" in responses, (path, method)
            assert "404" in responses, (path, method)
            refs = str(responses["404"])
            assert "#/components/schemas/Error" in refs, (path, method)
            # Your own personal tokens need no role; everything else can be too low.
            if not suffix.startswith("personal-tokens"):
                assert "403" in responses, (path, method)


def test_write_only_secrets_are_never_in_a_response_schema(client: Client) -> None:
    schemas = _schema(client)["components"]["schemas"]
    for name, component in schemas.items():
        props = component.get("properties", {})
        if name.endswith("Request"):
            continue
        assert "client_secret" not in props, name
        assert "api_key" not in props, name


# --- schemathesis ---------------------------------------------------------------------

MANAGED = "|".join(
    (
        "members/",
        "invitations/",
        "settings/",
        "provider-apps/",
        "connections/oauth/",
        "custom-providers/",
        "personal-tokens/",
        "audit/exports/",
        "roles/[^/]+/test/",
        "mcp/",
        "inventory/",
        "workers/[^/]+/trust-policies/",
    )
)
# The API-key connect is left out: it would send generated keys to real providers.
PATHS = rf"^/api/v1/orgs/[^/]+/({MANAGED})"
SETTINGS = settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _load(modes: Any = None) -> Any:
    loaded = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
    if modes is not None:
        loaded.config.generation.modes = modes
    return loaded.include(path_regex=PATHS)


positive = _load()
negative = _load([GenerationMode.NEGATIVE])


@pytest.fixture
def owner_token(db: None) -> Iterator[Any]:  # noqa: ARG001 - database access
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    org = OrganizationFactory(name="Schema Co", slug="schema-co")
    user = UserFactory(email="owner@schema.test")
    MembershipFactory(organization=org, user=user, role="owner")
    _token, raw = personal_token_mint(user=user, organization=org, name="schemathesis")
    yield raw
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _call(case: Any, token: Any) -> Any:
    if "org_slug" in (case.path_parameters or {}):
        case.path_parameters["org_slug"] = "schema-co"
    return case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)


@positive.parametrize()
@SETTINGS
def test_with_an_owner_token(case: Any, owner_token: Any) -> None:
    _call(case, owner_token)


@negative.parametrize()
@SETTINGS
def test_with_bad_input(case: Any, owner_token: Any) -> None:
    response = _call(case, owner_token)
    assert response.status_code < 500
