"""The agent API against a real local upstream (a threaded HTTP server)."""

from __future__ import annotations

import json
import socket
from typing import Any
from unittest import mock

import pytest
from django.db import DatabaseError
from django.test import Client
from pytest_django.fixtures import Settings

from apps.audit.models import AuditEvent
from apps.broker.results import input_digest
from apps.broker.tests.conftest import CONNECTION_SECRET, Agent, make_agent
from apps.broker.tests.upstream import RecordingUpstream, Reply
from apps.connections.models import ConnectionStatus
from apps.organizations.models import Organization

pytestmark = pytest.mark.django_db

EXECUTE = "/api/v1/actions/{}/execute"
CHECK = "/api/v1/actions/{}/check"


def post(client: Any, agent: Any, action: Any, payload: Any, *, url: Any = EXECUTE) -> Any:
    return client.post(
        url.format(action), json.dumps(payload), content_type="application/json", **agent.headers
    )


def broker_events(**filters: Any) -> Any:
    return list(AuditEvent.objects.filter(action__startswith="broker.", **filters).order_by("id"))


def test_execute_injects_the_connection_credential_and_never_the_worker_token(
    client: Client, agent: Agent, upstream: RecordingUpstream
) -> None:
    upstream.reply = Reply(
        body={"results": [{"id": 1}]},
        headers={"X-RateLimit-Remaining": "99", "Set-Cookie": "s=1", "X-Internal": "secret-ish"},
    )
    response = post(client, agent, "sandbox.list_projects", {"input": {}})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == 200
    assert body["body"] == {"results": [{"id": 1}]}
    # Only allowlisted upstream headers come back.
    assert body["headers"] == {"content-type": "application/json", "x-ratelimit-remaining": "99"}
    [received] = upstream.requests
    assert received.method == "GET"
    assert received.path == "/projects"
    assert received.headers["Authorization"] == f"Bearer {CONNECTION_SECRET}"
    everything = json.dumps(received.headers) + received.body.decode() + received.path
    assert agent.raw not in everything
    assert "gry_" not in everything
    # The agent never sees the SaaS credential.
    assert CONNECTION_SECRET not in response.content.decode()


@pytest.mark.usefixtures("upstream")
def test_execute_is_audited_as_attempt_then_outcome_with_digest_not_input(
    client: Client, agent: Agent
) -> None:
    payload = {"connection": "sandbox", "input": {"project_id": 2, "done": False}}
    response = post(client, agent, "sandbox.list_tasks", payload)
    assert response.status_code == 200, response.content

    attempt, outcome = broker_events()
    assert attempt.action == "broker.execute.attempt"
    assert outcome.action == "broker.execute"
    assert outcome.decision == "allowed"
    assert outcome.outcome == "success"
    assert outcome.worker_id == agent.worker.pk
    assert outcome.token_id == agent.token.public_id
    assert outcome.connection_id == agent.connection.pk
    assert outcome.provider == "sandbox"
    assert outcome.upstream_status == 200
    assert outcome.latency_ms is not None
    assert outcome.request_id == response["X-Request-Id"]
    assert outcome.metadata["input_sha256"] == input_digest(payload["input"])
    assert outcome.metadata["rule_id"] is not None
    assert outcome.metadata["role_id"] == agent.role.pk
    assert "input" not in outcome.metadata
    for event in (attempt, outcome):
        text = json.dumps(event.metadata) + event.reason
        assert agent.raw not in text
        assert CONNECTION_SECRET not in text
    agent.connection.refresh_from_db()
    assert agent.connection.last_used_at is not None


@pytest.mark.usefixtures("upstream")
def test_raw_input_is_stored_only_when_the_organization_asks(client: Client, agent: Agent) -> None:
    agent.organization.store_broker_input = True
    agent.organization.save()
    post(client, agent, "sandbox.list_tasks", {"input": {"project_id": 1}})
    assert broker_events()[-1].metadata["input"] == {"project_id": 1}


def test_denied_action_names_the_missing_rule_and_sends_nothing(
    client: Client, agent: Agent, upstream: RecordingUpstream
) -> None:
    response = post(client, agent, "sandbox.create_project", {"input": {"name": "x"}})

    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "denied"
    assert "sandbox.create_project" in error["message"]
    assert "Role 'bot-role'" in error["message"]
    assert "rule" in error["message"]
    assert upstream.requests == []
    [event] = broker_events()
    assert event.decision == "denied"
    assert event.reason == error["message"]


