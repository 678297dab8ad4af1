"""MCP's enterprise-managed authorization: an MCP client presents the ID-JAG a company IdP
issued it (RFC 7523 jwt-bearer) and gets Grantry's MCP access token with no consent screen
(apps/mcpauth/idjag.py, the ID-JAG preset of apps/workers/trust.py). The IdP is real: discovery,
JWKS and its own token exchange over HTTP on a loopback port (apps/mcpauth/tests/idp.py).
Everything an attacker would try is refused and audited with the IdP's identity."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import anyio
import httpx2
import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from mcp import Client as McpClient
from mcp.client.auth.extensions.identity_assertion import IdentityAssertionOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from pytest_django.fixtures import Settings
from pytest_django.live_server_helper import LiveServer

from apps.audit.models import AuditEvent
from apps.broker.tests.conftest import make_agent
from apps.broker.tests.upstream import RecordingUpstream
from apps.mcpauth import services
from apps.mcpauth.idjag import GRANT_TYPE
from apps.mcpauth.services import expire_unused_clients, policy_update
from apps.mcpauth.tests.conftest import CALLBACK
from apps.mcpauth.tests.idp import (
    ID_JAG_TOKEN_TYPE,
    ID_TOKEN_TYPE,
    TOKEN_EXCHANGE,
    CompanyIdP,
    new_key,
)
from apps.mcpauth.tests.test_mcp_client import MemoryStorage
from apps.organizations.models import Organization
from apps.workers.models import TrustPolicy, Worker, WorkerToken
from apps.workers.services import worker_create, worker_update
from apps.workers.tests.conftest import make_role
from apps.workers.tests.dpop_proofs import jkt, proof
from apps.workers.tests.dpop_proofs import new_key as new_dpop_key
from apps.workers.trust import trust_policy_create, trust_policy_set_enabled
from tests.factories import OrganizationFactory

TOKEN_URL = "/oauth/token/"


@pytest.fixture(scope="module")
def idp() -> Iterator[CompanyIdP]:
    running = CompanyIdP()
    running.start()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def _rotation_at_once(settings: Settings) -> None:
    settings.GRANTRY_OIDC_JWKS_REFETCH_SECONDS = 0
    # A loaded machine is not an unreachable IdP: the production deadline (5 s) is not
    # what these tests are about.
    settings.GRANTRY_OIDC_FETCH_TIMEOUT = 30.0


def register(client: Any, *, confidential: bool = True, name: str = "Acme MCP client") -> Any:
    """RFC 7591 registration at Grantry, as an MCP client does before it is provisioned."""
    body = {
        "client_name": name,
        "redirect_uris": [CALLBACK],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_post" if confidential else "none",
    }
    response = client.post("/oauth/register/", json.dumps(body), content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()


@pytest.fixture
def worker(org: Organization, admin: User) -> Worker:
    return worker_create(
        organization=org, name="assistant", default_role=make_role(org), owner=admin, actor=admin
    )


@pytest.fixture
def mcp_client(client: Client, db: None) -> dict[str, str]:  # noqa: ARG001 - database access
    return register(client)


@pytest.fixture
def policy(idp: CompanyIdP, worker: Worker, admin: User, mcp_client: dict[str, str]) -> TrustPolicy:
    return trust_policy_create(
        worker=worker,
        preset="idjag",
        issuer=idp.url,
        clients=[mcp_client["client_id"]],
        role=worker.default_role,
        conditions=[],
        max_minutes=30,
        actor=admin,
    )


def claims(idp: CompanyIdP, cid: str, **changes: Any) -> dict[str, Any]:
    defaults = {
        "aud": services.issuer_url(),
        "resource": services.mcp_resource_url(),
        "client_id": cid,
        "scope": "mcp",
    }
    return idp.claims(**{**defaults, **changes})


def present(
    client: Client,
    assertion: str,
    registered: dict[str, Any],
    *,
    dpop: str | None = None,
    **extra: Any,
) -> Any:
    data = {
        "grant_type": GRANT_TYPE,
        "assertion": assertion,
        "client_id": registered["client_id"],
        **({"client_secret": registered["client_secret"]} if "client_secret" in registered else {}),
        **extra,
    }
    headers = {"DPoP": dpop} if dpop is not None else {}
    return client.post(TOKEN_URL, {k: v for k, v in data.items() if v is not None}, headers=headers)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(body: dict[str, Any], kid: str) -> str:
    header = _b64(json.dumps({"alg": "none", "kid": kid, "typ": "oauth-id-jag+jwt"}).encode())
    return f"{header}.{_b64(json.dumps(body).encode())}."


def hmac_with_public_key(idp: CompanyIdP, body: dict[str, Any]) -> str:
    """HS256 "signed" with the IdP's PUBLIC key."""
    header = {"alg": "HS256", "kid": idp.key.kid, "typ": "oauth-id-jag+jwt"}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(body).encode())}"
    secret = json.dumps(idp.key.as_dict(private=False)).encode()
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def refused(
    response: Any, code: str, error: str = "invalid_grant", status: int = 400
) -> AuditEvent:
    assert response.status_code == status, response.content
    assert response["Cache-Control"] == "no-store"
    assert response.json()["error"] == error
    assert "access_token" not in response.json()
    event = AuditEvent.objects.filter(action="mcp.id_jag_refused").latest("id")
    assert event.metadata["code"] == code
    return event


