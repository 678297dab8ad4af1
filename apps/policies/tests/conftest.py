from __future__ import annotations

from typing import Any

import pytest

from apps.connections.models import Connection
from apps.organizations.models import Organization


def make_connection(
    org: Organization, name: str = "sandbox-demo", provider_key: str = "sandbox", **kw: Any
) -> Connection:
    return Connection.objects.create(
        organization=org, provider_key=provider_key, name=name, auth_type="oauth2", **kw
    )


@pytest.fixture
def sandbox_conn(org: Organization) -> Connection:
    return make_connection(org)


@pytest.fixture
def other_org_conn(other_org: Organization) -> Connection:
    return make_connection(other_org, name="globex-sandbox")