def test_constraints_are_enforced(
    client: Client, agent: Agent, upstream: RecordingUpstream
) -> None:
    response = post(client, agent, "sandbox.list_tasks", {"input": {"project_id": 3}})
    assert response.status_code == 403
    assert "project_id" in response.json()["error"]["message"]
    assert upstream.requests == []
    assert (
        post(client, agent, "sandbox.list_tasks", {"input": {"project_id": 2}}).status_code == 200
    )
    assert len(upstream.requests) == 1


def test_invalid_input_gets_field_errors_and_nothing_upstream(
    client: Client, agent: Agent, upstream: RecordingUpstream
) -> None:
    # The constraint holds (project_id 1); the schema does not (done must be a boolean).
    response = post(client, agent, "sandbox.list_tasks", {"input": {"project_id": 1, "done": "x"}})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert [f["path"] for f in error["details"]["fields"]] == ["/done"]
    assert upstream.requests == []


def test_schema_violation_on_an_allowed_action_returns_fields(
    client: Client, org: Organization, upstream: RecordingUpstream
) -> None:
    agent = make_agent(
        org, rules=[{"kind": "action", "provider_key": "sandbox", "action_pattern": "sandbox.*"}]
    )
    response = post(client, agent, "sandbox.create_project", {"input": {"name": ""}})
    assert response.status_code == 400
    fields = response.json()["error"]["details"]["fields"]
    assert fields[0]["path"] == "/name"
    assert upstream.requests == []


def test_check_is_a_dry_run(client: Client, agent: Agent, upstream: RecordingUpstream) -> None:
    ok = post(client, agent, "sandbox.list_projects", {"input": {}}, url=CHECK)
    assert ok.status_code == 200
    assert ok.json()["decision"] == "allowed"
    assert ok.json()["connection"] == "sandbox"
    denied = post(client, agent, "sandbox.create_project", {"input": {"name": "x"}}, url=CHECK)
    assert denied.status_code == 403
    assert upstream.requests == []
    assert [e.action for e in broker_events()] == ["broker.check", "broker.check"]


def test_fail_closed_when_the_attempt_cannot_be_audited(
    client: Client, agent: Agent, upstream: RecordingUpstream
) -> None:
    from apps.audit.services import audit_record as real

    def failing(**kwargs: Any) -> Any:
        if kwargs["action"].endswith(".attempt"):
            raise DatabaseError("audit store down")
        return real(**kwargs)

    with mock.patch("apps.broker.pipeline.call.audit_record", side_effect=failing):
        response = post(client, agent, "sandbox.list_projects", {"input": {}})

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "audit_unavailable"
    assert upstream.requests == []


def test_unknown_token_and_revoked_token_get_401(
    client: Client, agent: Agent, upstream: RecordingUpstream
) -> None:
    from apps.workers.services import token_revoke

    assert post(client, agent, "sandbox.list_projects", {"input": {}}).status_code == 200
    token_revoke(token=agent.token)
    response = post(client, agent, "sandbox.list_projects", {"input": {}})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_invalid"
    assert (
        client.post(
            EXECUTE.format("sandbox.list_projects"), "{}", content_type="application/json"
        ).status_code
        == 401
    )
    assert len(upstream.requests) == 1


def test_another_organizations_connection_is_invisible(
    client: Client, org: Organization, other_org: Organization, upstream: RecordingUpstream
) -> None:
    mine = make_agent(org)
    theirs = make_agent(other_org, name="spy", connection_name="globex-sandbox")
    response = post(
        client, theirs, "sandbox.list_projects", {"connection": mine.connection.pk, "input": {}}
    )
    assert response.status_code == 404
    response = post(client, theirs, "sandbox.list_projects", {"connection": "sandbox", "input": {}})
    assert response.status_code == 404
    assert upstream.requests == []


