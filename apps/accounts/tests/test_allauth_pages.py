"""Every allauth page Grantry uses renders with Grantry's layout."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from allauth.account.models import EmailAddress, EmailConfirmationHMAC
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value
from django.core import mail
from django.test import Client
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.organizations.models import Organization
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

GRANTRY_LAYOUT = 'class="topbar"'


def assert_grantry_page(response: Any, *expected: str) -> str:
    assert response.status_code == 200, response.status_code
    html = response.content.decode()
    assert GRANTRY_LAYOUT in html
    assert "grantry.css" in html
    for text in expected:
        assert text in html, text
    return html


def login(client: Any, email: Any, password: Any = PASSWORD) -> Any:
    response = client.post(reverse("account_login"), {"login": email, "password": password})
    assert response.status_code == 302, response.content.decode()[:2000]
    return response


@pytest.mark.parametrize(
    ("url_name", "expected"),
    [
        ("account_login", 'for="id_login"'),
        ("account_signup", "Organization name"),
        ("account_reset_password", 'for="id_email"'),
        ("account_reset_password_done", "<h1"),
        ("account_reset_password_from_key_done", "<h1"),
        ("account_email_verification_sent", "<h1"),
        ("account_inactive", "<h1"),
    ],
)
def test_public_allauth_pages_render(client: Client, url_name: str, expected: str) -> None:
    html = assert_grantry_page(client.get(reverse(url_name)), expected)
    assert 'class="entrance"' in html


def test_signup_form_shows_field_errors_with_labels(client: Client) -> None:
    response = client.post(
        reverse("account_signup"),
        {"email": "not-an-email", "password1": "short", "password2": "other"},
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert 'class="errorlist' in html
    assert '<label for="id_email"' in html
    assert 'aria-invalid="true"' in html or "field-error" in html


def test_email_confirmation_page_renders(client: Client) -> None:
    user = UserFactory(verified=False)
    address = EmailAddress.objects.create(user=user, email=user.email, primary=True)
    key = EmailConfirmationHMAC(address).key
    assert_grantry_page(client.get(reverse("account_confirm_email", args=[key])), user.email)


def test_password_reset_flow_pages_render_and_reset_is_audited(
    client: Client, org: Organization
) -> None:
    from apps.organizations.models import Membership

    user = UserFactory(email="forgetful@example.test")
    Membership.objects.create(user=user, organization=org, role="member")
    response = client.post(reverse("account_reset_password"), {"email": user.email})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    link = re.search(
        r"https?://[^/\s]+(/accounts/password/reset/key/\S+/)", str(mail.outbox[0].body)
    )
    assert link, mail.outbox[0].body
    response = client.get(link.group(1), follow=True)  # allauth moves the key into the session
    assert_grantry_page(response, 'for="id_password1"')
    new_password = "a-brand-new-passphrase-42"
    response = client.post(
        response.redirect_chain[-1][0] if response.redirect_chain else link.group(1),
        {"password1": new_password, "password2": new_password},
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password(new_password)
    event = AuditEvent.objects.get(action="auth.password_reset", organization=org)
    assert event.actor_id == str(user.pk)
    assert new_password not in str(event.metadata)


def test_manage_pages_render_for_logged_in_user(client: Client) -> None:
    user = UserFactory(email="pages@example.test")
    login(client, user.email)
    for name, text in [
        ("account_email", user.email),
        ("account_change_password", 'for="id_oldpassword"'),
        ("account_logout", "<form"),
        ("mfa_index", "<h1"),
    ]:
        html = assert_grantry_page(client.get(reverse(name)), text)
        if name != "account_logout":
            assert 'class="subnav"' in html


def test_mfa_totp_activate_recovery_codes_deactivate_and_authenticate(client: Client) -> None:
    user = UserFactory(email="mfa@example.test")
    login(client, user.email)

    response = client.get(reverse("mfa_activate_totp"))
    if response.status_code == 302 and "reauthenticate" in response["Location"]:
        # allauth asks for the password again before changing MFA: that page too.
        assert_grantry_page(client.get(response["Location"]), 'for="id_password"')
        response = client.post(response["Location"], {"password": PASSWORD})
        assert response.status_code == 302
        response = client.get(reverse("mfa_activate_totp"))
    html = assert_grantry_page(response, 'for="id_code"')
    # The QR code is inline SVG: a data: image is blocked by the site's CSP (img-src 'self').
    assert 'data-testid="totp-qr"' in html
    assert "<svg" in html
    assert 'src="data:' not in html
    secret = client.session["mfa.totp.secret"]
    code = format_hotp_value(hotp_value(secret, int(time.time()) // 30))
    response = client.post(reverse("mfa_activate_totp"), {"code": code})
    assert response.status_code == 302
    assert Authenticator.objects.filter(user=user, type="totp").exists()
    assert AuditEvent.objects.filter(action="auth.mfa_enabled", actor_id=str(user.pk)).exists()

    assert_grantry_page(client.get(reverse("mfa_view_recovery_codes")), "<h1")
    assert_grantry_page(client.get(reverse("mfa_generate_recovery_codes")), "<form")
    assert_grantry_page(client.get(reverse("mfa_deactivate_totp")), "<form")

    # A new login now stops at the second factor.
    client.post(reverse("account_logout"))
    login(client, user.email)
    assert_grantry_page(client.get(reverse("mfa_authenticate")), 'for="id_code"')
    valid = hotp_value(secret, int(time.time()) // 30)
    wrong = format_hotp_value((valid + 1) % 1_000_000)
    response = client.post(reverse("mfa_authenticate"), {"code": wrong})
    assert response.status_code == 200  # wrong code: the form again, with an error
    failed = AuditEvent.objects.get(action="auth.mfa_failed", actor_id=str(user.pk))
    assert failed.outcome == "failure"
    assert wrong not in str(failed.metadata)

    # In with a recovery code (the TOTP code of this period was used already),
    # then deactivate: audited.
    from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes

    rc = Authenticator.objects.get(user=user, type="recovery_codes")
    code = RecoveryCodes(rc).get_unused_codes()[0]
    response = client.post(reverse("mfa_authenticate"), {"code": code})
    assert response.status_code == 302
    response = client.post(reverse("mfa_deactivate_totp"))
    assert response.status_code == 302
    if "reauthenticate" in response["Location"]:
        # allauth replays the deactivation once the password is confirmed.
        assert client.post(response["Location"], {"password": PASSWORD}).status_code == 302
    assert not Authenticator.objects.filter(user=user, type="totp").exists()
    assert AuditEvent.objects.filter(action="auth.mfa_disabled", actor_id=str(user.pk)).exists()
