"""Sender-constrained tokens (DPoP, RFC 9449) on every agent surface: the agent API's
execute, the proxy and MCP. The attacker holds a stolen bound token and tries everything
short of the private key; each try is refused with 401 `invalid_dpop_proof`, audited as
`token.dpop_refused`, and nothing reaches the upstream. The honest agent, with a fresh proof
per request, gets through. Unbound tokens work as before and never reach the proof check."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client
from joserfc import jws
from joserfc.jwk import ECKey
from pytest_django.fixtures import Settings

from apps.audit.models import AuditEvent
from apps.broker.tests.conftest import CONNECTION_SECRET, Agent
from apps.broker.tests.upstream import RecordingUpstream
from apps.workers import dpop
from apps.workers.models import WorkerToken
from apps.workers.services import token_mint, worker_update
from apps.workers.tests.dpop_proofs import (
    hmac_proof,
    jkt,
    new_key,
    proof,
    public_jwk,
    unsigned_proof,
)

MODERN = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
}
# Behind a proxy: the public URL is not what the test client's Host says.
PUBLIC = "https://grantry.example.com"


@dataclass(frozen=True)
class Surface:
    method: str
    path: str
    body: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


SURFACES = {
    "execute": Surface("POST", "/api/v1/actions/sandbox.list_projects/execute", "{}"),
    "proxy": Surface("GET", "/api/v1/proxy/sandbox/projects/1"),
    "mcp": Surface(
        "POST",
        "/mcp",
        json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": "sandbox.list_projects", "arguments": {}, "_meta": META},
            }
        ),
        {
            "HTTP_MCP_PROTOCOL_VERSION": MODERN,
            "HTTP_MCP_METHOD": "tools/call",
            "HTTP_MCP_NAME": "sandbox.list_projects",
        },
    ),
}


def send(
    client: Client,
    surface: Surface,
    authorization: str | None,
    proof_value: str | None = None,
    *,
    query: str = "",
) -> Any:
    headers = dict(surface.extra)
    if authorization is not None:
        headers["HTTP_AUTHORIZATION"] = authorization
    if proof_value is not None:
        headers["HTTP_DPOP"] = proof_value
    path = surface.path + query
    if surface.body is None:
        return client.generic(surface.method, path, **headers)  # type: ignore[arg-type]
    return client.generic(
        surface.method,
        path,
        surface.body,
        content_type="application/json",
        **headers,  # type: ignore[arg-type]
    )


@dataclass
class Bound:
    agent: Agent
    key: ECKey
    token: WorkerToken
    raw: str


@pytest.fixture(autouse=True)
def _public_url(settings: Settings) -> None:
    settings.GRANTRY_BASE_URL = PUBLIC


@pytest.fixture
def bound(agent: Agent, upstream: RecordingUpstream) -> Bound:  # noqa: ARG001 - the upstream's URL
    key = new_key()
    token, raw = token_mint(worker=agent.worker, name="bound", dpop_jkt=jkt(key))
    return Bound(agent, key, token, raw)


def _ok(response: Any, surface_name: str) -> None:
    assert response.status_code == 200, response.content
    if surface_name == "mcp":
        result = response.json()["result"]
        assert result["isError"] is False, result
        assert "Apollo" in result["content"][0]["text"]


def _refused(response: Any, reason: str, surface_name: str) -> None:
    assert response.status_code == 401, response.content
    challenge = response["WWW-Authenticate"]
    assert challenge.startswith("DPoP "), challenge
    assert 'error="invalid_dpop_proof"' in challenge
    assert "ES256" in challenge  # algs
    if surface_name == "mcp":
        assert "resource_metadata=" in challenge
    error = response.json()["error"]
    assert error["code"] == "invalid_dpop_proof"
    assert error["details"]["dpop"] == reason, error


def attacks(
    victim: ECKey, attacker: ECKey, token: str, other: str, method: str, url: str
) -> dict[str, tuple[str, str | None, str]]:
    """What an attacker holding the stolen `token` (and knowing the victim's public key,
    which is public) sends: (Authorization, DPoP proof, the check that refuses it). `other`
    is another token of the same worker and key."""
    dpop_scheme = f"DPoP {token}"
    now = int(time.time())
    return {
        "stolen token alone (Bearer)": (f"Bearer {token}", None, "scheme"),
        "stolen token as DPoP, no proof": (dpop_scheme, None, "missing"),
        "a proof from another key": (dpop_scheme, proof(attacker, method, url, token), "key"),
        "the victim's public key, the attacker's signature": (
            dpop_scheme,
            proof(victim, method, url, token, signer=attacker),
            "signature",
        ),
        "wrong method": (dpop_scheme, proof(victim, "DELETE", url, token), "htm"),
        "wrong URL": (
            dpop_scheme,
            proof(victim, method, f"{PUBLIC}/api/v1/actions/sandbox.create_project/execute", token),
            "htu",
        ),
        "the URL the test client's Host names, not the public one": (
            dpop_scheme,
            proof(victim, method, url.replace(PUBLIC, "http://testserver"), token),
            "htu",
        ),
        "ath of another token": (dpop_scheme, proof(victim, method, url, other), "ath"),
        "no ath": (dpop_scheme, proof(victim, method, url, token, ath=None), "ath"),
        "alg none": (dpop_scheme, unsigned_proof(victim, method, url, token), "alg"),
        "HS256 keyed with the public key": (
            dpop_scheme,
            hmac_proof(victim, method, url, token),
            "alg",
        ),
        "expired iat": (dpop_scheme, proof(victim, method, url, token, iat=now - 600), "iat"),
        "iat in the future": (dpop_scheme, proof(victim, method, url, token, iat=now + 600), "iat"),
        "typ JWT": (dpop_scheme, proof(victim, method, url, token, header={"typ": "JWT"}), "typ"),
        "a private key in the header": (
            dpop_scheme,
            proof(victim, method, url, token, header={"jwk": dict(victim.as_dict(private=True))}),
            "jwk",
        ),
        "no jti": (dpop_scheme, proof(victim, method, url, token, jti=None), "claims"),
        "two proofs": (
            dpop_scheme,
            f"{proof(victim, method, url, token)}, {proof(victim, method, url, token)}",
            "malformed",
        ),
    }


ATTACKS = list(attacks(new_key(), new_key(), "t", "o", "GET", PUBLIC))


@pytest.mark.parametrize("surface_name", list(SURFACES))
@pytest.mark.parametrize("attack", ATTACKS)
def test_the_attacker_with_a_stolen_bound_token_is_refused(
    client: Client, bound: Bound, upstream: RecordingUpstream, surface_name: str, attack: str
) -> None:
    surface = SURFACES[surface_name]
    attacker = new_key()
    _, other_raw = token_mint(worker=bound.agent.worker, name="other", dpop_jkt=jkt(bound.key))
    authorization, proof_value, reason = attacks(
        bound.key, attacker, bound.raw, other_raw, surface.method, PUBLIC + surface.path
    )[attack]
    response = send(client, surface, authorization, proof_value)
    _refused(response, reason, surface_name)
    assert upstream.requests == []
    event = AuditEvent.objects.get(action="token.dpop_refused")
    assert event.token_id == bound.token.public_id
    assert event.metadata["code"] == "invalid_dpop_proof"
    assert event.metadata["dpop"] == reason
    assert event.outcome == "failure"
    assert bound.raw not in json.dumps(event.metadata) + event.reason


@pytest.mark.parametrize("surface_name", list(SURFACES))
def test_the_key_holder_gets_through_and_a_replayed_proof_does_not(
    client: Client, bound: Bound, upstream: RecordingUpstream, surface_name: str
) -> None:
    surface = SURFACES[surface_name]
    url = PUBLIC + surface.path
    fresh = proof(bound.key, surface.method, url, bound.raw)
    _ok(send(client, surface, f"DPoP {bound.raw}", fresh), surface_name)
    [received] = upstream.requests
    assert received.headers["Authorization"] == f"Bearer {CONNECTION_SECRET}"
    assert "dpop" not in {name.lower() for name in received.headers}
    assert bound.raw not in json.dumps(received.headers)

    _refused(send(client, surface, f"DPoP {bound.raw}", fresh), "replayed", surface_name)
    assert len(upstream.requests) == 1
    # A new proof of the same key works again; so does the scheme in any case.
    again = proof(bound.key, surface.method, url, bound.raw)
    _ok(send(client, surface, f"dpop {bound.raw}", again), surface_name)
    assert len(upstream.requests) == 2


def test_htu_ignores_the_query_and_compares_scheme_and_host_case_insensitively(
    client: Client, bound: Bound, upstream: RecordingUpstream
) -> None:
    surface = SURFACES["proxy"]
    url = "HTTPS://Grantry.Example.COM:443" + surface.path
    response = send(
        client,
        surface,
        f"DPoP {bound.raw}",
        proof(bound.key, "GET", url, bound.raw),
        query="?done=true",
    )
    assert response.status_code == 200, response.content
    assert upstream.requests[0].path.endswith("?done=true")


def test_a_proof_another_node_saw_first_is_refused(client: Client, bound: Bound) -> None:
    """The replay check is one atomic `cache.add` of (key, jti) in the shared cache (Redis
    in production and CI), so a proof another web node accepted first is refused here."""
    surface = SURFACES["execute"]
    fresh = proof(bound.key, surface.method, PUBLIC + surface.path, bound.raw)
    claims = json.loads(jws.extract_compact(fresh.encode()).payload)
    seen = hashlib.sha256(f"{jkt(bound.key)}\n{claims['jti']}".encode()).hexdigest()
    assert cache.add(f"{dpop.namespace}:{seen}", 1, timeout=60)  # what the other node did
    _refused(send(client, surface, f"DPoP {bound.raw}", fresh), "replayed", "execute")


@pytest.mark.parametrize("surface_name", list(SURFACES))
def test_an_unbound_token_works_as_before_and_never_reaches_the_proof_check(
    client: Client,
    agent: Agent,
    upstream: RecordingUpstream,
    surface_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def never(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("an unbound token reached the DPoP check")

    monkeypatch.setattr(dpop, "proof_verify", never)
    _ok(send(client, SURFACES[surface_name], f"Bearer {agent.raw}"), surface_name)
    assert len(upstream.requests) == 1


def test_an_unbound_token_is_not_accepted_with_the_dpop_scheme(
    client: Client, agent: Agent, upstream: RecordingUpstream
) -> None:
    key = new_key()
    surface = SURFACES["execute"]
    response = send(
        client,
        surface,
        f"DPoP {agent.raw}",
        proof(key, surface.method, PUBLIC + surface.path, agent.raw),
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "dpop_unbound"
    assert response["WWW-Authenticate"].startswith("DPoP ")
    assert upstream.requests == []


@pytest.mark.parametrize("surface_name", list(SURFACES))
def test_a_worker_that_requires_dpop_refuses_its_unbound_tokens_at_once(
    client: Client, bound: Bound, upstream: RecordingUpstream, surface_name: str
) -> None:
    surface = SURFACES[surface_name]
    agent = bound.agent
    _ok(send(client, surface, f"Bearer {agent.raw}"), surface_name)
    worker_update(worker=agent.worker, require_dpop=True)

    refused = send(client, surface, f"Bearer {agent.raw}")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "dpop_required"
    assert 'error="invalid_token"' in refused["WWW-Authenticate"]
    assert refused["WWW-Authenticate"].startswith("DPoP ")
    bound_call = proof(bound.key, surface.method, PUBLIC + surface.path, bound.raw)
    _ok(send(client, surface, f"DPoP {bound.raw}", bound_call), surface_name)
    assert len(upstream.requests) == 2

    worker_update(worker=agent.worker, require_dpop=False)
    _ok(send(client, surface, f"Bearer {agent.raw}"), surface_name)


def test_refusals_count_toward_the_throttle_like_any_failed_authentication(
    client: Client, bound: Bound, settings: Settings
) -> None:
    settings.GRANTRY_AUTH_FAILURES_PER_TOKEN_PREFIX = 3
    surface = SURFACES["execute"]
    codes = [send(client, surface, f"Bearer {bound.raw}").status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]


def test_the_metadata_advertises_dpop(client: Client) -> None:
    resource = client.get("/.well-known/oauth-protected-resource/mcp").json()
    assert "ES256" in resource["dpop_signing_alg_values_supported"]
    assert "none" not in resource["dpop_signing_alg_values_supported"]
    server = client.get("/.well-known/oauth-authorization-server/oauth").json()
    assert server["dpop_signing_alg_values_supported"] == list(dpop.ALGORITHMS)
    assert not any(alg.startswith("HS") for alg in dpop.ALGORITHMS)


def test_the_thumbprint_is_rfc_7638s() -> None:
    """RFC 7638 §3.1's worked example: this RSA key's thumbprint is this value."""
    example = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1"
        "L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v"
        "-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qN"
        "Lyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJ"
        "zKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert dpop.jwk_thumbprint(example) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    key = new_key()
    assert dpop.jwk_thumbprint(public_jwk(key)) == jkt(key)


# --- the official `mcp` client, over real HTTP -----------------------------------------


@pytest.mark.parametrize("mode", ["auto", "legacy"])
@pytest.mark.usefixtures("transactional_db")
def test_the_official_mcp_client_works_through_a_bound_token(
    live_server: Any, org: Any, upstream: RecordingUpstream, settings: Settings, mode: str
) -> None:
    """`grantry_cli.dpop.DPoPAuth` (an httpx2.Auth) signs a fresh proof for every request
    the `mcp` client's Streamable HTTP transport sends; the same token without it fails."""
    import anyio
    import httpx2
    from grantry_cli.dpop import DPoPAuth, DPoPKey
    from mcp import Client as McpClient
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.exceptions import MCPError

    from apps.broker.tests.conftest import make_agent

    settings.GRANTRY_BASE_URL = live_server.url
    agent = make_agent(org)
    key = DPoPKey.generate()
    _, raw = token_mint(worker=agent.worker, name="mcp", dpop_jkt=key.jkt)
    url = f"{live_server.url}/mcp"
    sent: list[dict[str, str]] = []

    async def record(request: httpx2.Request) -> None:
        sent.append(dict(request.headers))

    async def with_key() -> Any:
        async with (
            httpx2.AsyncClient(auth=DPoPAuth(raw, key), event_hooks={"request": [record]}) as hc,
            McpClient(streamable_http_client(url, http_client=hc), mode=mode) as client,
        ):
            tools = (await client.list_tools()).tools
            return tools, await client.call_tool("sandbox.list_projects", {})

    tools, result = anyio.run(with_key)
    assert "sandbox.list_projects" in {t.name for t in tools}
    assert result.is_error is False
    assert "Apollo" in result.content[0].text
    assert len(upstream.requests) == 1
    proofs = [headers["dpop"] for headers in sent]
    assert len(proofs) >= 2
    assert len(set(proofs)) == len(proofs)  # a fresh proof per request
    assert all(headers["authorization"] == f"DPoP {raw}" for headers in sent)

    async def token_alone() -> Any:
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {raw}"}) as hc,
            McpClient(streamable_http_client(url, http_client=hc), mode=mode) as client,
        ):
            return await client.list_tools()

    with pytest.raises((MCPError, httpx2.HTTPError, ExceptionGroup)):
        anyio.run(token_alone)
    assert len(upstream.requests) == 1
