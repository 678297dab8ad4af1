"""An agent can neither delay nor defeat its revocation (apps/workers/fence.py).

Nothing is held while a call waits on its upstream: the attempt statement's fence takes
transaction-level locks for its own statement only, and a revocation waits for the
attempt statements in progress (milliseconds) and then, if the worker was recently
active, the send window W after its commit.

* Every route that authenticates a worker token (found in the URLconf, so a new one
  joins), with a good, revoked, expired, audience-bound, unknown token and a disabled
  worker's, on its success and refusal paths and with an exception raised mid-request:
  after each answer, `pg_locks` shows no advisory lock in the test database (an idle
  persistent connection holding one made revocations wait and fail: issue 21).
* Two real granian servers with persistent connections (as in production) and a
  1 s statement timeout: agents hammer every route from several threads while the
  token is revoked through the management API; the revoke answers 200 within
  W + a little and the token then answers 401 everywhere. A revoke issued while a
  legitimate call waits on a slow upstream does not wait for that call. An agent that
  sends its headers and then trickles its body holds nothing the revoke waits for,
  and its call is refused by the fence once its body is in.
* A call that passed the fence and then could not send within W sends nothing.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from apps.accounts.services import personal_token_mint
from apps.broker.tests.conftest import Agent, make_agent
from apps.broker.tests.upstream import RecordingUpstream, Reply
from apps.connections.models import Connection
from apps.organizations.models import Organization
from apps.workers.auth import WorkerTokenAuthentication
from apps.workers.models import Worker, WorkerStatus, WorkerToken
from apps.workers.services import token_mint
from apps.workers.tests.test_cross_process import Server

ADVISORY_LOCKS_SQL = (
    "SELECT pid, classid, objid, mode FROM pg_locks WHERE locktype = 'advisory'"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def advisory_locks() -> list[tuple[Any, ...]]:
    """Every advisory lock any session holds (or waits for) in this test database."""
    with connection.cursor() as cursor:
        cursor.execute(ADVISORY_LOCKS_SQL)
        return list(cursor.fetchall())


def rules(connection: Connection) -> list[dict[str, Any]]:
    return [
        {"kind": "action", "provider_key": "sandbox", "action_pattern": "sandbox.list_projects"},
        {
            "kind": "action",
            "provider_key": "sandbox",
            "action_pattern": "sandbox.delete_task",
            "connection": connection.pk,
            "approval": {"required": True},
        },
        {
            "kind": "proxy",
            "provider_key": "sandbox",
            "connection": connection.pk,
            "methods": ["GET"],
            "path_glob": "/projects/**",
        },
    ]


def make_leasing_agent(org: Organization, name: str = "bot") -> Agent:
    sandbox = Connection.objects.filter(organization=org, name="sandbox").first()
    if sandbox is None:
        sandbox = Connection.objects.create(
            organization=org,
            provider_key="sandbox",
            name="sandbox",
            auth_type="api_key",
            api_key="sbx_connection_secret_0123456789",
        )
    return make_agent(org, name=name, rules=rules(sandbox), connection=sandbox)


# --- the routes -----------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request an agent can make: method, path, body (JSON, raw bytes, or a form)."""

    method: str
    path: str
    body: Any = None
    form: bool = False

    def encoded(self) -> tuple[bytes, str]:
        if self.body is None:
            return b"", ""
        if self.form:
            return "&".join(f"{k}={v}" for k, v in self.body.items()).encode(), (
                "application/x-www-form-urlencoded"
            )
        if isinstance(self.body, bytes):
            return self.body, "application/json"
        return json.dumps(self.body).encode(), "application/json"


def rpc(method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}


