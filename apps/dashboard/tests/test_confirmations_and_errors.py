"""Confirmations and errors a new admin meets (issue 27, #9): a role that cannot be
deleted says why instead of offering Delete; the kill switch says "the only token", not
"All 1 token"; the verification email speaks Grantry, not "Hello from 127.0.0.1";
an invitee's sign-up form starts with the invited address; a 403 logs one line, not a
traceback."""

from __future__ import annotations

import logging
import re

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client
from django.urls import reverse

from apps.organizations.models import Organization
from apps.organizations.services import invitation_create
from apps.policies.models import Role
from apps.workers.services import token_mint, token_revoke, worker_create

pytestmark = pytest.mark.django_db


def test_a_role_in_use_says_why_it_cannot_be_deleted(
    client: Client, org: Organization, admin: User
) -> None:
    used = Role.objects.create(organization=org, name="used")
    other = Role.objects.create(organization=org, name="other")
    unused = Role.objects.create(organization=org, name="unused")
    worker = worker_create(organization=org, name="triage-bot", default_role=other, actor=admin)
    # Only a revoked token names the role: deletion is still refused (PROTECT).
    token, _ = token_mint(worker=worker, role=used, actor=admin, name="old")
    token_revoke(token=token, actor=admin)
    client.force_login(admin)

    page = client.get(f"/o/{org.slug}/roles/{used.pk}/").content.decode()
    assert "This role cannot be deleted" in page
    assert "used by 1 worker token (old)." in page
    assert f"/roles/{used.pk}/delete/" not in page
    refused = client.post(f"/o/{org.slug}/roles/{used.pk}/delete/", {"confirmed": "yes"})
    assert refused.status_code == 302
    assert Role.objects.filter(pk=used.pk).exists()  # the page told the truth

    page = client.get(f"/o/{org.slug}/roles/{other.pk}/").content.decode()
    assert "triage-bot" in page
    assert "This role cannot be deleted" in page

    page = client.get(f"/o/{org.slug}/roles/{unused.pk}/").content.decode()
    assert "This role cannot be deleted" not in page
    assert f"/roles/{unused.pk}/delete/" in page


def test_kill_switch_grammar(client: Client, org: Organization, admin: User) -> None:
    role = Role.objects.create(organization=org, name="reader")
    worker = worker_create(organization=org, name="bot", default_role=role, actor=admin)
    token_mint(worker=worker, actor=admin, name="only")
    client.force_login(admin)
    page = client.get(f"/o/{org.slug}/workers/kill-switch/").content.decode()
    assert "The only token (1 worker) stops working immediately" in page
    assert "All 1 token" not in page
    token_mint(worker=worker, actor=admin, name="second")
    page = client.get(f"/o/{org.slug}/workers/kill-switch/").content.decode()
    assert "All 2 tokens of 1 worker stop working immediately" in page


def test_verification_email_in_grantrys_words(client: Client) -> None:
    client.post(
        "/accounts/signup/",
        {
            "email": "first-hour@example.test",
            "password1": "a-long-and-unusual-passphrase-9",
            "password2": "a-long-and-unusual-passphrase-9",
        },
    )
    (message,) = mail.outbox
    body = str(message.body)
    assert "Hello from" not in body
    assert "has given your email address" not in body
    assert "testserver" not in body.split("http")[0]
    assert "creating a Grantry account with this email address, first-hour@example.test" in body
    assert re.search(r"http://testserver/accounts/confirm-email/\S+", body)


def test_the_invitees_sign_up_form_has_the_invited_address(
    client: Client, org: Organization, owner: User
) -> None:
    from apps.organizations.models import Membership

    issued = invitation_create(
        organization=org,
        actor_membership=Membership.objects.get(organization=org, user=owner),
        email="newcomer@example.test",
        role="reviewer",
    )
    accept = client.get(
        reverse("invitations:accept", kwargs={"key": issued.key}), follow=True
    ).content.decode()
    link = re.search(r'href="(/accounts/signup/\?email=[^"]+)"', accept)
    assert link is not None, accept
    signup = client.get(link.group(1).replace("&amp;", "&")).content.decode()
    field = re.search(r'<input[^>]*name="email"[^>]*>', signup)
    assert field is not None
    assert 'value="newcomer@example.test"' in field.group(0)


def test_a_403_logs_one_line_without_a_traceback(
    client: Client, org: Organization, member: User, caplog: pytest.LogCaptureFixture
) -> None:
    client.force_login(member)
    with caplog.at_level(logging.WARNING, logger="django.request"):
        assert client.get(f"/o/{org.slug}/workers/new/").status_code == 403
    records = [r for r in caplog.records if r.name == "django.request"]
    assert records, "no django.request record"
    assert all(r.exc_info is None for r in records)
    assert any("Forbidden" in r.getMessage() for r in records)