def test_slow_upstream_is_a_504_with_name_and_time(
    client: Client, agent: Agent, upstream: RecordingUpstream, settings: Settings
) -> None:
    settings.GRANTRY_EGRESS_TIMEOUT = 0.3
    upstream.reply = Reply(delay=1.0)
    response = post(client, agent, "sandbox.list_projects", {"input": {}})
    assert response.status_code == 504
    error = response.json()["error"]
    assert error["code"] == "upstream_timeout"
    assert error["details"]["upstream"] == "sandbox"
    assert error["details"]["elapsed_ms"] >= 250
    assert broker_events()[-1].outcome == "error"


def test_closed_port_is_a_502(client: Client, agent: Agent, settings: Settings) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.GRANTRY_PROVIDER_URLS = {"sandbox": f"http://127.0.0.1:{port}"}
    response = post(client, agent, "sandbox.list_projects", {"input": {}})
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_unreachable"
    assert error["details"]["upstream"] == "sandbox"
    assert "elapsed_ms" in error["details"]


def test_upstream_429_is_passed_through_with_retry_after(
    client: Client, agent: Agent, upstream: RecordingUpstream
) -> None:
    upstream.reply = Reply(status=429, body={"error": "slow down"}, headers={"Retry-After": "7"})
    response = post(client, agent, "sandbox.list_projects", {"input": {}})
    assert response.status_code == 429
    assert response["Retry-After"] == "7"
    assert response.json()["error"]["code"] == "upstream_rate_limited"


def test_upstream_error_status_is_reported_not_hidden(
    client: Client, agent: Agent, upstream: RecordingUpstream
) -> None:
    upstream.reply = Reply(status=404, body={"error": "no such project"})
    response = post(client, agent, "sandbox.list_projects", {"input": {}})
    assert response.status_code == 200
    assert response.json()["status"] == 404
    assert broker_events()[-1].outcome == "failure"


def test_response_over_the_cap_is_a_502(
    client: Client, agent: Agent, upstream: RecordingUpstream, settings: Settings
) -> None:
    settings.GRANTRY_EGRESS_MAX_RESPONSE_BYTES = 1000
    upstream.reply = Reply(body={"blob": "x" * 5000})
    response = post(client, agent, "sandbox.list_projects", {"input": {}})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_response_too_large"


def test_request_body_over_the_cap_is_a_413(
    client: Client, agent: Agent, upstream: RecordingUpstream
) -> None:
    huge = {"input": {"name": "x" * 1_100_000}}
    response = post(client, agent, "sandbox.create_project", huge)
    assert response.status_code == 413
    assert upstream.requests == []


def test_connection_needing_reauth_is_a_409(
    client: Client, agent: Agent, upstream: RecordingUpstream
) -> None:
    agent.connection.status = ConnectionStatus.NEEDS_REAUTH
    agent.connection.save()
    response = post(client, agent, "sandbox.list_projects", {"input": {}})
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "needs_reauth"
    assert "admin" in error["message"]
    assert "reconnect" in error["message"]
    assert upstream.requests == []


@pytest.mark.usefixtures("ratelimit_clock")
def test_rate_limit_answers_429_with_retry_after(
    client: Client, org: Organization, upstream: RecordingUpstream
) -> None:
    agent = make_agent(
        org,
        rules=[
            {
                "kind": "action",
                "provider_key": "sandbox",
                "action_pattern": "sandbox.list_projects",
                "rate_limit_per_minute": 1,
            }
        ],
    )
    assert post(client, agent, "sandbox.list_projects", {"input": {}}).status_code == 200
    response = post(client, agent, "sandbox.list_projects", {"input": {}})
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert response.json()["error"]["code"] == "rate_limited"
    assert len(upstream.requests) == 1


def test_connection_is_optional_only_when_one_fits(
    client: Client, org: Organization, upstream: RecordingUpstream
) -> None:
    from apps.connections.models import Connection

    agent = make_agent(
        org,
        rules=[
            {"kind": "action", "provider_key": "sandbox", "action_pattern": "sandbox.list_projects"}
        ],
    )
    Connection.objects.create(
        organization=org,
        provider_key="sandbox",
        name="second",
        auth_type="api_key",
        api_key="sbx_other",
    )
    response = post(client, agent, "sandbox.list_projects", {"input": {}})
    assert response.status_code == 400
    assert sorted(response.json()["error"]["details"]["connections"]) == ["sandbox", "second"]
    by_name = post(client, agent, "sandbox.list_projects", {"connection": "second", "input": {}})
    assert by_name.status_code == 200
    by_id = post(
        client, agent, "sandbox.list_projects", {"connection": agent.connection.pk, "input": {}}
    )
    assert by_id.status_code == 200
    assert [r.headers["Authorization"] for r in upstream.requests] == [
        "Bearer sbx_other",
        f"Bearer {CONNECTION_SECRET}",
    ]


