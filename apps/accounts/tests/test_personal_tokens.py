"""Personal API tokens: the page, the authentication, and the org binding."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.models import PersonalAPIToken
from apps.accounts.services import personal_token_mint, personal_token_revoke
from apps.audit.models import AuditEvent
from apps.organizations.models import Membership, Organization

pytestmark = pytest.mark.django_db


def api_with(raw: Any) -> Any:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def workers_url(org: Organization) -> Any:
    return f"/api/v1/orgs/{org.slug}/workers/"


def test_page_mints_shows_once_and_revokes(org: Organization, admin: User) -> None:
    client = Client()
    client.force_login(admin)
    assert client.get("/accounts/tokens/").status_code == 200
    response = client.post(
        "/accounts/tokens/", {"name": "terraform", "organization": org.pk, "expires_in_days": 30}
    )
    assert response.status_code == 302
    page = client.get("/accounts/tokens/")
    assert "no-store" in page["Cache-Control"]
    raw = re.search(r"gryp_[0-9A-Za-z]{49}", page.content.decode()).group(0)
    assert api_with(raw).get(workers_url(org)).status_code == 200
    again = client.get("/accounts/tokens/").content.decode()
    assert raw not in again
    assert "terraform" in again

    token = PersonalAPIToken.objects.get(user=admin)
    assert (
        client.post(f"/accounts/tokens/{token.public_id}/revoke/", {"confirmed": "yes"}).status_code
        == 302
    )
    response = api_with(raw).get(workers_url(org))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_invalid"
    assert {"personal_token.minted", "personal_token.revoked"} <= set(
        AuditEvent.objects.values_list("action", flat=True)
    )


@pytest.mark.usefixtures("org")
def test_cannot_mint_for_an_org_you_are_not_in(other_org: Organization, admin: User) -> None:
    client = Client()
    client.force_login(admin)
    response = client.post(
        "/accounts/tokens/",
        {"name": "sneaky", "organization": other_org.pk, "expires_in_days": 30},
    )
    assert response.status_code == 200  # form error, nothing minted
    assert not PersonalAPIToken.objects.exists()


def test_someone_elses_token_cannot_be_revoked(
    org: Organization, admin: User, reviewer: User
) -> None:
    token, raw = personal_token_mint(user=admin, organization=org, name="mine")
    client = Client()
    client.force_login(reviewer)
    assert client.post(f"/accounts/tokens/{token.public_id}/revoke/").status_code == 404
    assert api_with(raw).get(workers_url(org)).status_code == 200


def test_expiry_is_mandatory_and_capped(org: Organization, admin: User) -> None:
    with pytest.raises(ValidationError):
        personal_token_mint(user=admin, organization=org, name="x", expires_in_days=367)
    org.max_token_days = 5
    org.save()
    with pytest.raises(ValidationError):
        personal_token_mint(user=admin, organization=org, name="x", expires_in_days=6)
    token, _ = personal_token_mint(user=admin, organization=org, name="x", expires_in_days=5)
    assert token.expires_at <= timezone.now() + timedelta(days=5)


def test_acts_with_the_current_org_role(org: Organization, admin: User) -> None:
    _, raw = personal_token_mint(user=admin, organization=org, name="ci")
    api = api_with(raw)
    assert api.post(workers_url(org), {}, format="json").status_code == 400  # admin may write
    Membership.objects.filter(user=admin, organization=org).update(role="reviewer")
    assert api.get(workers_url(org)).status_code == 200
    assert api.post(workers_url(org), {}, format="json").status_code == 403
    Membership.objects.filter(user=admin, organization=org).delete()
    assert api.get(workers_url(org)).status_code == 404


@pytest.mark.usefixtures("admin")
def test_cross_org_personal_token_is_404_even_for_a_member_of_both(
    org: Organization, other_org: Organization, outsider: User
) -> None:
    _, raw = personal_token_mint(user=outsider, organization=other_org, name="globex")
    # outsider is not in org: 404
    assert api_with(raw).get(workers_url(org)).status_code == 404
    Membership.objects.create(organization=org, user=outsider, role="owner")
    # now a member of org too, but the token is bound to other_org: still 404
    assert api_with(raw).get(workers_url(org)).status_code == 404
    assert api_with(raw).get(workers_url(other_org)).status_code == 200


def test_expired_and_malformed_tokens(org: Organization, admin: User) -> None:
    token, raw = personal_token_mint(user=admin, organization=org, name="old")
    PersonalAPIToken.objects.filter(pk=token.pk).update(expires_at=timezone.now())
    response = api_with(raw).get(workers_url(org))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_expired"
    response = api_with("gryp_nonsense").get(workers_url(org))
    assert response.json()["error"]["code"] == "token_malformed"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_revoke_is_idempotent_and_usage_is_throttled(org: Organization, admin: User) -> None:
    token, raw = personal_token_mint(user=admin, organization=org, name="x")
    api_with(raw).get(workers_url(org))
    token.refresh_from_db()
    first_use = token.last_used_at
    assert first_use is not None
    api_with(raw).get(workers_url(org))
    token.refresh_from_db()
    assert token.last_used_at == first_use
    personal_token_revoke(token=token, actor=admin)
    personal_token_revoke(token=token, actor=admin)
    assert AuditEvent.objects.filter(action="personal_token.revoked").count() == 1


def test_raw_token_is_not_in_str_or_repr(org: Organization, admin: User) -> None:
    token, raw = personal_token_mint(user=admin, organization=org, name="x")
    assert raw not in str(token)
    assert raw not in repr(token)
    assert token.digest not in str(token)
    assert token.digest not in repr(token)
