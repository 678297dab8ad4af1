"""Failed token authentication cannot flood the audit trail: throttled per address and
per token prefix (429 + Retry-After), audited as one summary per window."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from rest_framework.test import APIClient

from apps.accounts import auth_failures
from apps.accounts.auth_failures import auth_failures_flush, window_seconds
from apps.accounts.services import personal_token_mint, personal_token_revoke
from apps.audit.models import AuditEvent
from apps.core.tokens import generate_token
from apps.organizations.models import Organization
from apps.workers.models import WorkerToken
from apps.workers.services import token_revoke

pytestmark = pytest.mark.django_db
WHOAMI = "/api/v1/whoami"
# Mid-window, held still: a test never straddles two windows.
NOW = 1_800_000_030.0


@pytest.fixture(autouse=True)
def _still_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth_failures, "clock", lambda: NOW)


def whoami(raw: Any, address: str = "127.0.0.1") -> Any:
    return APIClient().get(WHOAMI, HTTP_AUTHORIZATION=f"Bearer {raw}", REMOTE_ADDR=address)


def next_window() -> Any:
    return NOW + window_seconds()


def failure_events() -> Any:
    return AuditEvent.objects.filter(action__in=["auth.failed", "token.expired_in_use"])


@override_settings(GRANTRY_AUTH_FAILURES_PER_ADDRESS=30)
def test_300_random_tokens_are_throttled_and_audited_in_aggregate() -> None:
    statuses = [whoami(generate_token("worker").raw).status_code for _ in range(300)]
    assert statuses[:30] == [401] * 30
    assert set(statuses[30:]) == {429}

    throttled = whoami(generate_token("worker").raw)
    assert throttled.status_code == 429
    assert throttled.json()["error"]["code"] == "auth_throttled"
    assert int(throttled["Retry-After"]) == window_seconds() - 30
    # A different address is not affected.
    assert whoami(generate_token("worker").raw, address="10.9.8.7").status_code == 401

    # The window's first five failures are recorded one by one; the rest only counted.
    assert failure_events().count() == 5
    assert auth_failures_flush(now=next_window()) == 1
    assert auth_failures_flush(now=next_window()) == 0  # exactly once
    summary = AuditEvent.objects.get(action="auth.failed", metadata__aggregated=True)
    assert summary.organization_id is None
    assert summary.metadata["count"] == 26  # 25 more from 127.0.0.1, 1 from 10.9.8.7
    assert summary.metadata["codes"] == {"token_invalid": 26}
    assert summary.metadata["addresses"] == ["127.0.0.1"]  # the sample: the first five
    assert summary.metadata["first_seen"] <= summary.metadata["last_seen"]
    # 301 attempts: 31 recorded failures, the rest refused uncounted; six rows.
    assert failure_events().count() == 6


@override_settings(GRANTRY_AUTH_FAILURES_PER_TOKEN_PREFIX=8)
def test_one_revoked_token_from_many_addresses_is_throttled_by_its_prefix(
    minted: tuple[WorkerToken, str], admin: User, org: Organization
) -> None:
    token, raw = minted
    token_revoke(token=token, actor=admin)
    statuses = [whoami(raw, address=f"10.0.0.{i}").status_code for i in range(1, 13)]
    assert statuses[:8] == [401] * 8
    assert set(statuses[8:]) == {429}
    # Other tokens from those addresses still get their normal answer.
    assert whoami(generate_token("worker").raw, address="10.0.0.9").status_code == 401

    revoke_failures = AuditEvent.objects.filter(
        action="auth.failed", organization_id=org.pk, token_id=token.public_id
    )
    assert revoke_failures.count() == 5
    auth_failures_flush(now=next_window())
    summary = AuditEvent.objects.get(
        action="auth.failed", organization_id=org.pk, metadata__aggregated=True
    )
    assert summary.metadata["count"] == 3
    assert summary.metadata["token_ids"] == [token.public_id]
    assert summary.metadata["surface"] == "agent"
    assert len(summary.metadata["addresses"]) == 3


def test_personal_token_failures_are_audited(org: Organization, admin: User) -> None:
    api = APIClient()
    unknown = generate_token("personal").raw
    response = api.get(f"/api/v1/orgs/{org.slug}/workers/", HTTP_AUTHORIZATION=f"Bearer {unknown}")
    assert response.status_code == 401
    event = AuditEvent.objects.get(action="auth.failed")
    assert event.metadata["surface"] == "management"
    assert event.metadata["code"] == "token_invalid"
    assert event.organization_id is None

    token, raw = personal_token_mint(user=admin, organization=org, name="ci")
    personal_token_revoke(token=token, actor=admin)
    response = api.get(f"/api/v1/orgs/{org.slug}/workers/", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 401
    event = AuditEvent.objects.filter(action="auth.failed").latest("id")
    assert event.organization_id == org.pk
    assert event.token_id == token.public_id
    assert event.actor_label == admin.get_username()
    assert raw[5:40] not in str(event.metadata)


@override_settings(GRANTRY_AUTH_FAILURES_PER_ADDRESS=3)
def test_personal_token_failures_are_throttled_too(org: Organization) -> None:
    api = APIClient()
    url = f"/api/v1/orgs/{org.slug}/workers/"
    statuses = [
        api.get(url, HTTP_AUTHORIZATION=f"Bearer {generate_token('personal').raw}").status_code
        for _ in range(5)
    ]
    assert statuses == [401, 401, 401, 429, 429]


@override_settings(GRANTRY_AUTH_FAILURES_PER_ADDRESS=10)
def test_failures_from_an_address_do_not_lock_out_the_valid_tokens_behind_it(
    minted: tuple[WorkerToken, str], org: Organization, admin: User
) -> None:
    """Agents behind one NAT share an address: one of them failing (a wrong token, a
    revoked one) must not lock the others out (issue 21, item 9)."""
    nat = "203.0.113.7"
    _, raw = minted
    statuses = [whoami(generate_token("worker").raw, address=nat).status_code for _ in range(20)]
    assert statuses[:10] == [401] * 10
    assert set(statuses[10:]) == {429}

    # A valid worker token from the same address is served, again and again...
    assert [whoami(raw, address=nat).status_code for _ in range(3)] == [200] * 3
    # ...and a valid personal token on the management API too,
    _, personal = personal_token_mint(user=admin, organization=org, name="ci")
    management = APIClient().get(
        f"/api/v1/orgs/{org.slug}/workers/",
        HTTP_AUTHORIZATION=f"Bearer {personal}",
        REMOTE_ADDR=nat,
    )
    assert management.status_code == 200, management.content
    # ...while the failing ones stay throttled, on both APIs.
    assert whoami(generate_token("worker").raw, address=nat).status_code == 429
    wrong_personal = APIClient().get(
        f"/api/v1/orgs/{org.slug}/workers/",
        HTTP_AUTHORIZATION=f"Bearer {generate_token('personal').raw}",
        REMOTE_ADDR=nat,
    )
    assert wrong_personal.status_code == 429
