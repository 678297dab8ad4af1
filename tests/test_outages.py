"""With Redis down, and with PostgreSQL down, no agent or management endpoint answers
500 or an HTML page, and none reports success for a call it could not audit
(issue 21, item 4: `execute` answered 500 HTML 715 times).

One real granian process serves the test database through a TCP proxy the test can
cut, with its cache and task queue on a private redis-server the test can kill (the
machine's shared PostgreSQL and Redis are never touched). Every operation of the
OpenAPI schema (so a new endpoint joins), MCP and the OAuth client endpoints are
called in each outage. What each Redis-backed check does when Redis is down is
decided in the README's security section; the test holds the server to it:

* a failed authentication (the throttle cannot count it): 503 `cache_unavailable`;
* a call whose rule has a rate limit or quota: 503 `cache_unavailable`, audited,
  nothing upstream;
* a call that needs no count goes through, audited as always;
* approvals (status and long poll) need no Redis; their notifications are queued
  best effort (logged when the queue is down);
* a job that cannot be queued (an audit export): 503 `broker_unavailable`, the
  export marked failed;
* client registration (its per-address counter): 503 `cache_unavailable`.
With PostgreSQL down every call answers 503 with `Retry-After`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.contrib.auth.models import User

from apps.accounts.services import personal_token_mint
from apps.audit.models import AuditEvent, AuditExport
from apps.broker.tests.conftest import make_agent
from apps.broker.tests.upstream import RecordingUpstream
from apps.connections.models import Connection
from apps.organizations.models import Organization
from apps.workers.tests.test_cross_process import Server
from tests.chromium import session_cookie
from tests.outages import CuttableProxy, PrivateRedis

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
REGISTER = json.dumps({"redirect_uris": ["http://127.0.0.1:9/cb"], "client_name": "x"}).encode()
UNAVAILABLE_CODES = {
    "database_unavailable",
    "database_timeout",
    "audit_unavailable",
    "cache_unavailable",
    "broker_unavailable",
}


@dataclass
class Stack:
    server: Server
    redis: PrivateRedis
    proxy: CuttableProxy
    upstream: RecordingUpstream

    @contextmanager
    def redis_down(self) -> Iterator[None]:
        self.redis.kill()
        try:
            yield
        finally:
            self.redis.start()

    @contextmanager
    def database_down(self) -> Iterator[None]:
        self.proxy.cut()
        try:
            yield
        finally:
            self.proxy.start()


@pytest.fixture(scope="module")
def stack(
    django_db_setup: None,  # noqa: ARG001 - the test database must exist first
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    tmp_path = tmp_path_factory.mktemp("outages")
    db = settings.DATABASES["default"]
    if db.get("HOST"):
        target: Any = (db["HOST"], int(db.get("PORT") or 5432))
    else:  # the embedded PostgreSQL listens on a Unix socket only
        target = f"{db['OPTIONS']['host']}/.s.PGSQL.{db.get('PORT') or 5432}"
    proxy = CuttableProxy(target)
    proxy.start()
    redis = PrivateRedis(tmp_path)
    redis.start()
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    with RecordingUpstream() as upstream:
        server = Server(
            tmp_path,
            "web",
            threads=4,
            extra_env={
                "DATABASE_URL": f"postgres://{user}{password}@127.0.0.1:{proxy.port}/{db['NAME']}",
                "REDIS_URL": redis.url,
                "CELERY_BROKER_URL": redis.url,
                "GRANTRY_PROVIDER_URLS": f"sandbox={upstream.url}",
                # Production's: persistent connections, the web statement timeout, and
                # the failed-authentication limits (settings_test raises them).
                "GRANTRY_TEST_CONN_MAX_AGE": "60",
                "DB_STATEMENT_TIMEOUT_MS": "5000",
                "GRANTRY_AUTH_FAILURES_PER_ADDRESS": "50",
            },
        )
        try:
            server.wait_ready(timeout=120)
            yield Stack(server, redis, proxy, upstream)
        finally:
            server.stop()
            redis.kill()
            proxy.cut()


@dataclass
class Tenant:
    org: Organization
    worker_raw: str
    limited_raw: str
    personal: str


def make_tenant(org: Organization, admin: User) -> Tenant:
    agent = make_agent(org)
    sandbox = Connection.objects.get(organization=org, name="sandbox")
    limited = make_agent(
        org,
        name="limited",
        connection=sandbox,
        rules=[
            {
                "kind": "action",
                "provider_key": "sandbox",
                "action_pattern": "sandbox.list_projects",
                "rate_limit_per_minute": 100,
            }
        ],
    )
    _, personal = personal_token_mint(user=admin, organization=org, name="ops")
    return Tenant(org, agent.raw, limited.raw, personal)


def schema_calls(stack: Stack, tenant: Tenant) -> list[tuple[str, str, str, bytes, str]]:
    """(method, path, token, body, content type) for every operation of the OpenAPI schema, with the
    tenant's slug and ids no object has (nothing real is changed), plus MCP and the
    OAuth endpoints a client calls."""
    schema = httpx.get(f"{stack.server.base}/api/schema/?format=json", timeout=30).json()
    calls = []
    for path, operations in schema["paths"].items():
        for method in operations:
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            concrete = path.replace("{org_slug}", tenant.org.slug)
            concrete = concrete.replace("{action}", "sandbox.list_projects")
            concrete = concrete.replace("{connection}/{path}", "sandbox/projects/1")
            concrete = re.sub(r"\{[^}]+\}", "999999", concrete)
            management = path.startswith("/api/v1/orgs/")
            token = tenant.personal if management else tenant.worker_raw
            body = b'{"input": {}}' if "/actions/" in path else b"{}"
            calls.append((method.upper(), concrete, token, body, JSON))
    mcp = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode()
    calls.append(("POST", "/mcp", tenant.worker_raw, mcp, JSON))
    calls.append(("POST", "/oauth/register/", "", REGISTER, JSON))
    token_request = b"grant_type=authorization_code&code=nope&client_id=nope&code_verifier=x"
    calls.append(("POST", "/oauth/token/", "", token_request, FORM))
    assert len(calls) > 60, calls
    return calls


def call(
    stack: Stack, method: str, path: str, token: str, body: bytes = b"", content_type: str = JSON
) -> httpx.Response:
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.request(
        method, stack.server.base + path, headers=headers, content=body, timeout=30
    )


def assert_never_500_nor_html(response: httpx.Response, what: str) -> None:
    assert response.status_code < 500 or response.status_code == 503, (what, response.text)
    assert response.headers["content-type"].startswith("application/json"), (what, response.text)
    if response.status_code == 503:
        assert response.headers.get("Retry-After"), what
        error = response.json()["error"]
        assert error["code"] in UNAVAILABLE_CODES, (what, error)
        assert error["message"]
        assert error["request_id"]


@pytest.mark.django_db(transaction=True)
def test_with_redis_down(stack: Stack, org: Organization, admin: User) -> None:
    tenant = make_tenant(org, admin)
    calls = schema_calls(stack, tenant)
    stack.upstream.requests.clear()
    export_url = f"/api/v1/orgs/{org.slug}/audit/exports/"
    with stack.redis_down():
        for method, path, token, body, content_type in calls:
            response = call(stack, method, path, token, body, content_type)
            assert_never_500_nor_html(response, f"{method} {path}")

        # The decisions (README, "Security"), one by one. Valid tokens need no count.
        whoami = call(stack, "GET", "/api/v1/whoami", tenant.worker_raw)
        assert whoami.status_code == 200, whoami.text
        stack.upstream.requests.clear()
        unlimited = call(
            stack,
            "POST",
            "/api/v1/actions/sandbox.list_projects/execute",
            tenant.worker_raw,
            b'{"input": {}}',
        )
        assert unlimited.status_code == 200, unlimited.text
        assert len(stack.upstream.requests) == 1
        workers = call(stack, "GET", f"/api/v1/orgs/{org.slug}/workers/", tenant.personal)
        assert workers.status_code == 200, workers.text

        unknown = call(stack, "GET", "/api/v1/whoami", "gry_" + "A" * 49)
        assert unknown.status_code == 503
        assert unknown.json()["error"]["code"] == "cache_unavailable"

        limited = call(
            stack,
            "POST",
            "/api/v1/actions/sandbox.list_projects/execute",
            tenant.limited_raw,
            b'{"input": {}}',
        )
        assert limited.status_code == 503, limited.text
        assert limited.json()["error"]["code"] == "cache_unavailable"

        export = call(stack, "POST", export_url, tenant.personal, b'{"format": "csv"}')
        assert export.status_code == 503, export.text
        assert export.json()["error"]["code"] == "broker_unavailable"

        registered = call(stack, "POST", "/oauth/register/", "", REGISTER)
        assert registered.status_code == 503
        assert registered.json()["error"]["code"] == "cache_unavailable"

    assert len(stack.upstream.requests) == 1  # nothing that needed a count went upstream
    refused = AuditEvent.objects.filter(organization=org, reason__contains="shared cache")
    assert refused.filter(action="broker.execute").exists()
    assert not AuditExport.objects.filter(organization=org, status="pending").exists()
    assert AuditExport.objects.filter(organization=org, status="failed").exists()


@pytest.mark.django_db(transaction=True)
def test_with_postgresql_down(stack: Stack, org: Organization, admin: User) -> None:
    tenant = make_tenant(org, admin)
    calls = schema_calls(stack, tenant)
    cookies = {settings.SESSION_COOKIE_NAME: session_cookie(admin)}
    events = AuditEvent.objects.count()
    stack.upstream.requests.clear()
    with stack.database_down():
        for method, path, token, body, content_type in calls:
            response = call(stack, method, path, token, body, content_type)
            assert_never_500_nor_html(response, f"{method} {path}")
            assert response.status_code == 503, (method, path, response.text)
        # A person's page: its middleware loads the session from the database.
        page = httpx.get(f"{stack.server.base}/o/{org.slug}/workers/", cookies=cookies, timeout=30)
        assert page.status_code == 503
        assert page.headers.get("Retry-After")
        assert "Temporarily unavailable" in page.text
    assert stack.upstream.requests == []
    assert AuditEvent.objects.count() == events
    # Back up: the same server answers again without a restart.
    whoami = call(stack, "GET", "/api/v1/whoami", tenant.worker_raw)
    assert whoami.status_code == 200, whoami.text
