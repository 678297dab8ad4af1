"""The rule editor starts from the organization's connected providers, not from the
alphabet's first (Airtable) (issue 27, #7)."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

from apps.connections.models import Connection
from apps.organizations.models import Organization
from apps.policies.models import Role

pytestmark = pytest.mark.django_db


def picker_options(html: str) -> list[str]:
    picker = html.split('id="id_provider"', 1)[1].split("</select>", 1)[0]
    return re.findall(r'<option value="([^"]+)"', picker)


def test_the_provider_picker_starts_with_a_connected_provider(
    client: Client, org: Organization, admin: User
) -> None:
    role = Role.objects.create(organization=org, name="reader")
    client.force_login(admin)
    url = f"/o/{org.slug}/roles/{role.pk}/rules/new/"
    before = picker_options(client.get(url).content.decode())
    assert before[0] != "sandbox"  # nothing connected: the plain order
    Connection.objects.create(
        organization=org, provider_key="sandbox", name="sbx", auth_type="api_key", api_key="k"
    )
    options = picker_options(client.get(url).content.decode())
    assert options[0] == "sandbox"
    assert sorted(options) == sorted(before)  # the same providers, each once
