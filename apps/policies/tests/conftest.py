from __future__ import annotations

import pytest

from apps.connections.models import Connection


def make_connection(org, name="sandbox-demo", provider_key="sandbox", **kw):
    return Connection.objects.create(
        organization=org, provider_key=provider_key, name=name, auth_type="oauth2", **kw
    )


@pytest.fixture
def sandbox_conn(org):
    return make_connection(org)


@pytest.fixture
def other_org_conn(other_org):
    return make_connection(other_org, name="globex-sandbox")
