"""Members never meet a bare "403 Forbidden" (issue 13, #5): what their role cannot
open is not offered, and a forbidden URL gets a styled page saying why and who can
grant it."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

from apps.connections.models import Connection
from apps.organizations.models import Organization
from apps.policies.models import Role, Rule
from apps.workers.services import worker_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def stocked(org: Organization, owner: User) -> None:
    Connection.objects.create(
        organization=org, provider_key="sandbox", name="sandbox-demo", auth_type="oauth2"
    )
    role = Role.objects.create(organization=org, name="reader")
    Rule.objects.create(role=role, provider_key="sandbox", action_pattern="sandbox.list_tasks")
    worker_create(organization=org, name="agent", default_role=role, actor=owner)


def _links(html: str, org: Organization) -> set[str]:
    main = html  # sidebar and main content alike
    return {
        href
        for href in re.findall(r'href="(/o/[^"#?]+)', main)
        if href.startswith(f"/o/{org.slug}/")
    }


@pytest.mark.usefixtures("stocked")
@pytest.mark.parametrize("role_fixture", ["member", "reviewer"])
def test_every_link_a_role_is_shown_opens(
    client: Client, org: Organization, request: pytest.FixtureRequest, role_fixture: str
) -> None:
    client.force_login(request.getfixturevalue(role_fixture))
    seen: set[str] = set()
    queue = [f"/o/{org.slug}/"]
    while queue and len(seen) < 40:
        url = queue.pop()
        if url in seen:
            continue
        seen.add(url)
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        queue += sorted(_links(response.content.decode(), org) - seen)
    assert len(seen) >= 5


def test_members_do_not_see_reviewer_sections(
    client: Client, org: Organization, member: User
) -> None:
    client.force_login(member)
    nav = client.get(f"/o/{org.slug}/").content.decode().split('aria-label="Organization"')[1]
    nav = nav.split("</nav>")[0]
    assert ">Audit<" not in nav
    assert ">Workers<" not in nav
    assert ">Roles<" in nav
    assert ">Connections<" in nav


@pytest.mark.usefixtures("owner", "admin")
def test_forbidden_page_says_why_and_who_can_grant_it(
    client: Client, org: Organization, member: User
) -> None:
    client.force_login(member)
    response = client.get(f"/o/{org.slug}/audit/")
    assert response.status_code == 403
    html = response.content.decode()
    assert "This needs the Reviewer role or higher in Acme." in html
    assert "You are <strong>member</strong> of Acme" in html
    assert "owner@acme.test" in html
    assert "admin@acme.test" in html
    assert f'href="/o/{org.slug}/"' in html  # a way back
    assert '<link rel="stylesheet"' in html  # styled like every page
