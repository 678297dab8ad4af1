"""RFC 8693 token exchange against a real OpenID Connect issuer (oidc-provider over HTTP):
a workload's signed token becomes a short-lived worker token, and everything an attacker
would try is refused (apps/mcpauth/exchange.py, apps/workers/trust.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.test import Client
from pytest_django.fixtures import Settings

from apps.audit.models import AuditEvent
from apps.mcpauth.exchange import ACCESS_TOKEN_TYPE, GRANT_TYPE
from apps.mcpauth.tests.issuer import AUDIENCE, Issuer, new_key
from apps.organizations.models import Organization
from apps.workers.models import TrustPolicy, Worker, WorkerToken
from apps.workers.services import worker_create, worker_revoke_all_tokens
from apps.workers.tests.conftest import make_role
from apps.workers.trust import conditions_clean, trust_policy_create, trust_policy_delete

TOKEN_URL = "/oauth/token/"
WHOAMI = "/api/v1/whoami"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    running = Issuer()
    running.start()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def _rotation_at_once(settings: Settings) -> None:
    settings.GRANTRY_OIDC_JWKS_REFETCH_SECONDS = 0


@pytest.fixture
def worker(org: Organization, admin: User) -> Worker:
    return worker_create(
        organization=org, name="triage", default_role=make_role(org), owner=admin, actor=admin
    )


@pytest.fixture
def policy(issuer: Issuer, worker: Worker, admin: User) -> TrustPolicy:
    return trust_policy_create(
        worker=worker,
        preset="oidc",
        issuer=issuer.url,
        audience=AUDIENCE,
        conditions=[
            {"claim": "sub", "value": "triage-ci"},
            {"claim": "repository", "value": "acme/*"},
            {"claim": "ref", "value": "refs/heads/main"},
        ],
        role=worker.default_role,
        max_minutes=10,
        actor=admin,
    )


def sub_policy(issuer: Issuer, worker: Worker, sub: str, actor: User) -> TrustPolicy:
    """A generic-OIDC policy letting the issuer's `sub` become `worker` with its default role."""
    return trust_policy_create(
        worker=worker,
        preset="oidc",
        issuer=issuer.url,
        audience=AUDIENCE,
        conditions=[{"claim": "sub", "value": sub}],
        role=worker.default_role,
        actor=actor,
    )


def exchange(client: Client, subject_token: str, audience: str, **extra: str) -> Any:
    data = {
        "grant_type": GRANT_TYPE,
        "subject_token": subject_token,
        "subject_token_type": JWT_TYPE,
        "audience": audience,
        **extra,
    }
    return client.post(TOKEN_URL, data)


