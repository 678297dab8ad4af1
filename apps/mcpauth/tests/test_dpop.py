"""DPoP (RFC 9449 §5) at the MCP clients' token endpoint: a proof on the authorization
code request binds the access token to its key (`token_type: DPoP`), the refresh of a bound
token needs a proof of the same key, and a worker that requires DPoP gets no token without
one. (The exchange's DPoP is in test_token_exchange.py, the resource side in
apps/broker/tests/test_dpop.py.)"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from pytest_django.fixtures import Settings

from apps.broker.tests.conftest import Agent, make_agent
from apps.core.tokens import token_digest
from apps.mcpauth import services
from apps.mcpauth.tests.oauth import (
    Flow,
    authorize_url,
    consent,
    new_flow,
    redirect_params,
    register,
)
from apps.organizations.models import Organization
from apps.workers.models import WorkerToken
from apps.workers.services import worker_update
from apps.workers.tests.dpop_proofs import jkt, new_key, proof

pytestmark = pytest.mark.django_db


@pytest.fixture
def agent(org: Organization) -> Agent:
    return make_agent(org)


@pytest.fixture
def signed_in(client: Client, admin: User) -> Client:
    client.force_login(admin)
    return client


def token_url(settings: Settings) -> str:
    return f"{settings.GRANTRY_BASE_URL}/oauth/token/"


def code_for(client: Client, agent: Agent) -> tuple[Flow, str]:
    flow = new_flow(register(client))
    response = consent(
        client, authorize_url(flow, resource=services.mcp_resource_url()), worker=agent.worker
    )
    return flow, redirect_params(response)["code"]


def redeem(client: Client, flow: Flow, code: str, dpop_proof: str | None = None) -> Any:
    headers = {"HTTP_DPOP": dpop_proof} if dpop_proof is not None else {}
    return client.post(
        "/oauth/token/",
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": flow.redirect_uri,
            "client_id": flow.client_id,
            "code_verifier": flow.verifier,
        },
        **headers,  # type: ignore[arg-type]
    )


def refresh(client: Client, flow: Flow, refresh_token: str, dpop_proof: str | None) -> Any:
    headers = {"HTTP_DPOP": dpop_proof} if dpop_proof is not None else {}
    return client.post(
        "/oauth/token/",
        {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": flow.client_id,
        },
        **headers,  # type: ignore[arg-type]
    )


def tools_list(client: Client, settings: Settings, token: str, key: Any = None) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}})
    if key is None:
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    else:
        url = f"{settings.GRANTRY_BASE_URL}/mcp"
        headers = {
            "HTTP_AUTHORIZATION": f"DPoP {token}",
            "HTTP_DPOP": proof(key, "POST", url, token),
        }
    return client.post("/mcp", body, content_type="application/json", **headers)  # type: ignore[arg-type]


def test_a_proof_on_the_code_request_binds_the_token_and_its_refreshes(
    signed_in: Client, agent: Agent, settings: Settings
) -> None:
    key = new_key()
    flow, code = code_for(signed_in, agent)
    answer = redeem(signed_in, flow, code, proof(key, "POST", token_url(settings)))
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["token_type"] == "DPoP"
    row = WorkerToken.objects.get(worker=agent.worker, audience=services.mcp_resource_url())
    assert row.dpop_jkt == jkt(key)
    assert tools_list(signed_in, settings, body["access_token"]).status_code == 401
    assert tools_list(signed_in, settings, body["access_token"], new_key()).status_code == 401
    assert tools_list(signed_in, settings, body["access_token"], key).status_code == 200

    # The refresh token is bound too: no proof, or another key's, gets nothing.
    bare = refresh(signed_in, flow, body["refresh_token"], None)
    assert bare.status_code == 400
    assert bare.json()["error"] == "invalid_dpop_proof"
    other = refresh(
        signed_in, flow, body["refresh_token"], proof(new_key(), "POST", token_url(settings))
    )
    assert other.status_code == 400
    assert other.json()["error"] == "invalid_dpop_proof"
    renewed = refresh(
        signed_in, flow, body["refresh_token"], proof(key, "POST", token_url(settings))
    )
    assert renewed.status_code == 200, renewed.content
    assert renewed.json()["token_type"] == "DPoP"
    fresh = renewed.json()["access_token"]
    assert WorkerToken.objects.get(digest=token_digest(fresh)).dpop_jkt == jkt(key)
    assert tools_list(signed_in, settings, fresh, key).status_code == 200


@pytest.mark.parametrize(
    "bad",
    ["wrong url", "wrong method", "alg none", "stale"],
)
def test_a_bad_proof_on_the_code_request_gets_no_token(
    signed_in: Client, agent: Agent, settings: Settings, bad: str
) -> None:
    from apps.workers.tests.dpop_proofs import unsigned_proof

    key = new_key()
    url = token_url(settings)
    proofs = {
        "wrong url": proof(key, "POST", f"{settings.GRANTRY_BASE_URL}/oauth/revoke/"),
        "wrong method": proof(key, "GET", url),
        "alg none": unsigned_proof(key, "POST", url),
        "stale": proof(key, "POST", url, iat=1),
    }
    flow, code = code_for(signed_in, agent)
    answer = redeem(signed_in, flow, code, proofs[bad])
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_dpop_proof"
    assert not WorkerToken.objects.filter(audience=services.mcp_resource_url()).exists()


def test_a_worker_that_requires_dpop_gets_no_token_without_a_proof(
    signed_in: Client, agent: Agent, settings: Settings
) -> None:
    worker_update(worker=agent.worker, require_dpop=True)
    page = signed_in.get(
        authorize_url(new_flow(register(signed_in)), resource=services.mcp_resource_url())
    )
    assert f"{agent.worker.name} (requires DPoP)" in page.content.decode()
    flow, code = code_for(signed_in, agent)
    refused = redeem(signed_in, flow, code)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_dpop_proof"
    assert not WorkerToken.objects.filter(audience=services.mcp_resource_url()).exists()

    key = new_key()
    flow, code = code_for(signed_in, agent)
    answer = redeem(signed_in, flow, code, proof(key, "POST", token_url(settings)))
    assert answer.status_code == 200, answer.content
    assert answer.json()["token_type"] == "DPoP"


def test_without_a_proof_nothing_changes(
    signed_in: Client, agent: Agent, settings: Settings
) -> None:
    flow, code = code_for(signed_in, agent)
    answer = redeem(signed_in, flow, code)
    assert answer.status_code == 200
    assert answer.json()["token_type"] == "Bearer"
    assert tools_list(signed_in, settings, answer.json()["access_token"]).status_code == 200
