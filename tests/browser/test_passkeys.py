"""Passkeys in headless Chromium with the DevTools virtual authenticator: a member of an
organization that requires MFA is sent to set up a second factor, adds a passkey
(WebAuthn through allauth + fido2), reaches the dashboard, and later signs in with the
passkey alone."""

from __future__ import annotations

import re
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from django.contrib.auth.models import User
from pytest_django.fixtures import Settings
from pytest_django.live_server_helper import LiveServer

from apps.audit.models import AuditEvent
from tests.factories import MembershipFactory, OrganizationFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-and-unusual-passphrase-9"


@pytest.fixture
def member_of_strict_org(settings: Settings) -> User:
    # live_server is http://localhost: a secure context for the browser, but fido2
    # checks for https unless told otherwise.
    settings.MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN = True
    org = OrganizationFactory(name="Strict Co", slug="strict", require_mfa=True)
    user = UserFactory(email="ada@strict.test")
    user.set_password(PASSWORD)
    user.save()
    EmailAddress.objects.update_or_create(
        user=user, email=user.email, defaults={"verified": True, "primary": True}
    )
    MembershipFactory(organization=org, user=user, role="member")
    return user


def add_virtual_authenticator(context: Any, page: Any) -> tuple[Any, str]:
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    added = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp, added["authenticatorId"]


def test_required_mfa_then_passkey_setup_and_passkey_login(
    browser: Any, live_server: LiveServer, member_of_strict_org: User
) -> None:
    base = live_server.url.replace("127.0.0.1", "localhost")
    context = browser.new_context()
    page = context.new_page()
    cdp, authenticator_id = add_virtual_authenticator(context, page)

    # 1. Password sign-in, then the org sends her to set up a second factor.
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Email").fill("ada@strict.test")
    page.get_by_label(re.compile(r"^Password:?$")).fill(PASSWORD)
    page.get_by_role("button", name=re.compile(r"^Sign In$", re.I)).click()
    page.wait_for_load_state()
    page.goto(f"{base}/o/strict/")
    assert page.url.endswith("/accounts/2fa/"), page.url
    assert "requires two-factor authentication" in page.content()
    assert AuditEvent.objects.filter(action="org.mfa_required_blocked").count() == 1

    # 2. She adds a passkey; the virtual authenticator answers navigator.credentials.create.
    page.goto(f"{base}/accounts/2fa/webauthn/add/")
    if "/accounts/reauthenticate/" in page.url:  # allauth asks for the password again
        page.get_by_label(re.compile(r"^Password:?$")).fill(PASSWORD)
        page.get_by_role("button", name="Confirm").click()
        page.wait_for_url(re.compile(r"/accounts/2fa/webauthn/add/"))
    page.get_by_label("Name").fill("Laptop passkey")
    page.get_by_label("Passwordless").check()
    page.locator("#mfa_webauthn_add").click()
    # The add page's own URL contains "webauthn/": wait until the browser has left it.
    page.wait_for_url(
        lambda url: (
            "/webauthn/add/" not in url
            and re.search(r"/accounts/2fa/(recovery-codes/|webauthn/)", url) is not None
        ),
        timeout=15000,
    )
    key = Authenticator.objects.get(user=member_of_strict_org, type=Authenticator.Type.WEBAUTHN)
    assert key.wrap().is_passwordless is True  # a discoverable credential (passkey)
    assert key.wrap().name == "Laptop passkey"
    credentials = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})
    assert len(credentials["credentials"]) == 1
    assert credentials["credentials"][0]["isResidentCredential"]
    assert AuditEvent.objects.filter(action="auth.mfa_enabled").exists()

    # 3. The dashboard opens now.
    page.goto(f"{base}/o/strict/")
    assert page.url.endswith("/o/strict/"), page.url
    assert page.get_by_role("heading", level=1).inner_text() == "Strict Co"

    # 4. Signed out, she signs in with the passkey alone (no password typed).
    context.clear_cookies()
    page.goto(f"{base}/accounts/login/")
    page.get_by_role("button", name="Sign in with a passkey").click()
    # The passkey sign-in runs in the page's script and then navigates: wait for that.
    page.wait_for_url(lambda url: "/accounts/login/" not in url, timeout=15000)
    page.goto(f"{base}/o/strict/")
    assert page.url.endswith("/o/strict/"), page.url
    sign_count = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})
    assert sign_count["credentials"][0]["signCount"] >= 1
    context.close()
