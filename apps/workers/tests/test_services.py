"""Services: validation, roll overlap windows, kill switches, expiry limits, audit."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.core.exceptions import ValidationError
from django.utils import timezone
from pytest_django import DjangoCaptureOnCommitCallbacks
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.organizations.models import Organization
from apps.workers.models import Worker, WorkerStatus, WorkerToken
from apps.workers.services import (
    organization_revoke_all_worker_tokens,
    token_expiry_warnings_send,
    token_mint,
    token_revoke,
    token_roll,
    worker_create,
    worker_disable,
    worker_revoke_all_tokens,
    worker_update,
)
from apps.workers.tests.conftest import make_role
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def whoami(raw: Any) -> Any:
    return APIClient().get("/api/v1/whoami", HTTP_AUTHORIZATION=f"Bearer {raw}")


def test_create_is_audited_and_checks_org_of_role_and_owner(
    org: Organization, other_org: Organization, role: Any, admin: User
) -> None:
    foreign_role = make_role(other_org, "theirs")
    with pytest.raises(ValidationError) as exc:
        worker_create(organization=org, name="x", default_role=foreign_role, actor=admin)
    assert "default_role" in exc.value.message_dict
    stranger = UserFactory(email="stranger@example.test")
    with pytest.raises(ValidationError) as exc:
        worker_create(organization=org, name="x", default_role=role, owner=stranger)
    assert "owner" in exc.value.message_dict

    worker = worker_create(
        organization=org, name="bot", default_role=role, owner=admin, actor=admin
    )
    event = AuditEvent.objects.get(action="worker.created")
    assert (event.organization_id, event.worker_id, event.actor_id) == (
        org.pk,
        worker.pk,
        str(admin.pk),
    )
    with pytest.raises(ValidationError):
        worker_create(organization=org, name="bot", default_role=role)


def test_update_records_a_diff(worker: Worker, org: Organization, admin: User) -> None:
    other_role = make_role(org, "writer")
    worker_update(worker=worker, actor=admin, description="new", default_role=other_role)
    event = AuditEvent.objects.get(action="worker.changed")
    assert event.metadata["changes"]["description"] == {"from": "", "to": "new"}
    assert event.metadata["changes"]["default_role"] == {"from": "sandbox-reader", "to": "writer"}


def test_mint_defaults_and_limits(
    worker: Worker, org: Organization, admin: User, role: Any, other_org: Organization
) -> None:
    token, raw = token_mint(worker=worker, actor=admin)
    assert token.role == role
    lifetime = token.expires_at - token.created_at
    assert timedelta(days=29, hours=23) < lifetime <= timedelta(days=30, seconds=5)
    assert WorkerToken.objects.get(pk=token.pk).digest != raw
    event = AuditEvent.objects.get(action="token.minted")
    assert event.token_id == token.public_id
    assert raw[4:47] not in str(event.metadata)

    token_mint(worker=worker, expires_in_days=366)
    with pytest.raises(ValidationError):
        token_mint(worker=worker, expires_in_days=367)
    with pytest.raises(ValidationError):
        token_mint(worker=worker, expires_in_days=0)
    with pytest.raises(ValidationError):
        token_mint(worker=worker, role=make_role(other_org, "theirs"))

    org.max_token_days = 10
    org.save()
    with pytest.raises(ValidationError):
        token_mint(worker=worker, expires_in_days=11)
    capped, _ = token_mint(worker=worker)  # the default shrinks to the org's maximum
    assert capped.expires_at - capped.created_at <= timedelta(days=10, seconds=5)


def test_mint_refused_for_a_disabled_worker(worker: Worker, admin: User) -> None:
    worker_disable(worker=worker, actor=admin)
    with pytest.raises(ValidationError):
        token_mint(worker=worker)


@pytest.mark.parametrize(
    ("overlap", "window"),
    [
        ("1h", timedelta(hours=1)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
    ],
)
def test_roll_keeps_the_old_token_valid_inside_the_overlap_only(
    minted: tuple[WorkerToken, str], admin: User, overlap: str, window: Any
) -> None:
    old, old_raw = minted
    before = timezone.now()
    new, new_raw = token_roll(token=old, overlap=overlap, actor=admin)
    old.refresh_from_db()
    assert new.rolled_from_id == old.pk
    assert new.role_id == old.role_id
    assert before + window <= old.expires_at <= timezone.now() + window
    # Inside the window both tokens work.
    assert whoami(old_raw).status_code == 200
    assert whoami(new_raw).status_code == 200
    # Just after the window (moved explicitly), the old one is expired; the new one works.
    WorkerToken.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert whoami(old_raw).json()["error"]["code"] == "token_expired"
    assert whoami(new_raw).status_code == 200
    event = AuditEvent.objects.get(action="token.rolled")
    assert event.metadata["overlap"] == overlap
    assert event.metadata["new_token_id"] == new.public_id


def test_roll_without_overlap_ends_the_old_token_now(
    minted: tuple[WorkerToken, str], admin: User
) -> None:
    old, old_raw = minted
    _, new_raw = token_roll(token=old, overlap="none", actor=admin)
    assert whoami(old_raw).json()["error"]["code"] == "token_expired"
    assert whoami(new_raw).status_code == 200


@pytest.mark.usefixtures("admin")
def test_roll_never_extends_an_old_token_and_cannot_repeat(worker: Worker) -> None:
    old, _ = token_mint(worker=worker, expires_in_days=1)
    WorkerToken.objects.filter(pk=old.pk).update(expires_at=timezone.now() + timedelta(hours=2))
    token_roll(token=old, overlap="7d")
    old.refresh_from_db()
    assert old.expires_at <= timezone.now() + timedelta(hours=2)
    with pytest.raises(ValidationError):
        token_roll(token=old, overlap="1h")
    revoked, _ = token_mint(worker=worker)
    token_revoke(token=revoked)
    with pytest.raises(ValidationError):
        token_roll(token=revoked)
    with pytest.raises(ValidationError):
        token_roll(token=old, overlap="3d")


def test_worker_kill_switch_revokes_only_that_worker(
    worker: Worker, org: Organization, role: Any, admin: User
) -> None:
    raws = [token_mint(worker=worker)[1] for _ in range(3)]
    other = worker_create(organization=org, name="other", default_role=role)
    _, other_raw = token_mint(worker=other)
    assert worker_revoke_all_tokens(worker=worker, actor=admin) == 3
    assert all(whoami(raw).json()["error"]["code"] == "token_invalid" for raw in raws)
    assert whoami(other_raw).status_code == 200
    event = AuditEvent.objects.get(action="killswitch.worker")
    assert event.metadata["count"] == 3
    assert worker.tokens.filter(revoked_by=admin).count() == 3


def test_org_kill_switch_needs_the_slug_and_spares_other_orgs(
    worker: Worker, org: Organization, other_org: Organization, admin: User
) -> None:
    _, raw = token_mint(worker=worker)
    theirs_role = make_role(other_org, "theirs")
    theirs = worker_create(organization=other_org, name="theirs", default_role=theirs_role)
    _, their_raw = token_mint(worker=theirs)
    with pytest.raises(ValidationError):
        organization_revoke_all_worker_tokens(organization=org, confirm="ACME", actor=admin)
    assert whoami(raw).status_code == 200
    assert not AuditEvent.objects.filter(action="killswitch.org").exists()
    assert (
        organization_revoke_all_worker_tokens(organization=org, confirm=org.slug, actor=admin) == 1
    )
    assert whoami(raw).status_code == 401
    assert whoami(their_raw).status_code == 200
    assert AuditEvent.objects.get(action="killswitch.org").organization_id == org.pk


def test_disable_is_audited(worker: Worker, admin: User) -> None:
    worker_disable(worker=worker, actor=admin)
    worker.refresh_from_db()
    assert worker.status == WorkerStatus.DISABLED
    assert AuditEvent.objects.filter(action="worker.disabled", worker_id=worker.pk).exists()


def test_a_failing_audit_write_rolls_the_change_back(
    minted: tuple[WorkerToken, str], admin: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    token, _raw = minted

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("audit store down")

    monkeypatch.setattr("apps.workers.services.audit_record", broken)
    with pytest.raises(RuntimeError):
        token_revoke(token=token, actor=admin)
    token.refresh_from_db()
    assert token.revoked_at is None


@pytest.mark.usefixtures("org", "reviewer")
def test_expiry_warnings_email_admins_once_per_token(
    worker: Worker,
    owner: User,
    admin: User,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    soon, _ = token_mint(worker=worker, expires_in_days=3)
    token_mint(worker=worker, expires_in_days=30)
    with django_capture_on_commit_callbacks(execute=True):
        assert token_expiry_warnings_send() == 1
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert sorted(message.to) == sorted([owner.email, admin.email])
    assert soon.public_id in message.body
    with django_capture_on_commit_callbacks(execute=True):
        assert token_expiry_warnings_send() == 0
    assert len(mail.outbox) == 1
