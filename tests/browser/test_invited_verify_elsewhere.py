"""An invited user who verifies their email where the invitation link was never
opened (another browser) sees the invitation waiting with an Accept button, not
"You are not in an organization yet" (issue 13, #6)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from pytest_django.live_server_helper import LiveServer

from apps.organizations.models import Membership, Organization
from apps.organizations.services import invitation_create
from tests.browser.test_signup_invite_flow import PASSWORD, confirm_email, link_from_last_email

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_invitee_verifying_in_another_browser_accepts_from_the_landing_page(
    open_as: Any, live_server: LiveServer, org: Organization, owner: User
) -> None:
    invitation_create(
        organization=org,
        email="bob@acme.test",
        role="reviewer",
        actor_membership=owner.memberships.get(organization=org),
    )
    invitation_path = link_from_last_email("/invitations/", "bob@acme.test")
    base = live_server.url
    page = open_as(owner)  # starts Chromium; Bob gets his own, logged-out context
    bob = page.context.browser.new_context().new_page()
    # Bob opens the link and signs up in one browser …
    bob.goto(base + invitation_path)
    bob.get_by_role("link", name="Sign up to accept").click()
    bob.get_by_label("Email").fill("bob@acme.test")
    bob.get_by_label(re.compile(r"^Password:?$")).fill(PASSWORD)
    bob.get_by_label("Password (again)").fill(PASSWORD)
    bob.get_by_role("button", name="Sign up").click()
    bob.wait_for_load_state()
    # … and verifies in another, where the invitation was never opened.
    other = page.context.browser.new_context().new_page()
    confirm_email(other, base, "bob@acme.test")
    if "/accounts/login/" in other.url:
        other.get_by_label("Email").fill("bob@acme.test")
        other.get_by_label(re.compile(r"^Password:?$")).fill(PASSWORD)
        other.get_by_role("button", name="Sign In", exact=True).click()
        other.wait_for_load_state()
    other.goto(base + "/")
    assert "You are not in an organization yet" not in other.content()
    assert other.get_by_role("heading", level=1).inner_text() == "You have been invited"
    other.get_by_role("button", name="Accept and join Acme").click()
    other.wait_for_load_state()
    assert re.search(r"/o/acme/$", other.url), other.url
    assert Membership.objects.get(user__email="bob@acme.test", organization=org).role == "reviewer"
