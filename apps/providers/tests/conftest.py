"""Fixtures shared by the provider catalog tests."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from apps.organizations.models import Organization
from apps.providers.models import CustomProvider
from apps.providers.services import custom_action_create, custom_provider_create


@pytest.fixture
def crm(org: Organization, admin: User) -> CustomProvider:
    provider = custom_provider_create(
        organization=org,
        actor=admin,
        slug="crm",
        display_name="Acme CRM",
        auth_type="api_key",
        api_base_url="https://crm.example.com/api",
    )
    custom_action_create(
        provider=provider,
        actor=admin,
        name="get_item",
        description="Get one item by id.",
        action_class="read",
        method="GET",
        path="/items/{item_id}",
        input_schema={
            "type": "object",
            "required": ["item_id"],
            "properties": {"item_id": {"type": "integer", "description": "Item id."}},
        },
    )
    return provider