def routes(approval_id: str, raw: str) -> dict[str, list[Call]]:
    """Route name → the calls that exercise it: success paths and refusals (4xx)."""
    execute = "/api/v1/actions/{}/execute"
    return {
        "workers_agent:whoami": [Call("GET", "/api/v1/whoami")],
        "broker:actions": [Call("GET", "/api/v1/actions")],
        "broker:execute": [
            Call("POST", execute.format("sandbox.list_projects"), {"input": {}}),
            Call("POST", execute.format("sandbox.create_project"), {"input": {"name": "x"}}),
            Call("POST", execute.format("sandbox.delete_task"), {"input": {"task_id": 9}}),
            Call("POST", execute.format("sandbox.list_projects"), b'{"input": [1,'),
            Call("POST", execute.format("no.such_action"), {"input": {}}),
        ],
        "broker:check": [
            Call("POST", "/api/v1/actions/sandbox.list_projects/check", {"input": {}}),
            Call("POST", "/api/v1/actions/sandbox.create_project/check", b"[]"),
        ],
        "broker:proxy": [
            Call("GET", "/api/v1/proxy/sandbox/projects/1"),
            Call("GET", "/api/v1/proxy/sandbox/admin/users"),
            Call("DELETE", "/api/v1/proxy/sandbox/projects/1"),
            Call("GET", "/api/v1/proxy/nowhere/projects/1"),
        ],
        "mcp": [
            Call("POST", "/mcp", rpc("tools/list")),
            Call("POST", "/mcp", rpc("tools/call", {"name": "sandbox.list_projects"})),
            Call("POST", "/mcp", rpc("tools/call", {"name": "sandbox.create_project"})),
            Call("POST", "/mcp", b'{"jsonrpc": "2.0", "id": 1, "method": '),
            Call("GET", "/mcp"),
        ],
        "approvals_agent:status": [
            Call("GET", f"/api/v1/approvals/{approval_id}"),
            Call("GET", f"/api/v1/approvals/{approval_id}?wait=1"),
            Call("GET", f"/api/v1/approvals/{approval_id}?wait=soon"),
            Call("GET", "/api/v1/approvals/apr_nosuchapproval0"),
        ],
        # Surfaces that do not take a worker token must not lock anything either.
        "management API": [
            Call("GET", "/api/v1/orgs/acme/workers/"),
            Call("POST", "/api/v1/orgs/acme/workers/", {"name": "x"}),
        ],
        "oauth": [
            Call("POST", "/oauth/token/", {"grant_type": "client_credentials"}, form=True),
            Call("POST", "/oauth/revoke/", {"token": raw}, form=True),
            Call("GET", "/oauth/authorize/?response_type=code&client_id=nope"),
            Call("POST", "/oauth/register/", {"redirect_uris": ["http://127.0.0.1/cb"]}),
        ],
    }


def worker_token_routes() -> set[str]:
    """The URL names of every DRF view that authenticates with a worker token."""

    def walk(patterns: Any, namespace: str = "") -> Iterator[tuple[str, Any]]:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
                yield from walk(pattern.url_patterns, inner)
            elif isinstance(pattern, URLPattern):
                yield f"{namespace}{pattern.name}", pattern.callback

    found = set()
    for name, callback in walk(get_resolver().url_patterns):
        view_class = getattr(callback, "cls", None)
        classes = getattr(view_class, "authentication_classes", ())
        if any(issubclass(c, WorkerTokenAuthentication) for c in classes):
            found.add(name)
    return found


def test_every_route_that_takes_a_worker_token_is_walked() -> None:
    walked = set(routes("apr_x", "gry_x"))
    # /mcp is a plain Django view (it authenticates by hand): named here on purpose.
    assert worker_token_routes() | {"mcp"} <= walked
    assert {"workers_agent:whoami", "broker:execute", "approvals_agent:status"} <= walked


# --- in process: every route, every kind of token ---------------------------------------


@dataclass
class Tokens:
    """The worker tokens an agent might send: name → raw value."""

    raw: dict[str, str]
    approval_id: str


@pytest.fixture
def upstream(settings: Any) -> Iterator[RecordingUpstream]:
    with RecordingUpstream() as server:
        settings.GRANTRY_PROVIDER_URLS = {"sandbox": server.url}
        yield server


