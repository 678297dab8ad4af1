"""Grantry's authorization server with Django's test client: the happy path and the
refusals (PKCE, audience, redirect URI, replayed code, reused refresh token, the
tenant boundary at consent, the Sandbox kept apart)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from oauth2_provider import views as dot_views
from oauth2_provider.models import Application, Grant, RefreshToken
from pytest_django.fixtures import Settings

from apps.audit.models import AuditEvent
from apps.broker.tests.conftest import Agent, make_agent
from apps.mcpauth import oauth, services
from apps.mcpauth.models import McpGrant, McpIssuedToken
from apps.mcpauth.tests.oauth import (
    authorize_url,
    consent,
    exchange,
    new_flow,
    redirect_params,
    refresh,
    register,
)
from apps.mcpauth.validator import GrantryValidator
from apps.organizations.models import Organization
from apps.workers.models import WorkerToken
from apps.workers.services import worker_disable

pytestmark = pytest.mark.django_db


def tools_list(client: Any, token: str) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    return client.post(
        "/mcp",
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


@pytest.fixture
def agent(org: Organization) -> Agent:
    return make_agent(org)


@pytest.fixture
def signed_in(client: Client, admin: User) -> Any:
    client.force_login(admin)
    return client


def connect(client: Any, agent: Any, **consent_fields: Any) -> Any:
    flow = new_flow(register(client))
    response = consent(
        client,
        authorize_url(flow, resource=services.mcp_resource_url()),
        worker=agent.worker,
        **consent_fields,
    )
    params = redirect_params(response)
    assert params["state"] == flow.state
    assert params["iss"] == services.issuer_url()
    token = exchange(client, flow, params["code"])
    assert token.status_code == 200, token.content
    return flow, params["code"], token.json()


def test_metadata_names_grantry_as_the_authorization_server(
    client: Client, settings: Settings
) -> None:
    prm = client.get("/.well-known/oauth-protected-resource/mcp").json()
    assert prm["authorization_servers"] == [f"{settings.GRANTRY_BASE_URL}/oauth"]
    meta = client.get("/.well-known/oauth-authorization-server/oauth").json()
    assert meta["issuer"] == prm["authorization_servers"][0]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["client_id_metadata_document_supported"] is True
    assert meta["registration_endpoint"].endswith("/oauth/register/")


def test_consent_issues_a_worker_token_bound_to_mcp(
    signed_in: Any, agent: Agent, admin: User
) -> None:
    flow, _, token = connect(signed_in, agent)
    assert token["access_token"].startswith("gry_")
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 3600
    row = WorkerToken.objects.get(worker=agent.worker, audience=services.mcp_resource_url())
    assert row.oauth_client == "Test client"
    assert row.role == agent.role
    grant = McpGrant.objects.get()
    assert (grant.worker, grant.approved_by, grant.client_id) == (
        agent.worker,
        admin,
        flow.client_id,
    )
    assert tools_list(signed_in, token["access_token"]).status_code == 200
    # The same token is refused by the rest of the agent API (RFC 8707 audience).
    whoami = signed_in.get("/api/v1/whoami", HTTP_AUTHORIZATION=f"Bearer {token['access_token']}")
    assert whoami.status_code == 401
    assert whoami.json()["error"]["code"] == "token_audience"
    # The static token keeps working everywhere.
    assert signed_in.get("/api/v1/whoami", **agent.headers).status_code == 200
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"mcp.grant_approved", "mcp.token_issued"} <= actions
    issued = AuditEvent.objects.get(action="mcp.token_issued")
    assert issued.metadata["client_id"] == flow.client_id
    assert issued.worker_id == agent.worker.pk


def test_org_lifetime_cap_shortens_the_token(
    signed_in: Any, agent: Agent, org: Organization, admin: User
) -> None:
    services.policy_update(organization=org, actor=admin, token_minutes=10)
    _, _, token = connect(signed_in, agent)
    assert token["expires_in"] == 600


def test_consent_can_create_the_worker(signed_in: Any, agent: Agent) -> None:
    flow = new_flow(register(signed_in))
    response = consent(
        signed_in,
        authorize_url(flow),
        fields={"worker": "new", "new_worker_name": "claude-desktop", "role": str(agent.role.pk)},
    )
    code = redirect_params(response)["code"]
    assert exchange(signed_in, flow, code).status_code == 200
    grant = McpGrant.objects.get()
    assert grant.worker.name == "claude-desktop"
    assert grant.role == agent.role


@pytest.mark.usefixtures("agent")
def test_pkce_missing_or_plain_is_refused(signed_in: Any) -> None:
    flow = new_flow(register(signed_in))
    missing = signed_in.get(authorize_url(flow, code_challenge=None, code_challenge_method=None))
    assert redirect_params(missing)["error"] == "invalid_request"
    plain = signed_in.get(
        authorize_url(flow, code_challenge="x" * 43, code_challenge_method="plain")
    )
    assert redirect_params(plain)["error"] == "invalid_request"
    assert not Grant.objects.exists()


def test_wrong_audience_is_refused(signed_in: Any, agent: Agent) -> None:
    flow = new_flow(register(signed_in))
    response = signed_in.get(authorize_url(flow, resource="https://other.example/mcp"))
    assert redirect_params(response)["error"] == "invalid_target"
    # At the token endpoint too: a code for /mcp cannot buy a token for another resource.
    code = redirect_params(
        consent(
            signed_in,
            authorize_url(flow, resource=services.mcp_resource_url()),
            worker=agent.worker,
        )
    )["code"]
    token = exchange(signed_in, flow, code, resource="https://other.example/mcp")
    assert token.status_code == 400
    assert token.json()["error"] == "invalid_target"


@pytest.mark.usefixtures("agent")
def test_redirect_uri_mismatch_is_refused_without_redirecting(signed_in: Any) -> None:
    flow = new_flow(register(signed_in))
    response = signed_in.get(authorize_url(flow, redirect_uri="https://evil.example/cb"))
    assert response.status_code == 400
    assert "evil.example" not in response.get("Location", "")


@pytest.mark.parametrize(
    "uri", ["http://evil.example/cb", "javascript://x/%0aalert(1)", "https://ok.example/cb#frag"]
)
def test_registration_refuses_unsafe_redirect_uris(client: Client, uri: str) -> None:
    response = client.post(
        "/oauth/register/",
        json.dumps({"redirect_uris": [uri], "token_endpoint_auth_method": "none"}),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json()["error"] in {"invalid_redirect_uri", "invalid_client_metadata"}


def test_replayed_code_is_refused(signed_in: Any, agent: Agent) -> None:
    flow, code, _ = connect(signed_in, agent)
    again = exchange(signed_in, flow, code)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_wrong_verifier_is_refused(signed_in: Any, agent: Agent) -> None:
    flow = new_flow(register(signed_in))
    code = redirect_params(consent(signed_in, authorize_url(flow), worker=agent.worker))["code"]
    response = exchange(signed_in, flow, code, code_verifier="wrong" * 10)
    assert response.json()["error"] == "invalid_grant"


def test_refresh_rotates_and_reuse_revokes_the_family(signed_in: Any, agent: Agent) -> None:
    flow, _, first = connect(signed_in, agent)
    second = refresh(signed_in, flow, first["refresh_token"])
    assert second.status_code == 200, second.content
    second = second.json()
    assert second["refresh_token"] != first["refresh_token"]
    # Refresh keeps the binding, and the replaced access token stops working.
    assert tools_list(signed_in, second["access_token"]).status_code == 200
    assert tools_list(signed_in, first["access_token"]).status_code == 401
    assert (
        WorkerToken.objects.get(digest=WorkerToken.objects.latest("id").digest).worker
        == agent.worker
    )

    reused = refresh(signed_in, flow, first["refresh_token"])
    assert reused.json()["error"] == "invalid_grant"
    assert tools_list(signed_in, second["access_token"]).status_code == 401
    assert refresh(signed_in, flow, second["refresh_token"]).json()["error"] == "invalid_grant"
    assert AuditEvent.objects.filter(action="mcp.refresh_reused").exists()


def test_revoking_the_grant_or_disabling_the_worker_ends_it(
    signed_in: Any, agent: Agent, admin: User
) -> None:
    flow, _, token = connect(signed_in, agent)
    grant = McpGrant.objects.get()
    url = f"/o/acme/settings/mcp/grants/{grant.pk}/revoke/"
    asked = signed_in.post(url)
    assert asked.status_code == 200  # the confirmation page; nothing revoked yet
    assert tools_list(signed_in, token["access_token"]).status_code == 200
    response = signed_in.post(url, {"confirmed": "yes"})
    assert response.status_code == 302
    assert tools_list(signed_in, token["access_token"]).status_code == 401
    assert refresh(signed_in, flow, token["refresh_token"]).json()["error"] == "invalid_grant"
    assert AuditEvent.objects.filter(action="mcp.grant_revoked", actor_id=str(admin.pk)).exists()

    flow, _, token = connect(signed_in, agent)
    worker_disable(worker=agent.worker)
    assert tools_list(signed_in, token["access_token"]).status_code == 401
    assert refresh(signed_in, flow, token["refresh_token"]).json()["error"] == "invalid_grant"


def test_revoking_the_token_or_the_kill_switch_also_stops_refresh(
    signed_in: Any, agent: Agent
) -> None:
    from apps.workers.services import token_revoke, worker_revoke_all_tokens

    flow, _, token = connect(signed_in, agent)
    issued = WorkerToken.objects.get(audience=services.mcp_resource_url())
    token_revoke(token=issued, reason="Revoked on the worker page")
    assert tools_list(signed_in, token["access_token"]).status_code == 401
    assert refresh(signed_in, flow, token["refresh_token"]).json()["error"] == "invalid_grant"

    flow, _, token = connect(signed_in, agent)
    worker_revoke_all_tokens(worker=agent.worker)
    assert refresh(signed_in, flow, token["refresh_token"]).json()["error"] == "invalid_grant"
    assert AuditEvent.objects.filter(action="mcp.refresh_refused").count() == 2


def test_client_revocation_endpoint(signed_in: Any, agent: Agent) -> None:
    flow, _, token = connect(signed_in, agent)
    response = signed_in.post(
        "/oauth/revoke/", {"token": token["access_token"], "client_id": flow.client_id}
    )
    assert response.status_code == 200
    assert tools_list(signed_in, token["access_token"]).status_code == 401


@pytest.mark.usefixtures("other_org")
def test_another_orgs_member_cannot_bind_a_worker_that_is_not_theirs(
    client: Client, agent: Agent, outsider: User
) -> None:
    client.force_login(outsider)
    flow = new_flow(register(client))
    # Naming the first org in the URL: not a member, 404.
    assert client.get(authorize_url(flow) + "&org=acme").status_code == 404
    # Their own org with the first org's worker id: refused, nothing granted.
    response = consent(client, authorize_url(flow), worker=agent.worker)
    assert response.status_code == 200
    assert "worker" in response.context["form"].errors
    assert not McpGrant.objects.exists()
    assert not Grant.objects.exists()


def test_a_member_without_the_admin_role_cannot_bind(
    client: Client, agent: Agent, member: User
) -> None:
    client.force_login(member)
    flow = new_flow(register(client))
    page = client.get(authorize_url(flow))
    assert page.status_code == 200
    assert page.context["org_choices"] == []
    response = consent(client, authorize_url(flow) + "&org=acme", worker=agent.worker)
    assert response.status_code == 403
    assert not McpGrant.objects.exists()


def test_org_policy_denies_clients(
    signed_in: Any, agent: Agent, org: Organization, admin: User
) -> None:
    services.policy_update(organization=org, actor=admin, clients_allowed=False)
    flow = new_flow(register(signed_in))
    response = consent(signed_in, authorize_url(flow), worker=agent.worker)
    assert response.status_code == 403
    assert not McpGrant.objects.exists()


def test_allowlist_admits_only_matching_client_ids(org: Organization, admin: User) -> None:
    policy = services.policy_update(
        organization=org,
        actor=admin,
        allowed_clients="claude.ai\nhttps://cursor.com/oauth/client.json\n.example.com",
    )
    assert policy.allows("https://claude.ai/oauth/mcp-client-metadata")
    assert policy.allows("https://cursor.com/oauth/client.json")
    assert policy.allows("https://app.example.com/c.json")
    assert not policy.allows("https://cursor.com/other.json")
    assert not policy.allows("https://evil.ai/claude.ai")
    assert not policy.allows("b3f1e0-dcr-client-id")


@pytest.mark.usefixtures("admin")
def test_sandbox_and_grantry_clients_stay_apart(signed_in: Any, agent: Agent) -> None:
    sandbox_app = Application.objects.create(
        name="Sandbox app",
        client_type=Application.CLIENT_PUBLIC,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris="http://127.0.0.1:9999/callback",
    )
    flow = new_flow(sandbox_app.client_id)
    # Grantry's authorization server does not know the Sandbox's application …
    assert signed_in.get(authorize_url(flow)).status_code == 400
    # … and the Sandbox's does not know Grantry's clients.
    grantry_flow = new_flow(register(signed_in))
    response = signed_in.get(
        "/sandbox/o/authorize/?" + authorize_url(grantry_flow, scope="read").split("?", 1)[1]
    )
    assert response.status_code == 400
    # A Grantry-issued token does not open the Sandbox API.
    _, _, token = connect(signed_in, agent)
    api = signed_in.get("/sandbox/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {token['access_token']}")
    assert api.status_code == 401


def test_unused_registrations_expire(client: Client, settings: Settings) -> None:
    from datetime import timedelta

    from django.utils import timezone

    client_id = register(client)
    assert services.expire_unused_clients() == 0
    later = timezone.now() + timedelta(hours=settings.GRANTRY_MCP_DCR_UNUSED_HOURS + 1)
    assert services.expire_unused_clients(now=later) == 1
    assert not Application.objects.filter(client_id=client_id).exists()


def test_registration_is_rate_limited(client: Client, settings: Settings) -> None:
    settings.GRANTRY_MCP_DCR_PER_HOUR = 2
    register(client)
    register(client)
    response = client.post(
        "/oauth/register/",
        json.dumps(
            {"redirect_uris": ["http://127.0.0.1:1/cb"], "token_endpoint_auth_method": "none"}
        ),
        content_type="application/json",
    )
    assert response.status_code == 429
    assert response["Retry-After"] == "3600"


def test_settings_page_lists_grants_and_is_tenant_scoped(
    signed_in: Any, client: Client, agent: Agent, outsider: User
) -> None:
    connect(signed_in, agent)
    page = signed_in.get("/o/acme/settings/mcp/")
    assert page.status_code == 200
    assert b"Test client" in page.content
    grant = McpGrant.objects.get()
    client.force_login(outsider)
    assert client.get("/o/acme/settings/mcp/").status_code == 404
    revoke = f"/o/globex/settings/mcp/grants/{grant.pk}/revoke/"
    assert client.post(revoke, {"confirmed": "yes"}).status_code == 404
    assert McpGrant.objects.get().is_active()
    assert McpIssuedToken.objects.count() == 1
    assert RefreshToken.objects.filter(revoked__isnull=True).count() == 1


@pytest.mark.usefixtures("agent")
def test_an_org_that_requires_mfa_sends_the_member_to_set_it_up(
    signed_in: Any, org: Organization
) -> None:
    org.require_mfa = True
    org.save(update_fields=["require_mfa"])
    flow = new_flow(register(signed_in))
    response = signed_in.get(authorize_url(flow))
    assert response.status_code == 302
    assert response["Location"] == "/accounts/2fa/"
    assert not McpGrant.objects.exists()


def test_an_anonymous_visitor_is_sent_to_sign_in_first(client: Client) -> None:
    flow = new_flow(register(client))
    response = client.get(authorize_url(flow))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/oauth/authorize/")


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (oauth.TokenView, dot_views.TokenView),
        (oauth.RevokeTokenView, dot_views.RevokeTokenView),
        (oauth.ConsentView, dot_views.AuthorizationView),
    ],
)
def test_our_views_never_borrow_the_sandbox_servers_cached_core(ours: Any, theirs: Any) -> None:
    # The Sandbox's DOT view has served a request first (so DOT cached its core on
    # that class); Grantry's subclass must still run Grantry's validator.
    sandbox_core = theirs.get_oauthlib_core()
    core = ours.get_oauthlib_core()
    assert core is not sandbox_core
    assert isinstance(core.server.request_validator, GrantryValidator)
    for grant in getattr(core.server, "grant_types", {}).values():
        assert isinstance(grant.request_validator, GrantryValidator)


# --- issue 22 item 14 and issue 21 items 7, 10 ------------------------------------------


@pytest.mark.usefixtures("agent")
def test_error_redirects_carry_iss(signed_in: Any) -> None:
    """RFC 9207 §2: the issuer is on error responses too."""
    flow = new_flow(register(signed_in))
    for response in (
        signed_in.get(authorize_url(flow, code_challenge=None, code_challenge_method=None)),
        signed_in.get(authorize_url(flow, resource="https://other.example/mcp")),
    ):
        params = redirect_params(response)
        assert params["error"] in {"invalid_request", "invalid_target"}
        assert params["iss"] == services.issuer_url()
        assert params["state"] == flow.state


def test_registration_keeps_application_type(client: Client) -> None:
    response = client.post(
        "/oauth/register/",
        json.dumps(
            {
                "client_name": "Desktop app",
                "redirect_uris": ["http://127.0.0.1:7777/cb"],
                "token_endpoint_auth_method": "none",
                "application_type": "native",
            }
        ),
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["application_type"] == "native"
    web = client.post(
        "/oauth/register/",
        json.dumps(
            {"redirect_uris": ["https://app.example/cb"], "token_endpoint_auth_method": "none"}
        ),
        content_type="application/json",
    )
    assert web.json()["application_type"] == "web"  # OIDC DCR's default
    bad = client.post(
        "/oauth/register/",
        json.dumps(
            {
                "redirect_uris": ["https://app.example/cb"],
                "token_endpoint_auth_method": "none",
                "application_type": "toaster",
            }
        ),
        content_type="application/json",
    )
    assert bad.status_code == 400
    assert bad.json()["error"] == "invalid_client_metadata"


def test_registration_caps_redirect_uris(client: Client, settings: Settings) -> None:
    uris = [f"http://127.0.0.1:{8000 + n}/cb" for n in range(5000)]
    response = client.post(
        "/oauth/register/",
        json.dumps({"redirect_uris": uris, "token_endpoint_auth_method": "none"}),
        content_type="application/json",
    )
    assert response.status_code == 400, response.content[:300]
    assert response.json()["error"] == "invalid_redirect_uri"
    assert str(settings.GRANTRY_MCP_DCR_MAX_REDIRECT_URIS) in response.json()["error_description"]


def test_a_replayed_code_revokes_the_tokens_issued_from_it(signed_in: Any, agent: Agent) -> None:
    """Issue 21 item 7 (RFC 6749 §4.1.2): the second use of a code is refused and the
    tokens the first use got stop working, refresh included."""
    flow, code, tokens = connect(signed_in, agent)
    assert tools_list(signed_in, tokens["access_token"]).status_code == 200
    again = exchange(signed_in, flow, code)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    assert tools_list(signed_in, tokens["access_token"]).status_code == 401
    assert refresh(signed_in, flow, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    event = AuditEvent.objects.get(action="mcp.code_reused")
    assert event.outcome == "failure"
    assert event.metadata["revoked_tokens"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/oauth/token/", "/oauth/revoke/"])
def test_a_nul_in_a_parameter_or_the_basic_credentials_is_400_not_500(
    client: Client, path: str
) -> None:
    """PostgreSQL text holds no NUL: DOT's client and token lookups answered 500."""
    import base64

    basic = base64.b64encode(b"no%00such:secret").decode()  # DOT unquotes each part
    for data, headers in (
        (
            {"grant_type": "refresh_token", "refresh_token": "x"},
            {"HTTP_AUTHORIZATION": f"Basic {basic}"},
        ),
        ({"grant_type": "refresh_token", "refresh_token": "x", "client_id": "a\x00b"}, {}),
        ({"grant_type": "authorization_code", "code": "c\x00", "client_id": "a"}, {}),
        ({"token": "t\x00", "client_id": "a"}, {}),
    ):
        response = client.post(
            path, data, headers={k.removeprefix("HTTP_"): v for k, v in headers.items()}
        )
        assert response.status_code == 400, (data, response.content)
        assert response.json()["error"] == "invalid_request"
