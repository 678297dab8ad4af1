"""One confirmation for every destructive action (issue 13, #10): it names what
stops working, acts only when confirmed, and offers Undo where it can."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from apps.audit.tests.helpers import broker_event
from apps.connections.models import Connection
from apps.organizations.models import Organization
from apps.policies.models import Role, Rule
from apps.workers.services import token_mint, worker_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(org: Organization, admin: User) -> Any:
    conn = Connection.objects.create(
        organization=org, provider_key="sandbox", name="sandbox-demo", auth_type="oauth2"
    )
    role = Role.objects.create(organization=org, name="sandbox-triage")
    Rule.objects.create(
        role=role, provider_key="sandbox", action_pattern="sandbox.list_tasks", connection=conn
    )
    worker = worker_create(
        organization=org, name="demo-agent", default_role=role, owner=admin, actor=admin
    )
    t1, _ = token_mint(worker=worker, actor=admin)
    token_mint(worker=worker, actor=admin)
    for _ in range(3):
        broker_event(org, worker_id=worker.pk, token_id=t1.public_id, connection_id=conn.pk)
    return conn, role, worker, t1


def w_url(org: Organization, worker: Any, path: Any) -> Any:
    return f"/o/{org.slug}/workers/{worker.pk}/{path}"


def test_revoke_all_names_tokens_and_recent_calls_then_acts_only_when_confirmed(
    client: Client, org: Organization, admin: User, setup: Any
) -> None:
    _, _, worker, _ = setup
    client.force_login(admin)
    page = client.post(w_url(org, worker, "revoke-all/"))
    html = page.content.decode()
    assert page.status_code == 200
    assert "demo-agent&#x27;s 2 tokens stop working immediately; 3 calls in the last hour" in html
    assert "This cannot be undone." in html
    assert worker.tokens.filter(revoked_at__isnull=True).count() == 2  # nothing happened yet
    done = client.post(w_url(org, worker, "revoke-all/"), {"confirmed": "yes"})
    assert done.status_code == 302
    assert worker.tokens.filter(revoked_at__isnull=True).count() == 0


def test_revoke_one_token_names_it(
    client: Client, org: Organization, admin: User, setup: Any
) -> None:
    _, _, worker, t1 = setup
    client.force_login(admin)
    html = client.post(w_url(org, worker, f"tokens/{t1.public_id}/revoke/")).content.decode()
    assert f"token {t1.public_id} (…{t1.last4}) stops working immediately; 3 calls" in html


def test_disable_offers_undo_once(
    client: Client, org: Organization, admin: User, setup: Any
) -> None:
    _, _, worker, _ = setup
    client.force_login(admin)
    html = client.post(w_url(org, worker, "disable/")).content.decode()
    assert "You can undo this" in html
    page = client.post(w_url(org, worker, "disable/"), {"confirmed": "yes"}, follow=True)
    worker.refresh_from_db()
    assert worker.status == "disabled"
    html = page.content.decode()
    enable = reverse("workers:enable", kwargs={"org_slug": org.slug, "worker_id": worker.pk})
    assert f'action="{enable}"' in html
    assert "Undo: enable demo-agent again" in html
    # Shown once: the next page no longer offers it.
    assert "Undo: enable" not in client.get(w_url(org, worker, "")).content.decode()
    client.post(enable, {"confirmed": "yes"})
    worker.refresh_from_db()
    assert worker.status == "active"


def test_remove_rule_then_undo_adds_it_back(
    client: Client, org: Organization, admin: User, setup: Any
) -> None:
    _, role, _, _ = setup
    client.force_login(admin)
    rule = role.rules.get()
    delete = reverse(
        "policies:rule_delete",
        kwargs={"org_slug": org.slug, "role_id": role.pk, "rule_id": rule.pk},
    )
    html = client.post(delete).content.decode()
    assert "demo-agent" in html
    assert "1 worker use this role" in html
    assert role.rules.count() == 1
    page = client.post(delete, {"confirmed": "yes"}, follow=True).content.decode()
    assert role.rules.count() == 0
    assert "Undo: add the rule back" in page
    restore = reverse("policies:rule_restore", kwargs={"org_slug": org.slug, "role_id": role.pk})
    client.post(restore, {"confirmed": "yes"})
    restored = role.rules.get()
    assert (restored.action_pattern, restored.connection.name) == (
        "sandbox.list_tasks",
        "sandbox-demo",
    )
    # The undo works once.
    client.post(restore, {"confirmed": "yes"})
    assert role.rules.count() == 1


def test_disconnect_lists_the_workers_and_roles_that_use_it(
    client: Client, org: Organization, admin: User, setup: Any
) -> None:
    conn, _, _, _ = setup
    other = Role.objects.create(organization=org, name="any-sandbox")
    Rule.objects.create(role=other, provider_key="sandbox", action_pattern="sandbox.*")
    Role.objects.create(organization=org, name="unrelated")
    client.force_login(admin)
    html = client.get(f"/o/{org.slug}/connections/{conn.pk}/disconnect/").content.decode()
    assert "Workers that can use it" in html
    assert "<li>demo-agent</li>" in html
    assert "<li>sandbox-triage</li>" in html
    assert "<li>any-sandbox</li>" in html
    assert "unrelated" not in html
    assert "3 calls in the last hour" in html
    conn.refresh_from_db()
    assert conn.status == "active"


def test_role_delete_and_member_remove_use_the_same_page(
    client: Client, org: Organization, admin: User, reviewer: User, setup: Any
) -> None:
    _, role, _, _ = setup
    client.force_login(admin)
    html = client.get(
        reverse("policies:delete", kwargs={"org_slug": org.slug, "role_id": role.pk})
    ).content.decode()
    assert 'name="confirmed" value="yes"' in html
    assert "<li>demo-agent</li>" in html
    membership = reviewer.memberships.get(organization=org)
    html = client.post(
        reverse("orgs:member_remove", kwargs={"org_slug": org.slug, "membership_id": membership.pk})
    ).content.decode()
    assert "reviewer@acme.test loses access to Acme immediately" in html
    assert reviewer.memberships.filter(organization=org).exists()


def test_no_browser_confirm_and_no_inline_handlers_in_the_confirm_templates() -> None:
    base = Path(settings.BASE_DIR)
    js = (base / "static/js/grantry.js").read_text()
    assert "confirm(" not in js
    for path in (base / "templates").rglob("*.html"):
        text = path.read_text()
        assert "data-confirm" not in text, path
    for name in ("includes/confirm.html", "includes/undo.html", "base.html"):
        text = (base / "templates" / name).read_text()
        assert not re.search(r"\son[a-z]+=", text), name
        assert "<script>" not in text, name
