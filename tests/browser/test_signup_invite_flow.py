"""The whole first-day story in headless Chromium against a live server:
sign up → verify email → land in the new org → invite a reviewer → the
reviewer signs up through the link, verifies and accepts → the reviewer sees
Members read-only, and a forged role-change POST gets 403."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core import mail
from pytest_django.live_server_helper import LiveServer

from apps.organizations.models import Membership, OrgRole

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-and-unusual-passphrase-9"


def link_from_last_email(pattern: str, to: str) -> str:
    """The path of the first link matching `pattern` in the newest email to `to`."""
    messages = [m for m in mail.outbox if to in m.to]
    assert messages, f"no email to {to}"
    urls = [u for u in re.findall(r"https?://\S+", str(messages[-1].body)) if pattern in u]
    assert urls, messages[-1].body
    return urlsplit(urls[0]).path


def sign_up(page: Any, base: str, email: str, org_name: str = "") -> None:
    page.goto(f"{base}/accounts/signup/")
    page.get_by_label("Email").fill(email)
    if org_name:
        page.get_by_label("Organization name").fill(org_name)
    page.get_by_label(re.compile(r"^Password:?$")).fill(PASSWORD)
    page.get_by_label("Password (again)").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_load_state()


def confirm_email(page: Any, base: str, email: str) -> None:
    path = link_from_last_email("/accounts/confirm-email/", email)
    page.goto(base + path)
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_load_state()


def test_signup_verify_invite_accept_reviewer_is_read_only(
    browser: Any, live_server: LiveServer
) -> None:
    base = live_server.url

    # 1. Alice signs up and creates "Wonderland".
    alice = browser.new_context().new_page()
    sign_up(alice, base, "alice@wonderland.test", "Wonderland")
    assert "verify" in alice.content().lower() or "confirm" in alice.content().lower()

    # 2. She verifies her email and lands in her new organization.
    confirm_email(alice, base, "alice@wonderland.test")
    assert re.search(r"/o/wonderland/$", alice.url), alice.url
    assert alice.get_by_role("heading", level=1).inner_text() == "Wonderland"

    # 3. She invites Bob as a reviewer from the Members page.
    alice.get_by_role("navigation", name="Organization").get_by_role("link", name="Members").click()
    alice.get_by_label("Email address").fill("bob@wonderland.test")
    alice.get_by_label("Role").select_option("reviewer")
    alice.get_by_role("button", name="Send invitation").click()
    alice.wait_for_load_state()
    assert "Invitation sent to bob@wonderland.test" in alice.content()
    invitation_path = link_from_last_email("/invitations/", "bob@wonderland.test")

    # 4. Bob (another browser) opens the link, signs up, verifies, accepts.
    bob = browser.new_context().new_page()
    bob.goto(base + invitation_path)
    assert "Join Wonderland" in bob.content()
    bob.get_by_role("link", name="Sign up to accept").click()
    assert "You are joining" in bob.content()
    sign_up(bob, base, "bob@wonderland.test")
    confirm_email(bob, base, "bob@wonderland.test")
    assert bob.url.endswith(invitation_path), bob.url
    bob.get_by_role("button", name="Accept invitation").click()
    bob.wait_for_load_state()
    assert re.search(r"/o/wonderland/$", bob.url), bob.url
    bob_membership = Membership.objects.get(user__email="bob@wonderland.test")
    assert bob_membership.role == OrgRole.REVIEWER
    assert Membership.objects.filter(user__email="bob@wonderland.test").count() == 1

    # 5. As a reviewer, Bob sees the members but no admin actions.
    bob.get_by_role("navigation", name="Organization").get_by_role("link", name="Members").click()
    bob.wait_for_load_state()
    main = bob.locator("main")
    assert "alice@wonderland.test" in main.inner_text()
    assert main.locator("form").count() == 0
    assert (
        bob.get_by_role("button", name=re.compile("Change role|Remove|Send invitation")).count()
        == 0
    )

    # 6. A forged POST (with a valid CSRF token) to demote Alice gets 403.
    alice_membership = Membership.objects.get(user__email="alice@wonderland.test")
    status = bob.evaluate(
        """async (url) => {
            const csrf = document.cookie.split('; ')
                .find(c => c.startsWith('csrftoken=')).split('=')[1];
            const r = await fetch(url, {method: 'POST', headers: {'X-CSRFToken': csrf,
                'Content-Type': 'application/x-www-form-urlencoded'}, body: 'role=member'});
            return r.status;
        }""",
        f"{base}/o/wonderland/members/{alice_membership.pk}/role/",
    )
    assert status == 403
    alice_membership.refresh_from_db()
    assert alice_membership.role == OrgRole.OWNER
