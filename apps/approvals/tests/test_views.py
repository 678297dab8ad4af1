"""Dashboard: the Approvals queue, one approval, the decision form, email links."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core import mail
from django.db import connection
from django.test import Client

from apps.approvals.models import ApprovalLink, ApprovalSettings, ApprovalStatus
from apps.approvals.notify import notify_approvers_by_email
from apps.approvals.services import approval_claim_for_execution, approval_decide
from apps.approvals.tests.conftest import GatedAgent
from apps.organizations.models import Organization

pytestmark = pytest.mark.django_db


def queue(org: Organization) -> Any:
    return f"/o/{org.slug}/approvals/"


def page(approval: Any) -> Any:
    return f"/o/{approval.organization.slug}/approvals/{approval.public_id}/"


def test_the_queue_shows_what_who_and_why(client: Client, gated: GatedAgent, admin: User) -> None:
    approval = gated.request(reason="Duplicate of task 41")
    client.force_login(admin)
    response = client.get(queue(gated.organization))
    html = response.content.decode()
    assert response.status_code == 200
    assert approval.public_id in html
    assert "sandbox.delete_task" in html
    assert "cleanup-bot" in html
    assert "Duplicate of task 41" in html
    # The navigation links to the queue.
    assert f'href="/o/{gated.organization.slug}/approvals/"' in html


def test_the_page_shows_the_input_and_a_diff_against_the_last_approved_call(
    client: Client, gated: GatedAgent, admin: User
) -> None:
    gated.organization.store_broker_input = True
    gated.organization.save()
    earlier = gated.request(input={"task_id": 41})
    approval_decide(approval=earlier, actor=admin, approve=True)
    approval = gated.request(input={"task_id": 42})
    client.force_login(admin)
    html = client.get(page(approval)).content.decode()
    assert "&quot;task_id&quot;: 42" in html
    assert earlier.public_id in html  # the baseline of the diff
    assert re.search(r"<code>task_id</code></td><td><strong>changed</strong>", html)
    assert "<code>41</code>" in html
    assert "<code>42</code>" in html


def test_approvers_see_the_exact_input_while_it_is_pending_whatever_the_org_stores(
    client: Client, gated: GatedAgent, admin: User, reviewer: User
) -> None:
    """Issue 22 item 1: with store_broker_input off (the default) an eligible approver
    sees the real values and a truthful diff; the exact input is encrypted at rest and
    deleted once the request is decided."""
    assert not gated.organization.store_broker_input
    earlier = gated.request(input={"task_id": 201})
    approval_decide(approval=earlier, actor=admin, approve=True)
    earlier.refresh_from_db()
    assert earlier.sealed_input == ""  # purged when decided
    approval = gated.request(input={"task_id": 300})
    client.force_login(admin)
    html = client.get(page(approval)).content.decode()
    assert "&quot;task_id&quot;: 300" in html
    assert "values are redacted" not in html
    # The diff compares the real values: 201 then, 300 now.
    assert re.search(r"<code>task_id</code></td><td><strong>changed</strong>", html), html
    assert "<code>300</code>" in html
    same = gated.request(input={"task_id": 201}, reason="again")
    html = client.get(page(same)).content.decode()
    assert re.search(r"<code>task_id</code></td><td><span class=\"muted\">same</span>", html)
    # A reviewer (not an approver) sees only the shape.
    client.force_login(reviewer)
    html = client.get(page(approval)).content.decode()
    assert "values are redacted" in html
    assert ": 300" not in html
    # At rest the exact input is ciphertext.
    with connection.cursor() as cursor:
        cursor.execute("SELECT sealed_input FROM approvals_approval WHERE id = %s", [approval.pk])
        stored = cursor.fetchone()[0]
    assert stored
    assert b"300" not in bytes(stored)


def test_the_exact_input_is_deleted_when_the_request_expires_or_runs(
    gated: GatedAgent, admin: User
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from apps.approvals.services import approvals_expire

    expiring = gated.request(input={"task_id": 7})
    assert expiring.sealed_input
    approvals_expire(now=timezone.now() + timedelta(days=8))
    expiring.refresh_from_db()
    assert (expiring.status, expiring.sealed_input) == ("expired", "")

    approval = gated.request(input={"task_id": 8})
    approval_decide(approval=approval, actor=admin, approve=True)
    approval.refresh_from_db()
    assert approval.sealed_input == ""


def test_an_admin_approves_with_a_comment(client: Client, gated: GatedAgent, admin: User) -> None:
    approval = gated.request()
    client.force_login(admin)
    response = client.post(page(approval), {"decision": "approve", "comment": "checked"})
    assert response.status_code == 302
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.APPROVED
    assert approval.decisions.get().comment == "checked"


def test_the_workers_creator_cannot_approve_in_the_dashboard(
    client: Client, gated: GatedAgent, owner: User
) -> None:
    approval = gated.request()
    client.force_login(owner)
    html = client.get(page(approval)).content.decode()
    assert ">Approve</button>" not in html
    assert ">Deny</button>" in html
    response = client.post(page(approval), {"decision": "approve"})
    assert response.status_code == 403
    assert "cannot approve" in response.content.decode()
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.PENDING


def test_another_organization_gets_404(client: Client, gated: GatedAgent, outsider: User) -> None:
    approval = gated.request()
    client.force_login(outsider)
    assert client.get(page(approval)).status_code == 404
    assert client.post(page(approval), {"decision": "approve"}).status_code == 404
    own = f"/o/globex/approvals/{approval.public_id}/"
    assert client.get(own).status_code == 404
    assert client.post(own, {"decision": "approve"}).status_code == 404
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.PENDING


def test_approval_templates_have_no_inline_script_or_style() -> None:
    root = Path(settings.BASE_DIR) / "templates" / "approvals"
    for template in root.glob("*.html"):
        text = template.read_text()
        assert "<script" not in text, template
        assert "style=" not in text, template
        assert not re.search(r"\son[a-z]+\s*=", text), template  # no onclick= and friends


# --- email links ------------------------------------------------------------------------


def test_approvers_get_a_personal_single_use_link_that_only_opens_the_page(
    client: Client, gated: GatedAgent, admin: User, owner: User
) -> None:
    approval = gated.request()
    assert notify_approvers_by_email(approval.pk) == 1  # owner is excluded (separation)
    [message] = mail.outbox
    assert message.to == [admin.email]
    assert "Nothing is approved by opening this link" in message.body
    path = re.search(r"https?://[^/\s]+(/\S+)", str(message.body)).group(1)

    # Without a login: the login page, and the link is not spent.
    response = client.get(path)
    assert response.status_code == 302
    assert "login" in response["Location"]
    assert ApprovalLink.objects.get().used_at is None

    # Another member of the org cannot spend it.
    client.force_login(owner)
    assert client.get(path).status_code == 302
    assert ApprovalLink.objects.get().used_at is None

    client.force_login(admin)
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == page(approval)
    assert ApprovalLink.objects.get().used_at is not None
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.PENDING  # a link never approves

    response = client.get(path, follow=True)
    assert "already used" in response.content.decode()

    tampered = path.replace("/link/", "/link/x")
    assert client.get(tampered).status_code == 302


def test_no_email_once_decided(gated: GatedAgent, admin: User) -> None:
    approval = gated.request()
    approval_decide(approval=approval, actor=admin, approve=False)
    assert notify_approvers_by_email(approval.pk) == 0
    assert mail.outbox == []


# --- settings -----------------------------------------------------------------------------


def test_settings_page_keeps_secrets_out_and_audits(
    client: Client, gated: GatedAgent, admin: User, member: User
) -> None:
    from tests.factories import MembershipFactory

    url = f"/o/{gated.organization.slug}/approvals/settings/"
    client.force_login(member)
    assert client.get(url).status_code == 403
    client.force_login(admin)
    # The owner created the worker: a second admin makes two approvers possible.
    MembershipFactory(organization=gated.organization, role="admin")
    response = client.post(
        url,
        {
            "require_two_approvers": "on",
            "webhook_url": "https://hooks.slack.test/services/T000/B000/XXXXSECRET",
            "webhook_secret": "s3cret-s3cret-s3cret",
        },
    )
    assert response.status_code == 302
    row = ApprovalSettings.objects.get(organization=gated.organization)
    assert row.require_two_approvers is True
    assert row.webhook_url.endswith("XXXXSECRET")
    html = client.get(url).content.decode()
    assert "XXXXSECRET" not in html
    assert "s3cret" not in html
    assert "a URL is set, with a signing secret" in html
    from apps.audit.models import AuditEvent

    event = AuditEvent.objects.get(action="approval.settings_changed")
    assert "XXXXSECRET" not in str(event.metadata)
    assert "s3cret" not in str(event.metadata)
    # The stored column is ciphertext.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT webhook_url FROM approvals_approvalsettings")
        raw = bytes(cursor.fetchone()[0])
    assert b"XXXXSECRET" not in raw


def test_claimed_approvals_show_as_executed(client: Client, gated: GatedAgent, admin: User) -> None:
    approval = gated.request()
    approval_decide(approval=approval, actor=admin, approve=True)
    approval_claim_for_execution(approval_id=approval.public_id, binding=gated.binding())
    client.force_login(admin)
    html = client.get(queue(gated.organization) + "?show=all").content.decode()
    assert "Executed" in html