def target(worker: Worker) -> str:
    return f"{worker.organization.slug}/{worker.name}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(claims: dict[str, Any], kid: str) -> str:
    """`alg: none`: no signature at all."""
    header = _b64(json.dumps({"alg": "none", "kid": kid}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


def hmac_with_public_key(issuer: Issuer, claims: dict[str, Any]) -> str:
    """HS256 "signed" with the issuer's PUBLIC key, as a verifier that lets the token pick
    the algorithm would accept."""
    header = _b64(json.dumps({"alg": "HS256", "kid": issuer.key.kid}).encode())
    payload = _b64(json.dumps(claims).encode())
    secret = json.dumps(issuer.key.as_dict(private=False)).encode()
    mac = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(mac)}"


def test_the_issuers_token_becomes_a_short_lived_worker_token(
    client: Client, issuer: Issuer, policy: TrustPolicy, worker: Worker
) -> None:
    subject_token = issuer.issue()
    response = exchange(client, subject_token, target(worker))
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["issued_token_type"] == ACCESS_TOKEN_TYPE
    assert body["token_type"] == "Bearer"
    assert 0 < body["expires_in"] <= 300  # the subject token's own exp comes before 10 min
    raw = body["access_token"]
    assert raw.startswith("gry_")
    token = WorkerToken.objects.get(trust_policy=policy)
    assert token.worker == worker
    assert token.role == policy.role
    me = client.get(WHOAMI, HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert me.status_code == 200, me.content
    assert me.json()["worker"]["name"] == worker.name
    event = AuditEvent.objects.get(action="token.exchanged")
    assert event.metadata["issuer"] == issuer.url
    assert event.metadata["subject"] == "triage-ci"
    assert event.metadata["matched_claims"] == {
        "sub": "triage-ci",
        "repository": "acme/triage",
        "ref": "refs/heads/main",
    }
    assert subject_token not in json.dumps(event.metadata)
    assert event.token_id == token.public_id


@pytest.mark.usefixtures("policy")
def test_the_lifetime_is_the_policys_when_the_subject_lives_longer(
    client: Client, issuer: Issuer, worker: Worker
) -> None:
    claims = issuer.claims(exp=issuer.claims()["iat"] + 3600)
    response = exchange(client, issuer.sign(claims), target(worker))
    assert response.status_code == 200, response.content
    assert response.json()["expires_in"] <= 10 * 60


REFUSALS = {
    # case: (how the subject token is made, error)
    "wrong issuer": (lambda i: i.sign(i.claims(iss="http://127.0.0.1:9")), "invalid_target"),
    "wrong audience": (lambda i: i.issue(audience="https://elsewhere.test"), "invalid_grant"),
    "expired": (lambda i: i.sign(i.claims(iat=1_000, exp=2_000)), "invalid_grant"),
    "not yet valid": (
        lambda i: i.sign(i.claims(nbf=i.claims()["iat"] + 3600)),
        "invalid_grant",
    ),
    "issued in the future": (
        lambda i: i.sign(i.claims(iat=i.claims()["iat"] + 3600)),
        "invalid_grant",
    ),
    "alg none": (lambda i: unsigned(i.claims(), i.key.kid), "invalid_grant"),
    "HS256 with the public key": (
        lambda i: hmac_with_public_key(i, i.claims()),
        "invalid_grant",
    ),
    "unknown kid": (lambda i: i.sign(i.claims(), key=new_key()), "invalid_grant"),
    "claims that don't match": (lambda i: i.issue(client_id="other-ci"), "invalid_grant"),
    "no jti": (lambda i: i.sign(i.claims(jti=None)), "invalid_grant"),
    "no exp": (lambda i: i.sign(i.claims(exp=None)), "invalid_grant"),
    "lives too long": (
        lambda i: i.sign(i.claims(exp=i.claims()["iat"] + 7 * 24 * 3600)),
        "invalid_grant",
    ),
    "not a JWT": (lambda _: "not-a-jwt", "invalid_request"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused(
    client: Client, issuer: Issuer, policy: TrustPolicy, worker: Worker, case: str
) -> None:
    make, error = REFUSALS[case]
    subject_token = make(issuer)
    response = exchange(client, subject_token, target(worker))
    assert response.status_code == 400, response.content
    assert response.json()["error"] == error
    assert "access_token" not in response.json()
    assert not WorkerToken.objects.filter(trust_policy=policy).exists()
    event = AuditEvent.objects.get(action="token.exchange_refused")
    assert event.outcome == "failure"
    assert subject_token not in json.dumps(event.metadata)


def test_a_replayed_jti_is_refused(
    client: Client, issuer: Issuer, policy: TrustPolicy, worker: Worker
) -> None:
    subject_token = issuer.issue()
    assert exchange(client, subject_token, target(worker)).status_code == 200
    again = exchange(client, subject_token, target(worker))
    assert again.status_code == 400
    assert again.json() == {
        "error": "invalid_grant",
        "error_description": "This subject token was exchanged already.",
    }
    assert WorkerToken.objects.filter(trust_policy=policy).count() == 1
    refused = AuditEvent.objects.get(action="token.exchange_refused")
    assert refused.metadata["code"] == "replayed"
    assert refused.metadata["subject"] == "triage-ci"


@pytest.mark.usefixtures("policy")
def test_accepted_after_the_issuer_rotates_its_key(
    client: Client, issuer: Issuer, worker: Worker
) -> None:
    assert exchange(client, issuer.issue(), target(worker)).status_code == 200  # keys cached
    old = issuer.key
    issuer.rotate()
    assert issuer.key.kid != old.kid
    response = exchange(client, issuer.issue(), target(worker))
    assert response.status_code == 200, response.content
    # A token signed with the retired key no longer verifies.
    stale = issuer.sign(issuer.claims(), key=old)
    assert exchange(client, stale, target(worker)).json()["error"] == "invalid_grant"


@pytest.mark.usefixtures("policy")
def test_the_keys_are_cached_and_fetched_only_through_the_egress_guard(
    client: Client, issuer: Issuer, worker: Worker, settings: Settings
) -> None:
    assert exchange(client, issuer.issue(), target(worker)).status_code == 200
    issuer.stop()  # the issuer is down: the cached keys still verify its tokens
    try:
        cached = exchange(client, issuer.sign(issuer.claims()), target(worker))
        assert cached.status_code == 200, cached.content
    finally:
        issuer.restart()
    # An unknown key id makes Grantry fetch the keys again, and the egress guard refuses
    # a loopback issuer once loopback is not allowed (as in production).
    settings.GRANTRY_EGRESS_ALLOW_LOOPBACK = False
    blocked = exchange(client, issuer.sign(issuer.claims(), key=new_key()), target(worker))
    assert blocked.status_code == 503
    assert blocked.json()["error"] == "temporarily_unavailable"


def test_the_token_stops_when_the_policy_goes_or_the_kill_switch_is_used(
    client: Client, issuer: Issuer, policy: TrustPolicy, worker: Worker, admin: User
) -> None:
    raw = exchange(client, issuer.issue(), target(worker)).json()["access_token"]
    assert client.get(WHOAMI, HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200
    assert trust_policy_delete(policy=policy, actor=admin) == 1
    assert client.get(WHOAMI, HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401
    refused = exchange(client, issuer.issue(), target(worker))
    assert refused.json()["error"] == "invalid_target"
    removed = AuditEvent.objects.get(action="worker.trust_policy_removed")
    assert removed.metadata["revoked_tokens"] == [WorkerToken.objects.get(worker=worker).public_id]

    again = sub_policy(issuer, worker, "triage-ci", admin)
    raw = exchange(client, issuer.issue(), target(worker)).json()["access_token"]
    assert client.get(WHOAMI, HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200
    assert WorkerToken.objects.get(trust_policy=again).is_usable()
    worker_revoke_all_tokens(worker=worker, actor=admin)
    assert client.get(WHOAMI, HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401
    # The kill switch ended the token; the policy still lets a new job in.
    assert exchange(client, issuer.issue(), target(worker)).status_code == 200


@pytest.mark.usefixtures("policy")
def test_a_token_cannot_land_on_another_organizations_worker(
    client: Client,
    issuer: Issuer,
    worker: Worker,
    other_org: Organization,
    outsider: User,
) -> None:
    """The attacker's own org trusts the same issuer; naming the victim's worker gets the
    same answer as naming a worker that does not exist."""
    theirs = worker_create(
        organization=other_org,
        name="theirs",
        default_role=make_role(other_org),
        actor=outsider,
    )
    sub_policy(issuer, theirs, "other-ci", outsider)
    # other-ci's token may become `theirs`, never the victim's worker.
    assert exchange(client, issuer.issue("other-ci"), target(theirs)).status_code == 200
    refused = exchange(client, issuer.issue("other-ci"), target(worker))
    assert refused.json()["error"] == "invalid_grant"
    nobody = exchange(client, issuer.issue(), f"{worker.organization.slug}/nobody")
    ghost = exchange(client, issuer.issue(), "no-such-org/nobody")
    assert nobody.json() == ghost.json()
    assert nobody.json()["error"] == "invalid_target"


@pytest.mark.usefixtures("policy")
@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"scope": "admin"}, "invalid_scope"),
        ({"resource": "https://grantry.example.test/mcp"}, "invalid_target"),
        (
            {"requested_token_type": "urn:ietf:params:oauth:token-type:refresh_token"},
            "invalid_request",
        ),
        ({"subject_token_type": "urn:ietf:params:oauth:token-type:saml2"}, "invalid_request"),
        ({"audience": ""}, "invalid_request"),
        ({"audience": "just-a-worker"}, "invalid_target"),
    ],
)
def test_bad_requests(
    client: Client,
    issuer: Issuer,
    worker: Worker,
    extra: dict[str, str],
    error: str,
) -> None:
    data = {"audience": target(worker), **extra}
    response = exchange(client, issuer.issue(), **data)
    assert response.status_code == 400
    assert response.json()["error"] == error


@pytest.mark.usefixtures("policy")
def test_refusals_are_throttled(
    client: Client, issuer: Issuer, worker: Worker, settings: Settings
) -> None:
    settings.GRANTRY_AUTH_FAILURES_PER_ADDRESS = 3
    forged = issuer.sign(issuer.claims(), key=new_key())
    for _ in range(3):
        assert exchange(client, forged, target(worker)).status_code == 400
    throttled = exchange(client, issuer.issue(), target(worker))
    assert throttled.status_code == 429
    assert throttled["Retry-After"]
    assert AuditEvent.objects.filter(action="token.exchange_refused").count() == 3


def test_the_metadata_names_the_grant(client: Client) -> None:
    metadata = client.get("/.well-known/oauth-authorization-server/oauth").json()
    assert GRANT_TYPE in metadata["grant_types_supported"]


# --- the policies' rules (no issuer needed) ------------------------------------------


def test_a_preset_must_name_the_identifying_claim() -> None:
    with pytest.raises(ValidationError):
        conditions_clean("github", [{"claim": "ref", "value": "refs/heads/main"}])
    with pytest.raises(ValidationError):  # every repository on GitHub
        conditions_clean("github", [{"claim": "repository", "value": "*"}])
    with pytest.raises(ValidationError):
        conditions_clean("kubernetes", [])
    assert conditions_clean("github", [{"claim": "repository", "value": "acme/*"}]) == [
        {"claim": "repository", "value": "acme/*"}
    ]


def test_a_preset_with_a_fixed_issuer_keeps_it(worker: Worker, admin: User) -> None:
    with pytest.raises(ValidationError):
        trust_policy_create(
            worker=worker,
            preset="github",
            issuer="https://evil.example.test",
            conditions=[{"claim": "repository", "value": "acme/triage"}],
            role=worker.default_role,
            actor=admin,
        )
    policy = trust_policy_create(
        worker=worker,
        preset="github",
        conditions=[{"claim": "repository", "value": "acme/triage"}],
        role=worker.default_role,
        actor=admin,
    )
    assert policy.issuer == "https://token.actions.githubusercontent.com"
    assert AuditEvent.objects.filter(action="worker.trust_policy_added").count() == 1


def test_the_role_must_be_the_organizations(
    worker: Worker, admin: User, other_org: Organization
) -> None:
    with pytest.raises(ValidationError):
        trust_policy_create(
            worker=worker,
            preset="oidc",
            issuer="https://issuer.example.test",
            conditions=[{"claim": "sub", "value": "x"}],
            role=make_role(other_org),
            actor=admin,
        )


def test_kubernetes_claims_are_read_nested() -> None:
    from apps.workers.trust import claims_match

    policy = TrustPolicy(
        conditions=[
            {"claim": "sub", "value": "system:serviceaccount:agents:triage"},
            {"claim": "kubernetes.io.namespace", "value": "agents"},
        ]
    )
    claims: dict[str, Any] = {
        "sub": "system:serviceaccount:agents:triage",
        "kubernetes.io": {"namespace": "agents", "serviceaccount": {"name": "triage"}},
    }
    assert claims_match(policy, claims) == {
        "sub": "system:serviceaccount:agents:triage",
        "kubernetes.io.namespace": "agents",
    }
    claims["kubernetes.io"]["namespace"] = "other"
    assert claims_match(policy, claims) is None


# --- the CLI, over HTTP --------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_grantry_exchange_prints_a_working_token(
    live_server: Any,
    issuer: Issuer,
    org: Organization,
    admin: User,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`grantry exchange --token-file` as a pod would run it, against a live Grantry."""
    from grantry_cli.main import main

    worker = worker_create(
        organization=org, name="pod-agent", default_role=make_role(org), actor=admin
    )
    sub_policy(issuer, worker, "triage-ci", admin)
    token_file = tmp_path / "token"
    token_file.write_text(issuer.issue() + "\n")
    args = ["exchange", "--url", live_server.url, "--audience", target(worker)]
    assert main([*args, "--token-file", str(token_file)]) == 0
    raw = capsys.readouterr().out.strip()
    assert raw.startswith("gry_")
    assert Client().get(WHOAMI, HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200
    # The same file again: its jti was used.
    assert main([*args, "--token-file", str(token_file)]) == 1
    assert "invalid_grant" in capsys.readouterr().err


def test_a_disabled_policy_lets_nobody_in_and_ends_its_tokens(
    client: Client, issuer: Issuer, policy: TrustPolicy, worker: Worker, admin: User
) -> None:
    from apps.workers.trust import trust_policy_set_enabled

    raw = exchange(client, issuer.issue(), target(worker)).json()["access_token"]
    trust_policy_set_enabled(policy=policy, enabled=False, actor=admin)
    assert client.get(WHOAMI, HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401
    assert exchange(client, issuer.issue(), target(worker)).json()["error"] == "invalid_target"
    trust_policy_set_enabled(policy=policy, enabled=True, actor=admin)
    assert exchange(client, issuer.issue(), target(worker)).status_code == 200


# --- DPoP (RFC 9449 §5): the exchanged token bound to the workload's key -------------


def exchange_with_proof(client: Client, subject_token: str, audience: str, proof: str) -> Any:
    data = {
        "grant_type": GRANT_TYPE,
        "subject_token": subject_token,
        "subject_token_type": JWT_TYPE,
        "audience": audience,
    }
    return client.post(TOKEN_URL, data, HTTP_DPOP=proof)


def whoami_with(client: Client, settings: Settings, raw: str, key: Any) -> Any:
    from apps.workers.tests.dpop_proofs import proof

    url = f"{settings.GRANTRY_BASE_URL}{WHOAMI}"
    return client.get(
        WHOAMI, HTTP_AUTHORIZATION=f"DPoP {raw}", HTTP_DPOP=proof(key, "GET", url, raw)
    )


def test_a_dpop_proof_binds_the_exchanged_token_to_its_key(
    client: Client, issuer: Issuer, policy: TrustPolicy, worker: Worker, settings: Settings
) -> None:
    from apps.workers.tests.dpop_proofs import jkt, proof
    from apps.workers.tests.dpop_proofs import new_key as new_dpop_key

    key = new_dpop_key()
    response = exchange_with_proof(
        client,
        issuer.issue(),
        target(worker),
        proof(key, "POST", f"{settings.GRANTRY_BASE_URL}{TOKEN_URL}"),
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["token_type"] == "DPoP"
    raw = body["access_token"]
    assert WorkerToken.objects.get(trust_policy=policy).dpop_jkt == jkt(key)
    assert client.get(WHOAMI, HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401
    assert whoami_with(client, settings, raw, new_dpop_key()).status_code == 401
    assert whoami_with(client, settings, raw, key).status_code == 200
    event = AuditEvent.objects.get(action="token.exchanged")
    assert event.metadata["dpop_jkt"] == jkt(key)


@pytest.mark.usefixtures("policy")
@pytest.mark.parametrize("bad", ["wrong url", "replayed", "alg none", "another method"])
def test_a_bad_dpop_proof_gets_no_token_and_spends_nothing(
    client: Client,
    issuer: Issuer,
    worker: Worker,
    settings: Settings,
    bad: str,
) -> None:
    from apps.workers.tests.dpop_proofs import new_key as new_dpop_key
    from apps.workers.tests.dpop_proofs import proof, unsigned_proof

    key = new_dpop_key()
    url = f"{settings.GRANTRY_BASE_URL}{TOKEN_URL}"
    used = proof(key, "POST", url)
    if bad == "replayed":
        assert exchange_with_proof(client, issuer.issue(), target(worker), used).status_code == 200
    proofs = {
        "wrong url": proof(key, "POST", f"{settings.GRANTRY_BASE_URL}/oauth/register/"),
        "replayed": used,
        "alg none": unsigned_proof(key, "POST", url),
        "another method": proof(key, "PUT", url),
    }
    subject_token = issuer.issue()
    response = exchange_with_proof(client, subject_token, target(worker), proofs[bad])
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "invalid_dpop_proof"
    refused = AuditEvent.objects.get(action="token.exchange_refused")
    assert refused.metadata["code"].startswith("dpop_")
    # The subject token was not spent by the refused request.
    again = exchange_with_proof(client, subject_token, target(worker), proof(key, "POST", url))
    assert again.status_code == 200, again.content


def test_a_worker_that_requires_dpop_is_exchanged_for_only_with_a_proof(
    client: Client, issuer: Issuer, policy: TrustPolicy, worker: Worker, settings: Settings
) -> None:
    from apps.workers.services import worker_update
    from apps.workers.tests.dpop_proofs import new_key as new_dpop_key
    from apps.workers.tests.dpop_proofs import proof

    worker_update(worker=worker, require_dpop=True)
    subject_token = issuer.issue()
    refused = exchange(client, subject_token, target(worker))
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_dpop_proof"
    assert not WorkerToken.objects.filter(trust_policy=policy).exists()
    url = f"{settings.GRANTRY_BASE_URL}{TOKEN_URL}"
    accepted = exchange_with_proof(
        client, subject_token, target(worker), proof(new_dpop_key(), "POST", url)
    )
    assert accepted.status_code == 200, accepted.content
    assert accepted.json()["token_type"] == "DPoP"


@pytest.mark.django_db(transaction=True)
def test_grantry_exchange_with_a_dpop_key_and_grantry_call_with_it(
    live_server: Any,
    issuer: Issuer,
    org: Organization,
    admin: User,
    tmp_path: Any,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`grantry dpop-key`, then `grantry exchange --dpop-key`: the printed token works
    only with proofs of that key (`grantry call --dpop-key` signs one)."""
    from grantry_cli.dpop import DPoPKey
    from grantry_cli.main import main

    settings.GRANTRY_BASE_URL = live_server.url
    worker = worker_create(
        organization=org, name="pod-agent", default_role=make_role(org), actor=admin
    )
    sub_policy(issuer, worker, "triage-ci", admin)
    key_file = tmp_path / "keys" / "dpop-key.json"
    assert main(["dpop-key", str(key_file)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert "d" not in printed["jwk"]
    assert printed["jkt"] == DPoPKey.load(key_file).jkt
    assert main(["dpop-key", str(key_file)]) == 0  # the same key again, not a new one
    assert json.loads(capsys.readouterr().out)["jkt"] == printed["jkt"]

    token_file = tmp_path / "token"
    token_file.write_text(issuer.issue())
    args = ["exchange", "--url", live_server.url, "--audience", target(worker)]
    assert main([*args, "--token-file", str(token_file), "--dpop-key", str(key_file)]) == 0
    raw = capsys.readouterr().out.strip()
    assert WorkerToken.objects.get(worker=worker).dpop_jkt == printed["jkt"]
    assert Client().get(WHOAMI, HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401

    call = ["call", "sandbox.list_projects", "--url", live_server.url, "--token", raw]
    assert main(call) == 1  # the token alone
    assert "bound to a key" in capsys.readouterr().err
    assert WorkerToken.objects.get(worker=worker).last_used_at is None
    # With the key the call authenticates (the token's last use is recorded); the role,
    # which has no rule, then refuses the action itself.
    assert main([*call, "--dpop-key", str(key_file)]) == 1
    assert "bound to a key" not in capsys.readouterr().err
    assert WorkerToken.objects.get(worker=worker).last_used_at is not None
