"""Your own personal API tokens through the management API: list and revoke,
never anyone else's, never the token itself."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from apps.accounts.models import PersonalAPIToken
from apps.accounts.services import personal_token_mint
from apps.audit.models import AuditEvent
from apps.organizations.models import Organization
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db

BASE = "/api/v1/orgs/acme/personal-tokens/"


def bearer(raw: Any) -> APIClient:
    return APIClient(HTTP_AUTHORIZATION=f"Bearer {raw}")


def test_a_member_lists_only_their_own_tokens_without_secrets(
    org: Organization, member: User, admin: User, other_org: Organization
) -> None:
    mine, raw = personal_token_mint(user=member, organization=org, name="laptop")
    personal_token_mint(user=admin, organization=org, name="admin's")
    MembershipFactory(organization=other_org, user=member, role="owner")
    personal_token_mint(user=member, organization=other_org, name="elsewhere")
    response = bearer(raw).get(BASE)
    assert response.status_code == 200
    results = response.json()["results"]
    assert [(t["id"], t["name"], t["is_current"]) for t in results] == [
        (mine.public_id, "laptop", True)
    ]
    assert results[0]["last4"] == raw[-4:]
    assert results[0]["status"] == "active"
    assert raw not in response.content.decode()
    assert mine.digest not in response.content.decode()


def test_revoke_your_own_token_then_it_stops_working(org: Organization, member: User) -> None:
    other, other_raw = personal_token_mint(user=member, organization=org, name="ci")
    _mine, raw = personal_token_mint(user=member, organization=org, name="laptop")
    client = bearer(raw)
    response = client.post(f"{BASE}{other.public_id}/revoke/")
    assert response.status_code == 200
    assert response.json()["status"] == "revoked"
    assert bearer(other_raw).get(BASE).status_code == 401
    event = AuditEvent.objects.get(action="personal_token.revoked")
    assert event.token_id == other.public_id
    assert event.actor_id == str(member.pk)
    # Revoking the token in use works; the next request with it is refused.
    assert client.post(f"{BASE}{_mine.public_id}/revoke/").status_code == 200
    assert client.get(BASE).status_code == 401


def test_someone_elses_token_is_404_even_for_an_owner(
    org: Organization, owner: User, member: User
) -> None:
    theirs, _raw = personal_token_mint(user=member, organization=org, name="laptop")
    client = APIClient()
    client.force_login(owner)
    assert client.post(f"{BASE}{theirs.public_id}/revoke/").status_code == 404
    assert client.post(f"{BASE}nonexistent/revoke/").status_code == 404
    assert PersonalAPIToken.objects.get(pk=theirs.pk).revoked_at is None
    assert client.get(BASE).json()["results"] == []


def test_another_org_is_404(
    org: Organization, outsider: User, other_org: Organization, member: User
) -> None:
    theirs, _ = personal_token_mint(user=member, organization=org, name="laptop")
    _t, raw = personal_token_mint(user=outsider, organization=other_org, name="x")
    assert bearer(raw).get(BASE).status_code == 404
    assert bearer(raw).post(f"{BASE}{theirs.public_id}/revoke/").status_code == 404
    response = bearer(raw).post(f"/api/v1/orgs/globex/personal-tokens/{theirs.public_id}/revoke/")
    assert response.status_code == 404
    assert PersonalAPIToken.objects.get(pk=theirs.pk).revoked_at is None


def test_there_is_no_way_to_mint_through_the_api(org: Organization, member: User) -> None:
    _t, raw = personal_token_mint(user=member, organization=org, name="laptop")
    response = bearer(raw).post(BASE, {"name": "more"}, format="json")
    assert response.status_code == 405
    assert PersonalAPIToken.objects.count() == 1