@pytest.mark.usefixtures("upstream")
def test_action_list_shows_only_what_the_role_allows(client: Client, agent: Agent) -> None:
    response = client.get("/api/v1/actions", **agent.headers)
    assert response.status_code == 200
    names = [a["name"] for a in response.json()["results"]]
    assert names == sorted(names) or set(names) == {"sandbox.list_projects", "sandbox.list_tasks"}
    assert set(names) == {"sandbox.list_projects", "sandbox.list_tasks"}
    listed = response.json()["results"][0]
    assert listed["input_schema"]["type"] == "object"
    assert listed["connections"] == [{"id": agent.connection.pk, "name": "sandbox"}]


def test_proxy_passes_through_when_a_rule_allows(
    client: Client, agent: Agent, upstream: RecordingUpstream
) -> None:
    upstream.reply = Reply(body={"id": 5}, headers={"ETag": '"v1"', "Server": "hidden"})
    response = client.get("/api/v1/proxy/sandbox/projects/5/tasks?done=true", **agent.headers)
    assert response.status_code == 200
    assert response.json() == {"id": 5}
    assert response["ETag"] == '"v1"'
    assert "Server" not in response or response["Server"] != "hidden"
    [received] = upstream.requests
    assert received.path == "/projects/5/tasks?done=true"
    assert received.headers["Authorization"] == f"Bearer {CONNECTION_SECRET}"
    assert "gry_" not in json.dumps(received.headers)
    assert broker_events()[-1].action == "broker.proxy"


@pytest.mark.parametrize(
    "path",
    [
        "projects/../me",
        "projects/%2e%2e/me",
        "projects/%252e%252e/me",
        "/evil.test/projects",
    ],
)
def test_proxy_path_cannot_escape_the_base_url(
    client: Client, agent: Agent, upstream: RecordingUpstream, path: str
) -> None:
    response = client.get(f"/api/v1/proxy/sandbox/{path}", **agent.headers)
    assert response.status_code in (400, 403, 404)
    assert upstream.requests == []


def test_proxy_needs_a_matching_rule(
    client: Client, agent: Agent, upstream: RecordingUpstream
) -> None:
    assert client.get("/api/v1/proxy/sandbox/me", **agent.headers).status_code == 403
    response = client.post(
        "/api/v1/proxy/sandbox/projects/1", "{}", content_type="application/json", **agent.headers
    )
    assert response.status_code == 403
    assert "proxy rule" in response.json()["error"]["message"]
    assert upstream.requests == []


@pytest.mark.django_db(transaction=True)
def test_a_failed_outcome_write_is_tried_again_then_the_answer_is_withheld(
    client: Client, agent: Agent, upstream: RecordingUpstream, settings: Settings
) -> None:
    """No success without its audit record (issue 28's chaos run found 2xx answers whose
    outcome was lost while PgBouncer restarted): a failed outcome write is tried again on
    a new connection; if the store stays down the upstream's answer is withheld."""
    from apps.audit.services import audit_record as real

    failures = {"left": 2}

    def flaky(**kwargs: Any) -> Any:
        if kwargs["action"] == "broker.execute" and failures["left"]:
            failures["left"] -= 1
            raise DatabaseError("audit store restarting")
        return real(**kwargs)

    with mock.patch("apps.broker.pipeline.call.audit_record", side_effect=flaky):
        response = post(client, agent, "sandbox.list_projects", {"input": {}})
    assert response.status_code == 200
    assert failures["left"] == 0
    assert [e.action for e in broker_events()] == ["broker.execute.attempt", "broker.execute"]

    settings.GRANTRY_AUDIT_OUTCOME_RETRY_SECONDS = 0.5

    def down(**kwargs: Any) -> Any:
        if kwargs["action"] == "broker.execute":
            raise DatabaseError("audit store down")
        return real(**kwargs)

    with mock.patch("apps.broker.pipeline.call.audit_record", side_effect=down):
        withheld = post(client, agent, "sandbox.list_projects", {"input": {}})
    # The upstream call happened once and its attempt is on record; the agent is told
    # so, and gets no success the trail cannot show.
    assert withheld.status_code == 502
    assert withheld.json()["error"]["code"] == "outcome_unrecorded"
    assert "it answered 200" in withheld.json()["error"]["message"]
    assert len(upstream.requests) == 2
    assert [e.action for e in broker_events()][2:] == ["broker.execute.attempt"]


