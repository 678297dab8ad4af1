"""Keyset pages with search for the dashboard's lists (issue 13, #11)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from apps.core.pagination import PAGE_SIZE, keyset_page
from apps.organizations.models import Organization
from apps.policies.models import Role
from apps.workers.models import Worker

pytestmark = pytest.mark.django_db


def _workers(org: Organization, role: Any, count: Any) -> None:
    Worker.objects.bulk_create(
        Worker(organization=org, name=f"agent-{i:03d}", default_role=role) for i in range(count)
    )


@pytest.fixture
def role(org: Organization) -> Role:
    return Role.objects.create(organization=org, name="reader")


def test_keyset_walks_forward_and_back_without_gaps_or_repeats(
    org: Organization, role: Role
) -> None:
    _workers(org, role, 120)
    rows = Worker.objects.filter(organization=org)
    seen, page = [], keyset_page(rows, order="name")
    pages = [page]
    while True:
        seen += [w.name for w in page]
        if page.after is None:
            break
        page = keyset_page(rows, order="name", after=page.after)
        pages.append(page)
    assert seen == [f"agent-{i:03d}" for i in range(120)]
    assert [len(p) for p in pages] == [PAGE_SIZE, PAGE_SIZE, 20]
    assert pages[0].before is None
    assert pages[-1].after is None
    # Back from the last page gives the middle page again, exactly.
    back = keyset_page(rows, order="name", before=pages[-1].before)
    assert [w.pk for w in back] == [w.pk for w in pages[1]]
    assert back.before is not None
    assert back.after is not None


def test_descending_keyset_and_a_foreign_cursor_starts_over(
    org: Organization, other_org: Organization, role: Role
) -> None:
    _workers(org, role, 60)
    foreign = Worker.objects.create(
        organization=other_org,
        name="theirs",
        default_role=Role.objects.create(organization=other_org, name="r"),
    )
    rows = Worker.objects.filter(organization=org)
    first = keyset_page(rows, order="id", descending=True)
    ids = sorted(rows.values_list("id", flat=True), reverse=True)
    assert [w.pk for w in first] == ids[:PAGE_SIZE]
    second = keyset_page(rows, order="id", descending=True, after=first.after)
    assert [w.pk for w in second] == ids[PAGE_SIZE:]
    # Another organization's id is not a cursor here: the first page again.
    assert [w.pk for w in keyset_page(rows, order="name", after=foreign.pk)][:1] == [
        rows.order_by("name").first().pk
    ]


def test_workers_page_shows_one_page_with_next_link_and_search(
    client: Client, org: Organization, admin: User, role: Role
) -> None:
    _workers(org, role, 75)
    client.force_login(admin)
    url = reverse("workers:list", kwargs={"org_slug": org.slug})
    html = client.get(url).content.decode()
    assert "agent-049" in html
    assert "agent-050" not in html
    next_link = re.search(r'href="(\?after=\d+)" rel="next"', html).group(1)
    html2 = client.get(url + next_link).content.decode()
    assert "agent-050" in html2
    assert "agent-074" in html2
    assert "agent-049" not in html2
    assert 'rel="prev"' in html2
    assert 'rel="next"' not in html2
    found = client.get(url, {"q": "agent-07"}).content.decode()
    assert "agent-070" in found
    assert "agent-001" not in found
    assert 'value="agent-07"' in found  # the box keeps the search
    none = client.get(url, {"q": "nope"}).content.decode()
    assert "No worker matches" in none


def test_search_is_kept_in_the_page_links(
    client: Client, org: Organization, admin: User, role: Role
) -> None:
    _workers(org, role, 130)
    client.force_login(admin)
    url = reverse("workers:list", kwargs={"org_slug": org.slug})
    html = client.get(url, {"q": "agent-0"}).content.decode()
    assert re.search(r'href="\?q=agent-0&amp;after=\d+" rel="next"', html)


def test_roles_page_is_paginated_with_rule_counts(
    client: Client, org: Organization, admin: User
) -> None:
    Role.objects.bulk_create(Role(organization=org, name=f"role-{i:03d}") for i in range(60))
    client.force_login(admin)
    url = reverse("policies:list", kwargs={"org_slug": org.slug})
    html = client.get(url).content.decode()
    assert "role-049" in html
    assert "role-050" not in html
    assert "none: denies everything" in html
    html = client.get(url, {"q": "role-05"}).content.decode()
    assert "role-055" in html
    assert "role-001" not in html


def test_members_page_is_paginated_by_email(client: Client, org: Organization, owner: User) -> None:
    from tests.factories import MembershipFactory, UserFactory

    for i in range(55):
        MembershipFactory(organization=org, user=UserFactory(email=f"m{i:02d}@acme.test"))
    client.force_login(owner)
    url = reverse("orgs:members", kwargs={"org_slug": org.slug})

    def main(params: Any) -> Any:
        html = client.get(url, params).content.decode()
        return html.split('<main id="main"')[1].split("</main>")[0]

    html = main({})
    assert "m00@acme.test" in html
    assert 'rel="next"' in html
    assert "owner@acme.test" not in html  # sorted by email: on the second page
    html = main({"q": "owner@"})
    assert "owner@acme.test" in html
    assert "m00@acme.test" not in html


def test_garbage_cursor_and_huge_numbers_answer_200(
    client: Client, org: Organization, admin: User, role: Role
) -> None:
    _workers(org, role, 3)
    client.force_login(admin)
    url = reverse("workers:list", kwargs={"org_slug": org.slug})
    for params in ({"after": "x"}, {"before": "99999999999999999999999"}, {"q": "a" * 500}):
        assert client.get(url, params).status_code == 200
