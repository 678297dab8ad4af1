"""The MCP management API mirrors the pages: add a server (checked first), list its
tools, approve the reviewed definition (only that one), list again; reviewers read,
admins write, another organization gets 404; no secret in any answer."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from apps.accounts.services import personal_token_mint
from apps.connections.tests.mcp_servers import EVERYTHING_PACKAGE
from apps.organizations.models import Organization

SECRET = "api-canary-51c0"


def api_as(user: User, org: Organization) -> APIClient:
    _, raw = personal_token_mint(user=user, organization=org, name="t")
    return APIClient(HTTP_AUTHORIZATION=f"Bearer {raw}")


@pytest.mark.django_db(transaction=True)
def test_add_list_approve_refresh(
    org: Organization, other_org: Organization, admin: User, reviewer: User, outsider: User
) -> None:
    base = "/api/v1/orgs/acme/connections/"
    admin_api = api_as(admin, org)
    created = admin_api.post(
        f"{base}mcp/",
        {
            "name": "everything",
            "transport": "stdio",
            "package": f"npx -y {EVERYTHING_PACKAGE} stdio",
            "env": {"EVERYTHING_TOKEN": SECRET},
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    connection_id = created.json()["id"]
    assert created.json()["provider_key"] == "mcp"
    tools = admin_api.get(f"{base}{connection_id}/mcp/tools/").json()
    echo = next(t for t in tools if t["name"] == "echo")
    assert echo["state"] == "new"
    stale = admin_api.post(
        f"{base}{connection_id}/mcp/tools/{echo['id']}/approve/",
        {"digest": "0" * 64},
        format="json",
    )
    assert stale.status_code == 409
    approved = admin_api.post(
        f"{base}{connection_id}/mcp/tools/{echo['id']}/approve/",
        {"digest": echo["digest"]},
        format="json",
    )
    assert approved.status_code == 200
    assert approved.json()["state"] == "approved"
    refreshed = admin_api.post(f"{base}{connection_id}/mcp/refresh/")
    assert refreshed.status_code == 200
    assert refreshed.json()["changed"] == []

    reader = api_as(reviewer, org)
    assert reader.get(f"{base}{connection_id}/mcp/tools/").status_code == 200
    assert reader.post(f"{base}{connection_id}/mcp/refresh/").status_code == 403
    stranger = api_as(outsider, other_org)
    assert (
        stranger.get(f"/api/v1/orgs/globex/connections/{connection_id}/mcp/tools/").status_code
        == 404
    )
    assert stranger.get(f"{base}{connection_id}/mcp/tools/").status_code in (403, 404)
    for answer in (created, approved, refreshed):
        assert SECRET not in json.dumps(answer.json())


@pytest.mark.django_db
def test_bad_input_is_the_standard_400(org: Organization, admin: User) -> None:
    admin_api = api_as(admin, org)
    answer = admin_api.post(
        "/api/v1/orgs/acme/connections/mcp/",
        {"name": "x__y", "transport": "stdio", "package": "left-pad"},
        format="json",
    )
    assert answer.status_code == 400
    fields = answer.json()["error"]["details"]["fields"]
    assert "may not contain '__'" in fields["name"][0]
    assert "names no version" in fields["package"][0]