def test_another_organization_cannot_proxy_through_my_connection(
    client: Client, org: Organization, other_org: Organization, upstream: RecordingUpstream
) -> None:
    mine = make_agent(org)
    theirs = make_agent(other_org, name="spy", connection_name="globex-sandbox")
    for ref in ("sandbox", str(mine.connection.pk)):
        response = client.get(f"/api/v1/proxy/{ref}/projects/1", **theirs.headers)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "connection_not_found"
    check = client.post(
        CHECK.format("sandbox.list_projects"),
        json.dumps({"connection": mine.connection.pk, "input": {}}),
        content_type="application/json",
        **theirs.headers,
    )
    assert check.status_code == 404
    assert upstream.requests == []


@pytest.mark.parametrize("ref", ["³", "٣", "9" * 30])
def test_connection_refs_that_are_not_plain_ids_are_names(
    client: Client, org: Organization, upstream: RecordingUpstream, ref: Any
) -> None:
    # "³".isdigit() is true but int("³") fails, and 30 digits overflow bigint: both
    # are looked up as names (and found nowhere), never a 500.
    agent = make_agent(org)
    proxied = client.get(f"/api/v1/proxy/{ref}/projects/1", **agent.headers)
    assert proxied.status_code == 404
    assert proxied.json()["error"]["code"] == "connection_not_found"
    executed = post(client, agent, "sandbox.list_projects", {"connection": ref, "input": {}})
    assert executed.status_code == 404
    assert executed.json()["error"]["code"] == "connection_not_found"
    assert upstream.requests == []