@pytest.fixture
def tokens(
    org: Organization,
    upstream: RecordingUpstream,  # noqa: ARG001 - the upstream must answer
    admin: User,  # noqa: ARG001 - someone who may approve the pending call
) -> Tokens:
    agent = make_leasing_agent(org)
    pending = Client().post(
        "/api/v1/actions/sandbox.delete_task/execute",
        {"input": {"task_id": 1}},
        content_type="application/json",
        **agent.headers,
    )
    assert pending.status_code == 202, pending.content
    # The states are written with the ORM, not the services: a service's fence would
    # hold its transaction-level lock until the test's transaction ends.
    revoked, raw_revoked = token_mint(worker=agent.worker)
    WorkerToken.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
    expired, raw_expired = token_mint(worker=agent.worker)
    WorkerToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(1))
    bound, raw_bound = token_mint(worker=agent.worker)
    WorkerToken.objects.filter(pk=bound.pk).update(audience="https://elsewhere.test/mcp")
    off = make_leasing_agent(org, name="off")
    Worker.objects.filter(pk=off.worker.pk).update(status=WorkerStatus.DISABLED)
    return Tokens(
        raw={
            "good": agent.raw,
            "revoked": raw_revoked,
            "expired": raw_expired,
            "audience": raw_bound,
            "disabled": off.raw,
            "unknown": "gry_" + "A" * 49,
        },
        approval_id=pending.json()["approval"]["id"],
    )


def send(client: Client, call: Call, raw: str) -> Any:
    body, content_type = call.encoded()
    return client.generic(
        call.method,
        call.path,
        body,
        content_type=content_type,
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )


@pytest.mark.django_db(transaction=True)  # each request commits: what is left is held
@pytest.mark.parametrize("route", sorted(routes("apr_x", "gry_x")))
def test_no_answer_leaves_a_lock_held(route: str, tokens: Tokens, org: Organization) -> None:  # noqa: ARG001 - the tokens' organization
    assert advisory_locks() == []
    client = Client()
    for kind, raw in tokens.raw.items():
        for call in routes(tokens.approval_id, raw)[route]:
            response = send(client, call, raw)
            assert response.status_code < 500, (kind, call, response.content)
            held = advisory_locks()
            assert held == [], f"{call.method} {call.path} with a {kind} token left {held}"


# Where each route's work can blow up after authentication.
EXPLODE = {
    "workers_agent:whoami": "apps.workers.agent.role_allowances",
    "broker:actions": "apps.broker.agent.actions_for",
    "broker:execute": "apps.broker.agent.run",
    "broker:check": "apps.broker.agent.run",
    "broker:proxy": "apps.broker.agent.run",
    "mcp": "apps.broker.mcp.run",
    "approvals_agent:status": "apps.approvals.agent.agent_document",
}


