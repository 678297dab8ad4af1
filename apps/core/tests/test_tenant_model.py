"""The tenancy kernel: every row an organization owns is a TenantModel."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib.auth.models import User

from apps.core.models import TenantModel, TenantQuerySet
from apps.organizations.models import Membership, Organization

# Models with an organization key that are deliberately not TenantModels.
NOT_TENANT_MODELS = {
    "audit.AuditEvent",  # immutable trail, organization id without a constraint
    "audit.AuditSigningKeypair",  # one per organization (OneToOne)
    "approvals.ApprovalSettings",  # one per organization (OneToOne)
    "mcpauth.McpPolicy",  # one per organization (OneToOne)
    "connections.OAuthState",  # a single-use, ten-minute state row
}


def organization_keyed_models() -> dict[str, type]:
    found = {}
    for model in apps.get_models():
        field = next((f for f in model._meta.concrete_fields if f.name == "organization"), None)
        if field is not None and field.related_model is Organization:
            found[model._meta.label] = model
    return found


def test_every_organization_owned_model_is_a_tenant_model() -> None:
    models = organization_keyed_models()
    assert set(models) >= NOT_TENANT_MODELS
    others = {label: m for label, m in models.items() if label not in NOT_TENANT_MODELS}
    assert len(others) == 18  # a new organization-owned table must be looked at here
    for label, model in others.items():
        assert issubclass(model, TenantModel), label
        assert isinstance(model._default_manager.all(), TenantQuerySet), label


@pytest.mark.django_db
def test_for_organization_returns_only_that_organizations_rows(
    org: Organization, other_org: Organization, admin: User, outsider: User
) -> None:
    assert Membership.objects.count() == 2
    assert list(Membership.objects.for_organization(org).values_list("user", flat=True)) == [
        admin.pk
    ]
    assert list(
        Membership.objects.for_organization(other_org.pk).values_list("user", flat=True)
    ) == [outsider.pk]
