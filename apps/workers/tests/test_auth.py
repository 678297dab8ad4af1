"""Agent authentication through the real URL: every 401 cause, the success
context, throttled usage tracking, and that no raw token is ever recorded."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.services import personal_token_mint
from apps.audit.models import AuditEvent
from apps.connections.models import Connection
from apps.core.tokens import generate_token
from apps.organizations.models import Organization
from apps.policies.models import Rule
from apps.workers.models import Worker, WorkerToken
from apps.workers.services import (
    token_mint,
    token_revoke,
    worker_disable,
    worker_enable,
)

WHOAMI = "/api/v1/whoami"
pytestmark = pytest.mark.django_db


def call(raw: Any = None, header: Any = None, path: Any = WHOAMI, **extra: Any) -> Any:
    client = APIClient()
    if header is not None:
        extra["HTTP_AUTHORIZATION"] = header
    elif raw is not None:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {raw}"
    return client.get(path, **extra)


def assert_401(response: Any, code: Any) -> Any:
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"].startswith('Bearer realm="grantry"')
    body = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert "request_id" in body["error"]
    return body


def test_whoami_with_a_good_token(
    minted: tuple[WorkerToken, str], worker: Worker, org: Organization, role: Any
) -> None:
    token, raw = minted
    Connection.objects.create(
        organization=org, provider_key="sandbox", name="sandbox", auth_type="oauth2"
    )
    Rule.objects.create(
        role=role, kind="proxy", provider_key="sandbox", methods=["GET"], path_glob="/projects/*"
    )
    response = call(raw)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["worker"] == {"id": worker.pk, "name": "agent-one", "status": "active"}
    assert body["organization"]["slug"] == org.slug
    assert body["role"] == {"id": role.pk, "name": "sandbox-reader"}
    assert body["token"]["id"] == token.public_id
    assert body["token"]["expires_at"]
    names = sorted(action["name"] for action in body["allows"]["actions"])
    # sandbox.* read actions plus the one write action the role names; nothing else.
    assert names == [
        "sandbox.create_task",
        "sandbox.get_task",
        "sandbox.list_projects",
        "sandbox.list_tasks",
    ]
    assert all(action["connections"] == ["sandbox"] for action in body["allows"]["actions"])
    [proxy] = body["allows"]["proxy"]
    assert (proxy["methods"], proxy["path_glob"]) == (["GET"], "/projects/*")
    assert raw not in response.content.decode()
    assert response["Cache-Control"] == "no-store"


@pytest.mark.usefixtures("minted")
def test_missing_header() -> None:
    assert_401(call(), "token_missing")
    assert (
        AuditEvent.objects.filter(action="auth.failed", metadata__code="token_missing").count() == 1
    )


def test_token_in_query_string_is_never_accepted(minted: tuple[WorkerToken, str]) -> None:
    _, raw = minted
    # A valid token there is treated as leaked (apps/accounts/tests/test_leaked_tokens.py).
    assert_401(call(path=f"{WHOAMI}?token={raw}"), "token_leaked")
    assert_401(call(path=f"{WHOAMI}?access_token={raw}"), "token_missing")


def test_other_schemes_are_missing_not_accepted(minted: tuple[WorkerToken, str]) -> None:
    _, raw = minted
    assert_401(call(header=f"Basic {raw}"), "token_malformed")
    assert_401(call(header=raw), "token_malformed")
    assert_401(call(header="Basic dXNlcjpwYXNz"), "token_missing")


def test_malformed_and_bad_checksum(minted: tuple[WorkerToken, str]) -> None:
    _, raw = minted
    assert_401(call("not-a-token"), "token_malformed")
    flipped = raw[:-1] + ("A" if raw[-1] != "A" else "B")
    assert_401(call(flipped), "token_malformed")


def test_bad_checksum_never_queries_the_token_table(minted: tuple[WorkerToken, str]) -> None:
    _, raw = minted
    flipped = raw[:-1] + ("A" if raw[-1] != "A" else "B")
    with CaptureQueriesContext(connection) as queries:
        assert_401(call(flipped), "token_malformed")
    token_queries = [q["sql"] for q in queries if "workers_workertoken" in q["sql"]]
    assert token_queries == []


@pytest.mark.usefixtures("minted")
def test_unknown_well_formed_token() -> None:
    assert_401(call(generate_token("worker").raw), "token_invalid")


def test_revoked_token(minted: tuple[WorkerToken, str], admin: User) -> None:
    token, raw = minted
    assert call(raw).status_code == 200
    token_revoke(token=token, actor=admin, reason="leaked")
    body = assert_401(call(raw), "token_invalid")
    assert body["error"]["details"]["token_id"] == token.public_id
    event = AuditEvent.objects.filter(action="auth.failed").latest("id")
    assert event.token_id == token.public_id
    assert event.organization_id == token.organization_id


def test_expired_token_is_audited_as_expired_in_use(minted: tuple[WorkerToken, str]) -> None:
    token, raw = minted
    WorkerToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_401(call(raw), "token_expired")
    event = AuditEvent.objects.get(action="token.expired_in_use")
    assert event.token_id == token.public_id
    assert event.outcome == "failure"


def test_disabled_worker_fails_and_enabling_does_not_revive_revoked(
    minted: tuple[WorkerToken, str], worker: Worker, admin: User
) -> None:
    token, raw = minted
    _, other_raw = token_mint(worker=worker, actor=admin)
    worker_disable(worker=worker, actor=admin)
    assert_401(call(raw), "worker_disabled")
    assert_401(call(other_raw), "worker_disabled")
    token_revoke(token=token, actor=admin)
    worker_enable(worker=worker, actor=admin)
    assert_401(call(raw), "token_invalid")
    assert call(other_raw).status_code == 200


def test_personal_token_is_refused_on_the_agent_api(org: Organization, admin: User) -> None:
    _, raw = personal_token_mint(user=admin, organization=org, name="ci")
    assert_401(call(raw), "token_malformed")


def test_success_lookup_is_one_query_and_usage_write_is_throttled(
    minted: tuple[WorkerToken, str],
) -> None:
    token, raw = minted
    with CaptureQueriesContext(connection) as first:
        assert call(raw).status_code == 200
    token_selects = [
        q for q in first if q["sql"].startswith("SELECT") and "workers_workertoken" in q["sql"]
    ]
    assert len(token_selects) == 1
    assert "JOIN workers_worker" in token_selects[0]["sql"]
    assert "JOIN policies_role" in token_selects[0]["sql"]
    updates = [q for q in first if q["sql"].startswith('UPDATE "workers_workertoken"')]
    assert len(updates) == 1
    token.refresh_from_db()
    assert token.last_used_at is not None
    assert token.last_used_ip == "127.0.0.1"

    with CaptureQueriesContext(connection) as second:
        assert call(raw).status_code == 200
    assert [q for q in second if q["sql"].startswith('UPDATE "workers_workertoken"')] == []

    # A minute later the next call records its use again.
    WorkerToken.objects.filter(pk=token.pk).update(
        last_used_at=timezone.now() - timedelta(seconds=61)
    )
    assert call(raw, REMOTE_ADDR="10.1.2.3").status_code == 200
    token.refresh_from_db()
    assert token.last_used_ip == "10.1.2.3"


@pytest.mark.usefixtures("worker")
def test_the_raw_token_never_reaches_audit_or_logs(
    minted: tuple[WorkerToken, str], admin: User, caplog: pytest.LogCaptureFixture
) -> None:
    token, raw = minted
    caplog.set_level(logging.DEBUG)
    call(raw)
    call(raw[:-1] + ("A" if raw[-1] != "A" else "B"))
    token_revoke(token=token, actor=admin)
    call(raw)
    WorkerToken.objects.filter(pk=token.pk).update(expires_at=timezone.now())
    call(raw)
    secret_part = raw[4:47]
    for event in AuditEvent.objects.all():
        dumped = json.dumps(
            {f.name: str(getattr(event, f.attname)) for f in event._meta.concrete_fields}
        )
        assert secret_part not in dumped
        assert token.digest not in dumped
    assert (
        AuditEvent.objects.filter(action__in=["auth.failed", "token.expired_in_use"]).count() >= 3
    )
    assert secret_part not in caplog.text