def test_a_warm_execute_is_four_statements(
    client: Client, agent: Agent, upstream: RecordingUpstream
) -> None:
    """Token (with the revocation leases), connection, the attempt (with the token
    re-check), the outcome (with the leases given back); last-used writes are
    throttled. A regression here is a round trip added to every agent call."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    body = {"connection": agent.connection.name, "input": {}}
    assert post(client, agent, "sandbox.list_projects", body).status_code == 200  # warm-up
    with CaptureQueriesContext(connection) as queries:
        assert post(client, agent, "sandbox.list_projects", body).status_code == 200
    statements = [q["sql"] for q in queries.captured_queries]
    assert len(statements) == 4, statements
    assert "digest" in statements[0]
    assert "pg_advisory_lock_shared" in statements[0]
    assert "connections_connection" in statements[1]
    assert "lease_token_pk" not in statements[2]
    assert "revoked_at IS NULL" in statements[2]
    assert "pg_advisory_unlock_all" in statements[3]
    assert len(upstream.requests) == 2


def _raw_post(client: Any, path: Any, body: Any, token: Any) -> Any:
    return client.post(
        path, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )


BAD_BODIES = {
    "deeply nested": "[" * 100_000,
    "NUL in connection": json.dumps({"connection": "sand\x00box", "input": {}}),
    "NUL in input": json.dumps({"input": {"project_id": "1\x00"}}),
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
@pytest.mark.usefixtures("agent")
def test_hostile_bodies_from_an_unknown_token_get_401_and_are_audited(
    client: Client, body: Any
) -> None:
    from apps.core.tokens import generate_token

    forged = generate_token("worker").raw  # well-formed, checksum valid, unknown
    before = AuditEvent.objects.filter(action="auth.failed").count()
    for path in (EXECUTE.format("sandbox.list_projects"), EXECUTE.format("sand%00box.x")):
        response = _raw_post(client, path, body, forged)
        assert response.status_code == 401, response.content
        assert response.json()["error"]["code"] == "token_invalid"
    assert AuditEvent.objects.filter(action="auth.failed").count() == before + 2


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (BAD_BODIES["deeply nested"], "invalid_json"),
        (BAD_BODIES["NUL in connection"], "invalid_input"),
        (BAD_BODIES["NUL in input"], "invalid_input"),
    ],
    ids=["deeply nested", "NUL in connection", "NUL in input"],
)
def test_hostile_bodies_from_an_agent_get_400_and_nothing_upstream(
    client: Client, agent: Agent, upstream: RecordingUpstream, body: Any, code: str
) -> None:
    response = _raw_post(client, EXECUTE.format("sandbox.list_projects"), body, agent.raw)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == code
    assert upstream.requests == []


def test_nul_in_the_action_name_or_proxy_path_is_refused_and_audited(
    client: Client, agent: Agent, upstream: RecordingUpstream
) -> None:
    response = _raw_post(client, EXECUTE.format("sand%00box.list_projects"), "{}", agent.raw)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_input"
    event = broker_events(action="broker.execute")[-1]
    assert event.metadata["action"] == "sand\\u0000box.list_projects"
    assert event.decision == "denied"
    proxied = client.get("/api/v1/proxy/sandbox/projects/1%00x", **agent.headers)
    assert proxied.status_code == 400, proxied.content
    assert broker_events(action="broker.proxy")[-1].metadata["path"] == "projects/1\\u0000x"
    assert upstream.requests == []


# --- Ambiguity is decided after the role (hardening finding #10) -----------------


def _second_sandbox(org: Organization, name: str = "sandbox-two") -> Any:
    from apps.connections.models import Connection

    return Connection.objects.create(
        organization=org, provider_key="sandbox", name=name, auth_type="api_key", api_key="k2"
    )


def test_a_second_connection_the_role_does_not_allow_changes_nothing(
    client: Client, org: Organization, upstream: RecordingUpstream
) -> None:
    from apps.connections.models import Connection

    first = Connection.objects.create(
        organization=org, provider_key="sandbox", name="sandbox", auth_type="api_key", api_key="k"
    )
    rule = {
        "kind": "action",
        "provider_key": "sandbox",
        "action_pattern": "sandbox.list_projects",
        "connection": first.pk,
    }
    agent = make_agent(org, rules=[rule], connection=first)
    _second_sandbox(org)
    # Not named: the one connection the role allows is used.
    allowed = post(client, agent, "sandbox.list_projects", {"input": {}})
    assert allowed.status_code == 200, allowed.content
    assert len(upstream.requests) == 1
    # A call the role forbids on every connection is a 403, not "name a connection".
    denied = post(client, agent, "sandbox.create_project", {"input": {"name": "x"}})
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "denied"
    assert broker_events()[-1].decision == "denied"
    assert len(upstream.requests) == 1


def test_connection_is_asked_for_only_when_several_allowed_ones_fit(
    client: Client, org: Organization, upstream: RecordingUpstream
) -> None:
    agent = make_agent(
        org,
        rules=[
            {"kind": "action", "provider_key": "sandbox", "action_pattern": "sandbox.list_projects"}
        ],
    )
    _second_sandbox(org)
    response = post(client, agent, "sandbox.list_projects", {"input": {}})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "connection_required"
    assert sorted(error["details"]["connections"]) == ["sandbox", "sandbox-two"]
    named = post(client, agent, "sandbox.list_projects", {"connection": "sandbox-two", "input": {}})
    assert named.status_code == 200
    assert len(upstream.requests) == 1


@pytest.mark.usefixtures("upstream")
def test_a_clients_request_id_is_kept_apart_from_the_servers(client: Client, agent: Agent) -> None:
    response = client.post(
        EXECUTE.format("sandbox.list_projects"),
        json.dumps({"input": {}}),
        content_type="application/json",
        HTTP_X_REQUEST_ID="client-chosen-id-123",
        **agent.headers,
    )
    assert response.status_code == 200
    events = broker_events()
    assert len(events) == 2  # attempt and outcome
    for event in events:
        assert event.metadata["client_request_id"] == "client-chosen-id-123"
        assert event.request_id != "client-chosen-id-123"
        assert event.request_id == response["X-Request-Id"]
