"""A NUL in a query parameter is 400 at the door, never a 500 from a filter that hands
it to PostgreSQL (schemathesis found `?scope=%00` on the inventory list)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from apps.accounts.services import personal_token_mint
from apps.organizations.models import Organization


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["scope=%00", "scope=%5Cu0000x%00", "provider=a%00b"])
def test_a_nul_in_an_api_query_is_a_json_400(org: Organization, admin: User, query: str) -> None:
    _token, raw = personal_token_mint(user=admin, organization=org, name="q")
    client = APIClient(HTTP_AUTHORIZATION=f"Bearer {raw}")
    response = client.get(f"/api/v1/orgs/{org.slug}/inventory/findings/?{query}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_input"
    assert "NUL" in response.json()["error"]["message"]


@pytest.mark.django_db
def test_a_nul_in_a_page_query_is_a_plain_400(org: Organization, admin: User) -> None:
    client = Client()
    client.force_login(admin)
    response = client.get(f"/o/{org.slug}/workers/?q=%00")
    assert response.status_code == 400
    assert b"NUL" in response.content


@pytest.mark.django_db
def test_ordinary_queries_pass(org: Organization, admin: User) -> None:
    _token, raw = personal_token_mint(user=admin, organization=org, name="q")
    client = APIClient(HTTP_AUTHORIZATION=f"Bearer {raw}")
    response = client.get(f"/api/v1/orgs/{org.slug}/inventory/findings/?scope=repo%20x")
    assert response.status_code == 200
