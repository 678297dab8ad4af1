"""The tenant mixins cannot be bypassed by a subclass's get_queryset()."""

from __future__ import annotations

from typing import Any

import pytest
from django.db.models import QuerySet
from django.test import RequestFactory
from django.views.generic import ListView
from rest_framework import generics

from apps.organizations.models import Membership, Organization
from apps.organizations.tenancy import OrgAPIMixin, OrgViewMixin
from apps.workers.models import Worker


def test_a_dashboard_view_defining_get_queryset_is_refused() -> None:
    with pytest.raises(TypeError, match="scope_queryset"):

        class Bypass(OrgViewMixin, ListView):
            def get_queryset(self) -> QuerySet[Any]:
                return Worker.objects.all()


def test_an_api_view_defining_get_queryset_is_refused() -> None:
    with pytest.raises(TypeError, match="Bypass"):

        class Bypass(OrgAPIMixin, generics.ListAPIView[Worker]):
            def get_queryset(self) -> QuerySet[Worker]:
                return Worker.objects.all()


def test_a_mixin_placed_before_the_tenant_mixin_cannot_bypass_it() -> None:
    class Everything:
        def get_queryset(self) -> QuerySet[Any]:
            return Worker.objects.all()

    with pytest.raises(TypeError, match="Everything"):

        class Bypass(Everything, OrgViewMixin, ListView):
            pass


@pytest.mark.django_db
@pytest.mark.usefixtures("admin")
def test_scope_queryset_is_what_get_queryset_returns(org: Organization) -> None:
    class Members(OrgViewMixin, ListView):
        model = Membership  # type: ignore[misc]  # ListView declares it per instance

    view = Members()
    view.setup(RequestFactory().get("/"))
    view.organization = org
    assert list(view.get_queryset()) == list(Membership.objects.filter(organization=org))
    assert view.get_queryset().query.where  # filtered, never the whole table


@pytest.mark.django_db
@pytest.mark.usefixtures("admin")
def test_the_named_escape_hatch_is_the_only_way_to_unscoped_rows(org: Organization) -> None:
    class AllMembers(OrgViewMixin, ListView):
        model = Membership  # type: ignore[misc]  # ListView declares it per instance

        def dangerously_get_queryset(self) -> QuerySet[Membership]:
            return Membership.objects.all()

    view = AllMembers()
    view.setup(RequestFactory().get("/"))
    view.organization = org
    assert not view.get_queryset().query.where
