"""Dashboard pages: roles, tenancy, one-time token display, every change audited."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.organizations.models import Organization
from apps.workers.models import Worker, WorkerStatus, WorkerToken
from apps.workers.services import token_mint

pytestmark = pytest.mark.django_db


def logged_in(user: Any) -> Any:
    client = Client()
    client.force_login(user)
    return client


def url(org: Organization, rest: str = "") -> Any:
    return f"/o/{org.slug}/workers/{rest}"


def whoami(raw: Any) -> Any:
    return APIClient().get("/api/v1/whoami", HTTP_AUTHORIZATION=f"Bearer {raw}")


def test_admin_creates_worker_mints_sees_token_once_and_revokes(
    org: Organization, admin: User, role: Any
) -> None:
    client = logged_in(admin)
    page = client.get(url(org, "new/"))
    assert page.status_code == 200
    response = client.post(
        url(org, "new/"),
        {"name": "triage-bot", "description": "Triage", "owner": admin.pk, "default_role": role.pk},
    )
    worker = Worker.objects.get(name="triage-bot")
    assert response.status_code == 302
    assert response.url == url(org, f"{worker.pk}/")

    minted = client.post(url(org, f"{worker.pk}/mint/"), {"name": "ci", "expires": "30"})
    assert minted.status_code == 302
    assert minted.url == url(org, "token/")
    once = client.get(url(org, "token/"))
    assert once.status_code == 200
    assert "no-store" in once["Cache-Control"]
    html = once.content.decode()
    raw = re.search(r"gry_[0-9A-Za-z]{49}", html).group(0)
    assert f"Bearer {raw}" in html  # curl + MCP snippets are ready to paste
    assert "/api/v1/whoami" in html
    assert "/mcp" in html
    assert whoami(raw).status_code == 200

    # Never again: not on reload, not on the worker's page.
    again = client.get(url(org, "token/"))
    assert raw not in again.content.decode()
    assert "no longer shown" in again.content.decode()
    detail = client.get(url(org, f"{worker.pk}/"))
    assert raw not in detail.content.decode()
    token = WorkerToken.objects.get(worker=worker)
    assert token.public_id in detail.content.decode()

    revoke = client.post(
        url(org, f"{worker.pk}/tokens/{token.public_id}/revoke/"), {"confirmed": "yes"}
    )
    assert revoke.status_code == 302
    assert whoami(raw).status_code == 401
    assert {"worker.created", "token.minted", "token.revoked"} <= set(
        AuditEvent.objects.values_list("action", flat=True)
    )


def test_roll_from_the_dashboard_shows_the_new_token_once(
    org: Organization, admin: User, worker: Worker, minted: tuple[WorkerToken, str]
) -> None:
    token, old_raw = minted
    client = logged_in(admin)
    response = client.post(
        url(org, f"{worker.pk}/tokens/{token.public_id}/roll/"),
        {"overlap": "1h", "confirmed": "yes"},
    )
    assert response.url == url(org, "token/")
    html = client.get(url(org, "token/")).content.decode()
    new_raw = re.search(r"gry_[0-9A-Za-z]{49}", html).group(0)
    assert new_raw != old_raw
    assert whoami(old_raw).status_code == 200  # inside the overlap
    assert whoami(new_raw).status_code == 200


def test_disable_enable_and_revoke_all(
    org: Organization, admin: User, worker: Worker, minted: tuple[WorkerToken, str]
) -> None:
    _, raw = minted
    client = logged_in(admin)
    client.post(url(org, f"{worker.pk}/disable/"), {"confirmed": "yes"})
    assert Worker.objects.get(pk=worker.pk).status == WorkerStatus.DISABLED
    assert whoami(raw).json()["error"]["code"] == "worker_disabled"
    client.post(url(org, f"{worker.pk}/enable/"))
    assert whoami(raw).status_code == 200
    client.post(url(org, f"{worker.pk}/revoke-all/"), {"confirmed": "yes"})
    assert whoami(raw).json()["error"]["code"] == "token_invalid"


@pytest.mark.usefixtures("worker")
def test_kill_switch_confirms_what_stops_first(
    org: Organization, admin: User, minted: tuple[WorkerToken, str]
) -> None:
    _, raw = minted
    client = logged_in(admin)
    page = client.get(url(org, "kill-switch/"))
    assert page.status_code == 200
    assert "The only token (1 worker) stops working immediately" in page.content.decode()
    assert "All 1 token" not in page.content.decode()
    unconfirmed = client.post(url(org, "kill-switch/"))
    assert unconfirmed.status_code == 200
    assert 'name="confirmed" value="yes"' in unconfirmed.content.decode()
    assert whoami(raw).status_code == 200
    right = client.post(url(org, "kill-switch/"), {"confirmed": "yes"})
    assert right.status_code == 302
    assert whoami(raw).status_code == 401
    assert AuditEvent.objects.filter(action="killswitch.org").count() == 1


def test_expiring_tokens_are_flagged(org: Organization, admin: User, worker: Worker) -> None:
    token_mint(worker=worker, expires_in_days=3)
    client = logged_in(admin)
    assert "Expires within 7 days" in client.get(url(org, f"{worker.pk}/")).content.decode()
    assert "expiring soon" in client.get(url(org)).content.decode()


def test_reviewer_reads_but_cannot_change(
    org: Organization, reviewer: User, worker: Worker, minted: tuple[WorkerToken, str]
) -> None:
    token, raw = minted
    client = logged_in(reviewer)
    assert client.get(url(org)).status_code == 200
    detail = client.get(url(org, f"{worker.pk}/"))
    assert detail.status_code == 200
    assert "Mint token" not in detail.content.decode()
    posts = [
        "new/",
        f"{worker.pk}/mint/",
        f"{worker.pk}/disable/",
        f"{worker.pk}/revoke-all/",
        f"{worker.pk}/tokens/{token.public_id}/revoke/",
        f"{worker.pk}/tokens/{token.public_id}/roll/",
        "kill-switch/",
    ]
    for rest in posts:
        assert client.post(url(org, rest), {"confirm": org.slug}).status_code == 403, rest
    assert client.get(url(org, "new/")).status_code == 403
    assert whoami(raw).status_code == 200


def test_member_is_forbidden_and_outsider_gets_404(
    org: Organization, member: User, outsider: User, worker: Worker, minted: tuple[WorkerToken, str]
) -> None:
    token, _ = minted
    pages = ["", "new/", "kill-switch/", "token/", f"{worker.pk}/", f"{worker.pk}/edit/"]
    for rest in pages:
        assert logged_in(member).get(url(org, rest)).status_code == 403, rest
        assert logged_in(outsider).get(url(org, rest)).status_code == 404, rest
    client = logged_in(outsider)
    for rest in [
        f"{worker.pk}/mint/",
        f"{worker.pk}/tokens/{token.public_id}/revoke/",
        "kill-switch/",
    ]:
        assert client.post(url(org, rest), {"confirm": org.slug}).status_code == 404
    assert WorkerToken.objects.get(pk=token.pk).revoked_at is None


@pytest.mark.usefixtures("outsider")
def test_another_orgs_worker_is_404_under_my_org(
    org: Organization, other_org: Organization, admin: User
) -> None:
    from apps.workers.services import worker_create
    from apps.workers.tests.conftest import make_role

    theirs = worker_create(
        organization=other_org, name="theirs", default_role=make_role(other_org, "r")
    )
    token, _ = token_mint(worker=theirs)
    client = logged_in(admin)
    assert client.get(url(org, f"{theirs.pk}/")).status_code == 404
    assert client.post(url(org, f"{theirs.pk}/tokens/{token.public_id}/revoke/")).status_code == 404
    assert WorkerToken.objects.get(pk=token.pk).revoked_at is None


def test_a_token_minted_in_one_org_is_not_shown_under_another(
    org: Organization, other_org: Organization, admin: User, worker: Worker
) -> None:
    from tests.factories import MembershipFactory

    MembershipFactory(organization=other_org, user=admin, role="admin")
    client = logged_in(admin)
    client.post(
        url(org, f"{worker.pk}/mint/"), {"name": "ci", "expires": "custom", "expires_in_days": 5}
    )
    html = client.get(url(other_org, "token/")).content.decode()
    assert "gry_" not in html


def test_edit_is_audited_with_a_diff(
    org: Organization, admin: User, worker: Worker, role: Any
) -> None:
    client = logged_in(admin)
    response = client.post(
        url(org, f"{worker.pk}/edit/"),
        {
            "name": worker.name,
            "description": "now described",
            "owner": admin.pk,
            "default_role": role.pk,
        },
    )
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="worker.changed")
    assert event.metadata["changes"]["description"]["to"] == "now described"


def test_sidebar_links_to_workers(org: Organization, admin: User) -> None:
    html = logged_in(admin).get(f"/o/{org.slug}/").content.decode()
    assert f'href="/o/{org.slug}/workers/"' in html