def test_the_idjag_becomes_the_mcp_access_token(
    client: Client, idp: CompanyIdP, policy: TrustPolicy, worker: Worker, mcp_client: dict[str, str]
) -> None:
    response = present(client, idp.sign(claims(idp, mcp_client["client_id"])), mcp_client)
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "mcp"
    assert "refresh_token" not in body
    # The MCP OAuth lifetime (GRANTRY_MCP_TOKEN_SECONDS, 1 h), under the policy's 30 min here.
    assert 25 * 60 < body["expires_in"] <= 30 * 60
    token = WorkerToken.objects.get(trust_policy=policy)
    assert body["access_token"].startswith("gry_")
    assert token.worker == worker
    assert token.role == policy.role
    assert token.audience == services.mcp_resource_url()  # like the OAuth flow's tokens
    assert token.oauth_client == "Acme MCP client"
    event = AuditEvent.objects.get(action="mcp.id_jag_accepted")
    assert event.organization_id == worker.organization_id
    assert event.metadata["issuer"] == idp.url
    assert event.metadata["subject"] == "alice"
    assert event.metadata["client_id"] == mcp_client["client_id"]
    assert event.token_id == token.public_id
    assert body["access_token"] not in json.dumps(event.metadata)

    # Turning the IdP's trust off ends what it let in.
    trust_policy_set_enabled(policy=policy, enabled=False)
    token.refresh_from_db()
    assert token.revoked_at is not None
    again = present(client, idp.sign(claims(idp, mcp_client["client_id"])), mcp_client)
    refused(again, "no_policy")


def test_a_worker_that_requires_dpop_gets_its_token_only_bound_to_a_proof(
    client: Client,
    idp: CompanyIdP,
    policy: TrustPolicy,  # noqa: ARG001 - the IdP's trust
    worker: Worker,
    mcp_client: dict[str, str],
    settings: Settings,
) -> None:
    worker_update(worker=worker, require_dpop=True)
    cid = mcp_client["client_id"]
    no_proof = present(client, idp.sign(claims(idp, cid)), mcp_client)
    assert no_proof.status_code == 400, no_proof.content
    assert no_proof.json()["error"] == "invalid_dpop_proof"
    assert not WorkerToken.objects.filter(worker=worker).exists()

    key = new_dpop_key()
    url = f"{settings.GRANTRY_BASE_URL}{TOKEN_URL}"
    wrong_url = present(
        client, idp.sign(claims(idp, cid)), mcp_client, dpop=proof(key, "POST", url + "x")
    )
    assert wrong_url.json()["error"] == "invalid_dpop_proof"
    bound = present(client, idp.sign(claims(idp, cid)), mcp_client, dpop=proof(key, "POST", url))
    assert bound.status_code == 200, bound.content
    assert bound.json()["token_type"] == "DPoP"
    assert WorkerToken.objects.get(worker=worker).dpop_jkt == jkt(key)


