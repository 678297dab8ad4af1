"""A valid token in the query string of an API or MCP request is a leaked token:
revoked, audited as token.leaked, its owner emailed, the request refused."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client
from pytest_django import DjangoCaptureOnCommitCallbacks
from rest_framework.test import APIClient

from apps.accounts.models import PersonalAPIToken
from apps.accounts.services import personal_token_mint
from apps.audit.models import AuditEvent
from apps.core.tokens import generate_token
from apps.organizations.models import Organization
from apps.workers.models import Worker, WorkerToken
from apps.workers.services import token_mint, worker_create
from apps.workers.tests.conftest import make_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def worker(org: Organization, admin: User) -> Worker:
    role = make_role(org, "reader")
    return worker_create(
        organization=org, name="agent-one", default_role=role, owner=admin, actor=admin
    )


@pytest.fixture
def minted(worker: Worker, admin: User) -> tuple[WorkerToken, str]:
    return token_mint(worker=worker, actor=admin)


def assert_leaked(response: Any) -> None:
    assert response.status_code == 401, response.content
    assert response.json()["error"]["code"] == "token_leaked"
    assert 'error="invalid_token"' in response["WWW-Authenticate"]


def test_worker_token_in_a_query_string_is_revoked_and_its_owner_emailed(
    minted: tuple[WorkerToken, str],
    worker: Worker,
    admin: User,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    token, raw = minted
    with django_capture_on_commit_callbacks(execute=True):
        response = APIClient().get(f"/api/v1/whoami?token={raw}")
    assert_leaked(response)
    token = WorkerToken.objects.get(pk=token.pk)
    assert token.revoked_at is not None
    assert "query string" in token.revoke_reason
    event = AuditEvent.objects.get(action="token.leaked")
    assert event.token_id == token.public_id
    assert event.worker_id == worker.pk
    assert event.organization_id == token.organization_id
    assert event.metadata["path"] == "/api/v1/whoami"
    assert AuditEvent.objects.filter(action="token.revoked", token_id=token.public_id).exists()
    assert raw[4:47] not in str(event.metadata) + event.reason + event.target_label
    [message] = mail.outbox
    assert message.to == [admin.email]  # the worker's owner
    assert token.public_id in message.body
    assert raw[4:47] not in message.body
    # It no longer works, in the header either.
    again = APIClient().get("/api/v1/whoami", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert again.status_code == 401
    assert again.json()["error"]["code"] == "token_invalid"


def test_percent_encoded_token_on_mcp_is_caught(minted: tuple[WorkerToken, str]) -> None:
    token, raw = minted
    encoded = raw.replace("_", "%5F")
    response = APIClient().post(
        f"/mcp?auth={encoded}", {"jsonrpc": "2.0", "id": 1, "method": "ping"}, format="json"
    )
    assert_leaked(response)
    assert WorkerToken.objects.get(pk=token.pk).revoked_at is not None


def test_personal_token_in_a_query_string_is_revoked_and_its_user_emailed(
    org: Organization,
    admin: User,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    token, raw = personal_token_mint(user=admin, organization=org, name="ci")
    with django_capture_on_commit_callbacks(execute=True):
        response = APIClient().get(
            f"/api/v1/orgs/{org.slug}/workers/?access_token={raw}",
            HTTP_AUTHORIZATION=f"Bearer {raw}",
        )
    assert_leaked(response)
    assert PersonalAPIToken.objects.get(pk=token.pk).revoked_at is not None
    event = AuditEvent.objects.get(action="token.leaked")
    assert event.token_id == token.public_id
    assert event.organization_id == org.pk
    [message] = mail.outbox
    assert message.to == [admin.email]
    assert raw[5:48] not in message.body


def test_unknown_or_malformed_tokens_in_a_query_string_change_nothing(
    minted: tuple[WorkerToken, str],
) -> None:
    token, raw = minted
    altered = raw[:-1] + ("X" if raw[-1] != "X" else "Y")  # never the token itself
    for query in (f"token={generate_token('worker').raw}", f"token={altered}", "q=gryphon"):
        response = APIClient().get(f"/api/v1/whoami?{query}")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "token_missing"
    assert WorkerToken.objects.get(pk=token.pk).revoked_at is None
    assert not AuditEvent.objects.filter(action="token.leaked").exists()
    assert mail.outbox == []


def test_only_api_and_mcp_paths_are_watched(
    minted: tuple[WorkerToken, str], client: Client
) -> None:
    token, raw = minted
    client.get(f"/healthz?checks=0&token={raw}")
    assert WorkerToken.objects.get(pk=token.pk).revoked_at is None
