"""The "require MFA" organization setting: only an admin with a second factor can turn
it on; members without one are sent to set one up (dashboard) or refused (management
API), and the first refusal in a session is audited."""

from __future__ import annotations

from typing import Any

import pytest
from allauth.mfa.models import Authenticator
from django.contrib.auth.models import User
from django.test import Client

from apps.audit.models import AuditEvent
from apps.organizations.models import Organization

pytestmark = pytest.mark.django_db


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _give(user: Any, kind: Any = Authenticator.Type.TOTP) -> Authenticator:
    return Authenticator.objects.create(user=user, type=kind, data={})


def _settings(client: Any, require: bool) -> Any:
    data = {"name": "Acme", "max_token_days": ""}
    if require:
        data["require_mfa"] = "on"
    return client.post("/o/acme/settings/", data)


def test_an_admin_without_a_second_factor_cannot_require_one(
    org: Organization, admin: User
) -> None:
    client = _client(admin)
    response = _settings(client, True)
    assert response.status_code == 400
    assert "Set up a second factor for yourself first" in response.content.decode()
    org.refresh_from_db()
    assert org.require_mfa is False
    # Recovery codes alone are not a second factor.
    _give(admin, Authenticator.Type.RECOVERY_CODES)
    assert _settings(client, True).status_code == 400


def test_requiring_mfa_is_audited_and_blocks_members_without_one(
    org: Organization, admin: User, member: User
) -> None:
    _give(admin, Authenticator.Type.WEBAUTHN)
    response = _settings(_client(admin), True)
    assert response.status_code == 302
    org.refresh_from_db()
    assert org.require_mfa is True
    event = AuditEvent.objects.get(action="org.updated")
    assert event.metadata["changes"]["require_mfa"] == {"from": False, "to": True}

    blocked = _client(member)
    for path in ("/o/acme/", "/o/acme/connections/", "/o/acme/settings/"):
        response = blocked.get(path)
        assert response.status_code == 302
        assert response["Location"] == "/accounts/2fa/"
    setup = blocked.get("/accounts/2fa/")
    assert setup.status_code == 200
    assert "requires two-factor authentication" in setup.content.decode()
    api = blocked.get("/api/v1/orgs/acme/connections/")
    assert api.status_code == 403
    assert api.json()["error"]["code"] == "mfa_required"
    # Audited once per session, not on every page.
    refusals = AuditEvent.objects.filter(action="org.mfa_required_blocked")
    assert refusals.count() == 1
    assert refusals.get().outcome == "denied"
    assert refusals.get().actor_id == str(member.pk)

    _give(member, Authenticator.Type.TOTP)
    assert blocked.get("/o/acme/").status_code == 200
    # Now only the role decides: a member reads connections (the shared ones and their
    # own) but not workers through the API.
    assert blocked.get("/api/v1/orgs/acme/connections/").status_code == 200
    after = blocked.get("/api/v1/orgs/acme/workers/").json()["error"]["code"]
    assert after == "permission_denied"


@pytest.mark.usefixtures("org")
def test_other_organizations_and_outsiders_are_unaffected(
    other_org: Organization, admin: User, outsider: User
) -> None:
    _give(admin)
    _settings(_client(admin), True)
    outside = _client(outsider)
    assert outside.get("/o/acme/").status_code == 404  # still no hint the org exists
    assert outside.get(f"/o/{other_org.slug}/").status_code == 200


def test_turning_it_off_is_audited_too(org: Organization, admin: User) -> None:
    _give(admin)
    client = _client(admin)
    _settings(client, True)
    assert _settings(client, False).status_code == 302
    org.refresh_from_db()
    assert org.require_mfa is False
    changes = [e.metadata["changes"] for e in AuditEvent.objects.filter(action="org.updated")]
    assert {"require_mfa": {"from": True, "to": False}} in changes