@pytest.mark.django_db(transaction=True)  # each request commits: what is left is held
@pytest.mark.parametrize("route", sorted(EXPLODE))
def test_an_exception_mid_request_leaves_no_lock_held(
    route: str, tokens: Tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom, mid-request")

    monkeypatch.setattr(EXPLODE[route], explode)
    client = Client(raise_request_exception=False)
    raw = tokens.raw["good"]
    call = routes(tokens.approval_id, raw)[route][0]
    if route == "mcp":
        call = Call("POST", "/mcp", rpc("tools/call", {"name": "sandbox.list_projects"}))
    response = send(client, call, raw)
    assert response.status_code == 500 or (route == "mcp" and response.status_code == 200)
    assert advisory_locks() == []


@pytest.mark.django_db(transaction=True)  # each request commits: what is left is held
def test_a_failed_audit_of_a_refused_token_leaves_no_lock_held(
    tokens: Tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    from apps.accounts import auth_failures
    from apps.audit.exceptions import AuditUnavailable

    def unavailable(**kwargs: Any) -> None:
        raise AuditUnavailable()

    # The one refusal both token kinds share (auth_failures.auth_refuse) records through it.
    monkeypatch.setattr(auth_failures, "auth_failure_record", unavailable)
    client = Client(raise_request_exception=False)
    for route in ("broker:execute", "mcp", "workers_agent:whoami"):
        call = routes(tokens.approval_id, tokens.raw["revoked"])[route][0]
        response = send(client, call, tokens.raw["revoked"])
        assert response.status_code == 503, response.content
        assert advisory_locks() == []


# --- real servers: revocation under an agent's load ------------------------------------


@pytest.fixture(scope="module")
def slow_upstream() -> Iterator[RecordingUpstream]:
    with RecordingUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def servers(
    slow_upstream: RecordingUpstream,
    django_db_setup: None,  # noqa: ARG001 - the test database must exist first
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[Server]]:
    """Two web processes as in production: persistent database connections, and a web
    statement timeout (1 s here, 5 s by default) that a revocation must not run into."""
    tmp_path = tmp_path_factory.mktemp("leases")
    env = {
        "GRANTRY_PROVIDER_URLS": f"sandbox={slow_upstream.url}",
        "GRANTRY_TEST_CONN_MAX_AGE": "60",
        "DB_STATEMENT_TIMEOUT_MS": "1000",
    }
    started = [Server(tmp_path, name, threads=8, extra_env=env) for name in ("a", "b")]
    try:
        for server in started:
            server.wait_ready(timeout=120)
        yield started
    finally:
        for server in started:
            server.stop()


def hammer(
    base: str, calls: list[Call], raw: str, stop: threading.Event, statuses: list[int]
) -> None:
    headers = {"Authorization": f"Bearer {raw}"}
    with httpx.Client(base_url=base, timeout=30) as client:
        n = 0
        while not stop.is_set():
            call = calls[n % len(calls)]
            n += 1
            body, content_type = call.encoded()
            extra = {"Content-Type": content_type} if content_type else {}
            response = client.request(
                call.method, call.path, content=body, headers={**headers, **extra}
            )
            statuses.append(response.status_code)


def revoke_url(org: Organization, token: WorkerToken) -> str:
    return f"/api/v1/orgs/{org.slug}/workers/{token.worker_id}/tokens/{token.public_id}/revoke/"


@pytest.mark.django_db(transaction=True)
def test_a_revoke_while_an_agent_hammers_every_route_is_prompt(
    servers: list[Server], slow_upstream: RecordingUpstream, org: Organization, admin: User
) -> None:
    slow_upstream.reply = Reply(delay=0.01)
    agent = make_leasing_agent(org)
    _, personal = personal_token_mint(user=admin, organization=org, name="ops")
    pending = httpx.post(
        f"{servers[0].base}/api/v1/actions/sandbox.delete_task/execute",
        json={"input": {"task_id": 1}},
        headers={"Authorization": f"Bearer {agent.raw}"},
        timeout=30,
    )
    assert pending.status_code == 202, pending.text
    # (/oauth/revoke/ gets a dummy token: the point is the revoke below.)
    approval_id = pending.json()["approval"]["id"]
    every_call = [c for calls in routes(approval_id, "gry_x").values() for c in calls]

    stop = threading.Event()
    statuses: list[int] = []
    threads = [
        threading.Thread(
            target=hammer,
            args=(servers[n % 2].base, every_call[n:] + every_call[:n], agent.raw, stop, statuses),
        )
        for n in range(6)
    ]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 30
        while len(statuses) < 150 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(statuses) >= 150, "the agent never got going"
        started = time.monotonic()
        revoke = httpx.post(
            servers[1].base + revoke_url(org, agent.token),
            json={"reason": "compromised"},
            headers={"Authorization": f"Bearer {personal}"},
            timeout=60,
        )
        took = time.monotonic() - started
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    assert revoke.status_code == 200, revoke.text
    # The agent was active: the revoke waits out the send window after its commit, and
    # not much more while the agent hammers on.
    assert took < django_settings.GRANTRY_SEND_WINDOW + 2, f"the revoke took {took:.2f} s"
    assert max(statuses) < 500
    with httpx.Client(timeout=30) as client:
        for server in servers:
            for route in ("workers_agent:whoami", "broker:execute", "broker:proxy", "mcp"):
                call = routes("apr_x", agent.raw)[route][0]
                body, content_type = call.encoded()
                response = client.request(
                    call.method,
                    server.base + call.path,
                    content=body,
                    headers={"Authorization": f"Bearer {agent.raw}", "Content-Type": content_type},
                )
                assert response.status_code == 401, (route, response.text)


@pytest.mark.django_db(transaction=True)
def test_a_revoke_does_not_wait_for_a_slow_call_already_sent(
    servers: list[Server], slow_upstream: RecordingUpstream, org: Organization, admin: User
) -> None:
    """The upstream takes 2.5 s, more than W and the web statement timeout (1 s): the
    revoke does not wait for the call already sent (nothing is held across the
    upstream wait), and the call itself completes."""
    slow_upstream.reply = Reply(delay=2.5)
    slow_upstream.requests.clear()
    agent = make_leasing_agent(org)
    _, personal = personal_token_mint(user=admin, organization=org, name="ops")
    answers: list[httpx.Response] = []
    answered_at: list[float] = []

    def call() -> None:
        answers.append(
            httpx.post(
                f"{servers[0].base}/api/v1/actions/sandbox.list_projects/execute",
                json={"input": {}},
                headers={"Authorization": f"Bearer {agent.raw}"},
                timeout=30,
            )
        )
        answered_at.append(time.monotonic())

    in_flight = threading.Thread(target=call)
    in_flight.start()
    deadline = time.monotonic() + 20
    while not slow_upstream.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    assert slow_upstream.requests, "the call never reached the upstream"
    started = time.monotonic()
    revoke = httpx.post(
        servers[1].base + revoke_url(org, agent.token),
        json={"reason": "compromised"},
        headers={"Authorization": f"Bearer {personal}"},
        timeout=60,
    )
    returned = time.monotonic()
    took = returned - started
    in_flight.join()
    slow_upstream.reply = Reply()
    assert revoke.status_code == 200, revoke.text
    assert took < django_settings.GRANTRY_SEND_WINDOW + 2, f"the revoke took {took:.2f} s"
    assert answered_at[0] > returned, "the revoke waited for the call"
    # The call was sent before the revoke: it completes, and nothing of this token goes
    # upstream after the revoke returned.
    assert [a.status_code for a in answers] == [200]
    after = httpx.post(
        f"{servers[0].base}/api/v1/actions/sandbox.list_projects/execute",
        json={"input": {}},
        headers={"Authorization": f"Bearer {agent.raw}"},
        timeout=30,
    )
    assert after.status_code == 401
    assert len(slow_upstream.requests) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/api/v1/actions/sandbox.list_projects/execute", "/mcp"])
def test_an_agent_trickling_its_body_does_not_hold_up_its_revocation(
    servers: list[Server],
    slow_upstream: RecordingUpstream,
    org: Organization,
    admin: User,
    path: str,
) -> None:
    """The server hands a request to Django once its headers are in (it authenticates
    then); an agent that then sends its body slowly holds nothing the revoke waits for,
    and once its body is in, the fence refuses the call: nothing goes upstream."""
    slow_upstream.reply = Reply()
    slow_upstream.requests.clear()
    agent = make_leasing_agent(org)
    _, personal = personal_token_mint(user=admin, organization=org, name="ops")
    tool_call = rpc("tools/call", {"name": "sandbox.list_projects", "arguments": {}})
    body = json.dumps(tool_call if path == "/mcp" else {"input": {}}).encode()
    host, port = "127.0.0.1", servers[0].port
    with socket.create_connection((host, port), timeout=30) as agent_socket:
        agent_socket.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {agent.raw}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body[:5]
        )
        time.sleep(1)  # the request is in a view, waiting for the rest of its body
        started = time.monotonic()
        revoke = httpx.post(
            servers[1].base + revoke_url(org, agent.token),
            json={"reason": "compromised"},
            headers={"Authorization": f"Bearer {personal}"},
            timeout=60,
        )
        took = time.monotonic() - started
        agent_socket.sendall(body[5:])
        answer = agent_socket.makefile("rb").read()
    assert revoke.status_code == 200, revoke.text
    # Waiting for the trickling request would have held the revoke until the agent sent
    # the rest, which it does only after the revoke returned (or httpx gave up at 60 s).
    assert took < 10, f"the revoke took {took:.2f} s"
    assert b"token_invalid" in answer, answer[:300]
    assert slow_upstream.requests == []


# --- the send window ------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "call",
    [
        Call("POST", "/api/v1/actions/sandbox.list_projects/execute", {"input": {}}),
        Call("GET", "/api/v1/proxy/sandbox/projects/1"),
    ],
)
def test_a_call_past_the_fence_that_cannot_send_within_the_window_sends_nothing(
    call: Call,
    org: Organization,
    upstream: RecordingUpstream,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Between the attempt and the upstream (here: the credential step) the call stalls
    past W: a revocation that committed meanwhile has already returned, so nothing may
    go. The answer says so and the outcome is audited."""
    from apps.audit.models import AuditEvent
    from apps.broker.pipeline import steps

    settings.GRANTRY_SEND_WINDOW = 0.3
    agent = make_leasing_agent(org)
    auth_for = steps.credentials.auth_for

    def stalled(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.4)
        return auth_for(*args, **kwargs)

    monkeypatch.setattr(steps.credentials, "auth_for", stalled)
    response = send(Client(), call, agent.raw)
    assert response.status_code == 502, response.content
    assert response.json()["error"]["code"] == "send_window_closed"
    assert upstream.requests == []
    events = list(
        AuditEvent.objects.filter(organization=org, worker_id=agent.worker.pk).order_by("id")
    )
    assert events[-2].action.endswith(".attempt")
    assert events[-1].metadata["error"] == "send_window_closed"
    # Within the window the same call goes.
    monkeypatch.setattr(steps.credentials, "auth_for", auth_for)
    assert send(Client(), call, agent.raw).status_code == 200
    assert len(upstream.requests) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("revoke", ["token", "worker_disable", "organization"])
def test_a_revocation_returns_only_after_the_send_window_of_a_call_past_the_fence(
    revoke: str,
    org: Organization,
    upstream: RecordingUpstream,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A call passes the fence, then stalls (0.5 s) before it sends; the revocation
    commits meanwhile. It must not return before the call's request was sent: it waits
    out W (1 s) after its commit, because the worker had a recent attempt."""
    from apps.broker.pipeline import steps
    from apps.workers.services import (
        organization_revoke_all_worker_tokens,
        token_revoke,
        worker_disable,
    )

    settings.GRANTRY_SEND_WINDOW = 1.0
    agent = make_leasing_agent(org)
    auth_for = steps.credentials.auth_for
    past_fence = threading.Event()

    def stalled(*args: Any, **kwargs: Any) -> Any:
        past_fence.set()
        time.sleep(0.5)
        return auth_for(*args, **kwargs)

    monkeypatch.setattr(steps.credentials, "auth_for", stalled)
    answers: list[Any] = []
    call = Call("POST", "/api/v1/actions/sandbox.list_projects/execute", {"input": {}})

    def agent_call() -> None:
        try:
            answers.append(send(Client(), call, agent.raw))
        finally:
            connection.close()  # this thread's own

    in_flight = threading.Thread(target=agent_call)
    in_flight.start()
    assert past_fence.wait(20)
    if revoke == "token":
        token_revoke(token=agent.token, reason="test")
    elif revoke == "worker_disable":
        worker_disable(worker=agent.worker)
    else:
        organization_revoke_all_worker_tokens(organization=org, confirm=org.slug)
    returned = time.monotonic()
    in_flight.join()
    assert [a.status_code for a in answers] == [200]
    assert len(upstream.requests) == 1
    assert upstream.requests[0].at < returned, "a request was sent after the revocation returned"
    # And the next call of the token is refused.
    assert send(Client(), call, agent.raw).status_code == 401
    assert len(upstream.requests) == 1