@pytest.mark.usefixtures("policy")
def test_the_org_mcp_token_lifetime_applies(
    client: Client, idp: CompanyIdP, org: Organization, admin: User, mcp_client: dict[str, str]
) -> None:
    policy_update(organization=org, actor=admin, token_minutes=10)
    response = present(client, idp.sign(claims(idp, mcp_client["client_id"])), mcp_client)
    assert response.status_code == 200, response.content
    assert 9 * 60 < response.json()["expires_in"] <= 10 * 60


def now() -> int:
    return int(time.time())


# name → (how the assertion is made, refusal code, error)
CASES: dict[str, tuple[Any, str, str]] = {
    "wrong issuer": (
        lambda idp, cid: idp.sign(claims(idp, cid, iss="https://idp.other.example")),
        "no_policy",
        "invalid_grant",
    ),
    "wrong audience": (
        lambda idp, cid: idp.sign(claims(idp, cid, aud="http://127.0.0.1:8000")),
        "wrong_audience",
        "invalid_grant",
    ),
    "one more audience": (
        lambda idp, cid: idp.sign(
            claims(idp, cid, aud=[services.issuer_url(), "https://other.example"])
        ),
        "wrong_audience",
        "invalid_grant",
    ),
    "expired": (
        lambda idp, cid: idp.sign(claims(idp, cid, iat=now() - 900, exp=now() - 300)),
        "expired",
        "invalid_grant",
    ),
    "not yet valid": (
        lambda idp, cid: idp.sign(claims(idp, cid, nbf=now() + 600, exp=now() + 900)),
        "not_yet_valid",
        "invalid_grant",
    ),
    "issued in the future": (
        lambda idp, cid: idp.sign(claims(idp, cid, iat=now() + 600, exp=now() + 900)),
        "not_yet_valid",
        "invalid_grant",
    ),
    "alg none": (
        lambda idp, cid: unsigned(claims(idp, cid), idp.key.kid),
        "algorithm",
        "invalid_grant",
    ),
    "HS256 with the public key": (
        lambda idp, cid: hmac_with_public_key(idp, claims(idp, cid)),
        "algorithm",
        "invalid_grant",
    ),
    "unknown kid": (
        lambda idp, cid: idp.sign(claims(idp, cid), key=new_key()),
        "bad_signature",
        "invalid_grant",
    ),
    "another key under the IdP's kid": (
        lambda idp, cid: idp.sign(
            claims(idp, cid),
            key=new_key(),
            header={"alg": "ES256", "kid": idp.key.kid, "typ": "oauth-id-jag+jwt"},
        ),
        "bad_signature",
        "invalid_grant",
    ),
    "wrong typ (an ID token)": (
        lambda idp, cid: idp.sign(
            claims(idp, cid), header={"alg": "ES256", "kid": idp.key.kid, "typ": "JWT"}
        ),
        "typ",
        "invalid_grant",
    ),
    "no typ": (
        lambda idp, cid: idp.sign(claims(idp, cid), header={"alg": "ES256", "kid": idp.key.kid}),
        "typ",
        "invalid_grant",
    ),
    "issued to another client": (
        lambda idp, _cid: idp.sign(claims(idp, "https://other-client.example/meta.json")),
        "client_mismatch",
        "invalid_grant",
    ),
    "another resource": (
        lambda idp, cid: idp.sign(claims(idp, cid, resource="http://127.0.0.1:8000/api")),
        "wrong_resource",
        "invalid_grant",
    ),
    "no jti": (
        lambda idp, cid: idp.sign(claims(idp, cid, jti=None)),
        "bad_claims",
        "invalid_grant",
    ),
    "no iat": (
        lambda idp, cid: idp.sign(claims(idp, cid, iat=None)),
        "bad_claims",
        "invalid_grant",
    ),
    "no client_id": (
        lambda idp, cid: idp.sign(claims(idp, cid, client_id=None)),
        "bad_claims",
        "invalid_grant",
    ),
    "a scope without mcp": (
        lambda idp, cid: idp.sign(claims(idp, cid, scope="openid email")),
        "scope",
        "invalid_scope",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refused(
    client: Client,
    idp: CompanyIdP,
    policy: TrustPolicy,
    mcp_client: dict[str, str],
    case: str,
) -> None:
    make, code, error = CASES[case]
    assertion = make(idp, mcp_client["client_id"])
    event = refused(present(client, assertion, mcp_client), code, error)
    assert not WorkerToken.objects.filter(trust_policy__isnull=False).exists()
    assert event.metadata["authenticated_client"] == mcp_client["client_id"]
    assert event.metadata["subject"] == "alice"
    if code != "no_policy":
        assert event.metadata["issuer"] == idp.url
        assert event.organization_id == policy.organization_id
    assert assertion not in json.dumps(event.metadata)


@pytest.mark.usefixtures("policy")
def test_a_disallowed_client_is_refused(client: Client, idp: CompanyIdP) -> None:
    """A client Grantry knows, with an ID-JAG truly issued to it, that the company's policy
    does not name."""
    other = register(client, name="Unvetted client")
    assertion = idp.sign(claims(idp, other["client_id"]))
    event = refused(present(client, assertion, other), "client_not_allowed")
    assert event.metadata["client_id"] == other["client_id"]
    assert event.metadata["signature_verified"] is True


@pytest.mark.usefixtures("policy")
def test_client_authentication_is_required(
    client: Client, idp: CompanyIdP, mcp_client: dict[str, str]
) -> None:
    assertion = idp.sign(claims(idp, mcp_client["client_id"]))
    wrong = {**mcp_client, "client_secret": "not-the-secret"}
    refused(present(client, assertion, wrong), "client_auth", "invalid_client", 401)
    nobody = {"client_id": None}
    refused(present(client, assertion, nobody), "client_auth", "invalid_client", 401)
    unknown = {"client_id": "no-such-client"}
    refused(present(client, assertion, unknown), "client_auth", "invalid_client", 401)
    # PostgreSQL text holds no NUL: refused by the token endpoint up front, never a 500.
    nul = present(client, assertion, {"client_id": "no\x00such"})
    basic_nul = base64.b64encode(b"no\x00such:secret").decode()
    nul_basic = client.post(
        TOKEN_URL,
        {"grant_type": GRANT_TYPE, "assertion": assertion},
        HTTP_AUTHORIZATION=f"Basic {basic_nul}",
    )
    for response in (nul, nul_basic):
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"
    # HTTP Basic, the preferred method, works (and the assertion was not burnt above).
    basic = base64.b64encode(
        f"{mcp_client['client_id']}:{mcp_client['client_secret']}".encode()
    ).decode()
    response = client.post(
        TOKEN_URL,
        {"grant_type": GRANT_TYPE, "assertion": assertion},
        HTTP_AUTHORIZATION=f"Basic {basic}",
    )
    assert response.status_code == 200, response.content


def test_a_public_client_names_itself(
    client: Client, idp: CompanyIdP, worker: Worker, admin: User
) -> None:
    public = register(client, confidential=False)
    assert "client_secret" not in public
    trust_policy_create(
        worker=worker,
        preset="idjag",
        issuer=idp.url,
        clients=[public["client_id"]],
        role=worker.default_role,
        actor=admin,
    )
    response = present(client, idp.sign(claims(idp, public["client_id"])), public)
    assert response.status_code == 200, response.content


def test_a_replayed_jti_is_refused(
    client: Client, idp: CompanyIdP, policy: TrustPolicy, mcp_client: dict[str, str]
) -> None:
    assertion = idp.sign(claims(idp, mcp_client["client_id"]))
    assert present(client, assertion, mcp_client).status_code == 200
    second = present(client, assertion, mcp_client)
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"
    event = AuditEvent.objects.filter(action="mcp.id_jag_refused").latest("id")
    assert event.metadata["code"] == "replayed"
    assert WorkerToken.objects.filter(trust_policy=policy).count() == 1
    # The same jti in a newly signed assertion is the same grant: refused too.
    jti = json.loads(base64.urlsafe_b64decode(assertion.split(".")[1] + "=="))["jti"]
    resigned = idp.sign(claims(idp, mcp_client["client_id"], jti=jti))
    assert present(client, resigned, mcp_client).json()["error"] == "invalid_grant"


@pytest.mark.usefixtures("policy")
def test_accepted_after_the_idp_rotates_its_key(
    client: Client, idp: CompanyIdP, mcp_client: dict[str, str]
) -> None:
    cid = mcp_client["client_id"]
    old_key = idp.key
    assert present(client, idp.sign(claims(idp, cid)), mcp_client).status_code == 200
    idp.rotate()
    response = present(client, idp.sign(claims(idp, cid)), mcp_client)
    assert response.status_code == 200, response.content
    # The retired key is gone from the JWKS: what it signs now is refused.
    stale = idp.sign(claims(idp, cid), key=old_key)
    assert present(client, stale, mcp_client).json()["error"] == "invalid_grant"
    event = AuditEvent.objects.filter(action="mcp.id_jag_refused").latest("id")
    assert event.metadata["code"] == "bad_signature"


def test_two_organizations_trusting_the_idp_for_one_client_are_refused(
    client: Client, idp: CompanyIdP, policy: TrustPolicy, mcp_client: dict[str, str]
) -> None:
    """Another organization trusting the same IdP cannot take its people: when both would
    accept, nobody gets a token; a claim condition that tells them apart settles it."""
    globex = OrganizationFactory(name="Globex", slug="globex")
    squatter = worker_create(organization=globex, name="catcher", default_role=make_role(globex))
    theirs = trust_policy_create(
        worker=squatter,
        preset="idjag",
        issuer=idp.url,
        clients=[mcp_client["client_id"]],
        role=squatter.default_role,
    )
    assertion = idp.sign(claims(idp, mcp_client["client_id"]))
    event = refused(present(client, assertion, mcp_client), "ambiguous")
    assert event.organization_id is None
    theirs.delete()
    trust_policy_create(
        worker=squatter,
        preset="idjag",
        issuer=idp.url,
        clients=[mcp_client["client_id"]],
        conditions=[{"claim": "email", "value": "*@globex.example"}],
        role=squatter.default_role,
    )
    fresh = idp.sign(claims(idp, mcp_client["client_id"], email="alice@acme.example"))
    response = present(client, fresh, mcp_client)
    assert response.status_code == 200, response.content
    assert WorkerToken.objects.get(trust_policy__isnull=False).worker == policy.worker


@pytest.mark.usefixtures("policy")
def test_the_organizations_mcp_client_policy_applies(
    client: Client, idp: CompanyIdP, org: Organization, admin: User, mcp_client: dict[str, str]
) -> None:
    policy_update(organization=org, actor=admin, clients_allowed=False)
    assertion = idp.sign(claims(idp, mcp_client["client_id"]))
    refused(present(client, assertion, mcp_client), "org_policy")


@pytest.mark.usefixtures("policy")
def test_scope_and_resource_parameters(
    client: Client, idp: CompanyIdP, mcp_client: dict[str, str]
) -> None:
    cid = mcp_client["client_id"]
    other = present(
        client, idp.sign(claims(idp, cid)), mcp_client, resource="https://x.example/mcp"
    )
    assert other.json()["error"] == "invalid_target"
    admin_scope = present(client, idp.sign(claims(idp, cid)), mcp_client, scope="mcp admin")
    assert admin_scope.json()["error"] == "invalid_scope"
    ok = present(
        client,
        idp.sign(claims(idp, cid, scope=None)),  # the IdP may leave scope out
        mcp_client,
        resource=services.mcp_resource_url(),
        scope="mcp",
    )
    assert ok.status_code == 200, ok.content


@pytest.mark.usefixtures("policy")
def test_the_token_exchange_refuses_an_idjag(
    client: Client, idp: CompanyIdP, worker: Worker, admin: User, mcp_client: dict[str, str]
) -> None:
    """An ID-JAG is a grant for the jwt-bearer grant only (RFC 8725 explicit typing), and an
    ID-JAG policy never lets a workload's token exchange in."""
    trust_policy_create(
        worker=worker,
        preset="oidc",
        issuer=idp.url,
        audience=services.issuer_url(),
        conditions=[{"claim": "sub", "value": "alice"}],
        role=worker.default_role,
        actor=admin,
    )
    response = client.post(
        TOKEN_URL,
        {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": idp.sign(claims(idp, mcp_client["client_id"])),
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "audience": f"{worker.organization.slug}/{worker.name}",
        },
    )
    assert response.json()["error"] == "invalid_grant"
    assert AuditEvent.objects.get(action="token.exchange_refused").metadata["code"] == "typ"


def test_policy_rules(idp: CompanyIdP, worker: Worker, admin: User) -> None:
    def make(**fields: Any) -> TrustPolicy:
        return trust_policy_create(
            worker=worker, preset="idjag", issuer=idp.url, role=worker.default_role, **fields
        )

    with pytest.raises(ValidationError, match="client"):
        make(clients=[])
    with pytest.raises(ValidationError, match="no wildcards"):
        make(clients=["https://*.example"])
    with pytest.raises(ValidationError, match="audience"):
        make(clients=["c1"], audience="https://elsewhere.example")
    with pytest.raises(ValidationError, match="Only the ID-JAG preset"):
        trust_policy_create(
            worker=worker,
            preset="oidc",
            issuer=idp.url,
            conditions=[{"claim": "sub", "value": "x"}],
            clients=["c1"],
            role=worker.default_role,
        )
    policy = make(clients=["c1", "c1", "c2"], actor=admin)
    assert policy.clients == ["c1", "c2"]
    assert policy.audience == services.issuer_url()
    event = AuditEvent.objects.get(action="worker.trust_policy_added")
    assert event.metadata["clients"] == ["c1", "c2"]


@pytest.mark.usefixtures("policy")
def test_a_provisioned_client_is_not_expired_as_unused(
    client: Client, mcp_client: dict[str, str], settings: Settings
) -> None:
    from oauth2_provider.models import get_application_model

    unused = register(client, name="Never used")
    later = timezone.now() + timedelta(hours=settings.GRANTRY_MCP_DCR_UNUSED_HOURS + 1)
    assert expire_unused_clients(now=later) == 1
    ids = set(get_application_model().objects.values_list("client_id", flat=True))
    assert mcp_client["client_id"] in ids
    assert unused["client_id"] not in ids


def test_management_api_and_worker_page(
    client: Client, idp: CompanyIdP, worker: Worker, admin: User
) -> None:
    client.force_login(admin)
    url = f"/api/v1/orgs/{worker.organization.slug}/workers/{worker.pk}/trust-policies/"
    created = client.post(
        url,
        {
            "preset": "idjag",
            "issuer": idp.url,
            "clients": ["https://claude.example/client.json"],
            "role": worker.default_role_id,
            "max_minutes": 60,
        },
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["clients"] == ["https://claude.example/client.json"]
    assert created.json()["audience"] == services.issuer_url()
    page = client.get(f"/o/{worker.organization.slug}/workers/{worker.pk}/")
    assert b"https://claude.example/client.json" in page.content
    added = client.post(
        f"/o/{worker.organization.slug}/workers/{worker.pk}/trust-policies/new/",
        {
            "preset": "idjag",
            "issuer": idp.url,
            "clients": "client-a\nclient-b\n",
            "conditions": "",
            "role": worker.default_role_id,
            "max_minutes": 20,
        },
    )
    assert added.status_code == 302
    assert TrustPolicy.objects.filter(worker=worker, clients=["client-a", "client-b"]).exists()
    # Settings → MCP clients lists the company IdPs too.
    settings_page = client.get(f"/o/{worker.organization.slug}/settings/mcp/").content.decode()
    assert "client-b" in settings_page
    assert idp.url in settings_page


# --- the official `mcp` client, end to end over real HTTP ---------------------------------


@pytest.fixture
def live(
    transactional_db: None,  # noqa: ARG001 - database access
    live_server: LiveServer,
    settings: Settings,
    org: Organization,
) -> Iterator[dict[str, Any]]:
    settings.GRANTRY_BASE_URL = live_server.url
    settings.GRANTRY_OIDC_JWKS_REFETCH_SECONDS = 0
    with RecordingUpstream() as upstream:
        settings.GRANTRY_PROVIDER_URLS = {"sandbox": upstream.url}
        yield {"base_url": live_server.url, "agent": make_agent(org), "upstream": upstream}


def test_the_official_mcp_client_with_an_idjag(live: dict[str, Any], idp: CompanyIdP) -> None:
    base_url = live["base_url"]
    agent = live["agent"]
    registered = httpx2.post(
        f"{base_url}/oauth/register/",
        json={
            "client_name": "Acme assistant",
            "redirect_uris": [CALLBACK],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_post",
        },
    ).json()
    client_id, client_secret = registered["client_id"], registered["client_secret"]
    policy = trust_policy_create(
        worker=agent.worker,
        preset="idjag",
        issuer=idp.url,
        clients=[client_id],
        role=agent.worker.default_role,
        max_minutes=60,
    )
    idp.policy[client_id] = {"alice"}
    session = idp.sign_in("alice")  # Alice signed in to the MCP client with her company SSO
    asked: list[tuple[str, str]] = []

    async def fetch_id_jag(audience: str, resource: str) -> str:
        """Leg 1: the MCP client trades Alice's sign-in for an ID-JAG at her IdP."""
        asked.append((audience, resource))
        async with httpx2.AsyncClient() as hc:
            answer = await hc.post(
                f"{idp.url}/token",
                data={
                    "grant_type": TOKEN_EXCHANGE,
                    "requested_token_type": ID_JAG_TOKEN_TYPE,
                    "subject_token": session,
                    "subject_token_type": ID_TOKEN_TYPE,
                    "audience": audience,
                    "resource": resource,
                    "client_id": client_id,
                },
            )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])

    storage = MemoryStorage()
    provider = IdentityAssertionOAuthProvider(
        server_url=f"{base_url}/mcp",
        storage=storage,
        client_id=client_id,
        client_secret=client_secret,
        issuer=f"{base_url}/oauth",
        assertion_provider=fetch_id_jag,
    )
    out: dict[str, Any] = {}

    async def main() -> None:
        async with (
            httpx2.AsyncClient(auth=provider, timeout=60) as hc,
            McpClient(
                streamable_http_client(f"{base_url}/mcp", http_client=hc), mode="auto"
            ) as mcp,
        ):
            out["tools"] = (await mcp.list_tools()).tools
            out["call"] = await mcp.call_tool("sandbox.list_projects", {})

    anyio.run(main)
    assert asked == [(f"{base_url}/oauth", f"{base_url}/mcp")]
    assert {t.name for t in out["tools"]} == {"sandbox.list_projects", "sandbox.list_tasks"}
    assert out["call"].is_error is False
    assert "Apollo" in out["call"].content[0].text
    token = WorkerToken.objects.get(trust_policy=policy)
    assert storage.tokens is not None
    assert storage.tokens.access_token.startswith("gry_")
    assert token.audience == f"{base_url}/mcp"
    accepted = AuditEvent.objects.get(action="mcp.id_jag_accepted")
    assert accepted.metadata["subject"] == "alice"
    assert accepted.metadata["client_id"] == client_id
    calls = AuditEvent.objects.filter(action="broker.execute", worker_id=agent.worker.pk)
    assert list(calls.values_list("token_id", flat=True)) == [token.public_id]
    assert calls.get().metadata["oauth_client"] == "Acme assistant"

    # The IdP stops vouching (its policy changed): the next ID-JAG is never issued, and
    # the company turning off its trust in Grantry ends the token at once.
    trust_policy_set_enabled(policy=policy, enabled=False)
    response = httpx2.post(
        f"{base_url}/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
        headers={"Authorization": f"Bearer {storage.tokens.access_token}"},
    )
    assert response.status_code == 401


# --- hostile assertions: refused, never a 500 ----------------------------------------------

_scalar = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
_json_text = st.one_of(
    _scalar,
    st.lists(_scalar | st.lists(_scalar, max_size=3), max_size=4),
    st.dictionaries(
        st.sampled_from(["iss", "sub", "aud", "exp", "jti", "alg", "typ", "kid"]) | st.text(),
        _scalar | st.lists(_scalar, max_size=3) | st.dictionaries(st.text(), _scalar, max_size=2),
        max_size=6,
    ),
).map(json.dumps)
_segment = st.one_of(
    _json_text.map(lambda text: _b64(text.encode())),
    st.text(max_size=40),
    st.just(_b64(b'{"alg": "ES256", "typ": "oauth-id-jag+jwt", "kid": ' + b"[" * 500 + b"]")),
)


@pytest.mark.usefixtures("policy")
@hypothesis_settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(header=_segment, payload=_segment, signature=st.text(max_size=20))
def test_a_hostile_assertion_is_refused_never_a_500(
    client: Client, mcp_client: dict[str, str], header: str, payload: str, signature: str
) -> None:
    response = present(client, f"{header}.{payload}.{signature}", mcp_client)
    assert 400 <= response.status_code < 500, response.content
    assert response.json()["error"] in ("invalid_grant", "invalid_request")


def test_an_idjag_never_becomes_a_members_own_agent(
    client: Client,
    idp: CompanyIdP,
    policy: TrustPolicy,
    worker: Worker,
    admin: User,
    member: User,
    mcp_client: dict[str, str],
) -> None:
    """An ID-JAG names whoever the IdP signed in, not the member a worker acts for: a policy
    that lets the IdP's people in as "Alice's agent" would hand any of them Alice's personal
    connections (the consent screen refuses the same binding). Refused when the policy is
    made, and at the grant when the worker was bound to a member afterwards."""
    cid = mcp_client["client_id"]
    agent = worker_create(
        organization=worker.organization,
        name="member-agent",
        default_role=worker.default_role,
        acts_for=member,
        actor=admin,
    )
    with pytest.raises(ValidationError) as problem:
        trust_policy_create(
            worker=agent,
            preset="idjag",
            issuer=idp.url,
            clients=[cid],
            role=agent.default_role,
            max_minutes=30,
            actor=admin,
        )
    assert "worker" in problem.value.message_dict
    assert not TrustPolicy.objects.filter(worker=agent).exists()

    # The policy's worker is bound to the member after the policy was made (which turns
    # its trust policies off) and an admin turns the policy on again: the IdP's "bob" (not
    # the member) still gets nothing.
    worker_update(worker=worker, acts_for=member, actor=admin)
    policy.refresh_from_db()
    assert not policy.enabled
    trust_policy_set_enabled(policy=policy, enabled=True, actor=admin)
    response = present(client, idp.sign(claims(idp, cid, sub="bob")), mcp_client)
    refused(response, "acts_for")
    assert not WorkerToken.objects.filter(worker=worker).exists()
