"""The tenancy kernel: every row an organization owns is a TenantModel."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib.auth.models import User

from apps.core.models import TenantModel, TenantQuerySet, tenant_rows
from apps.organizations.models import Membership, Organization

# Models with an organization key that are deliberately not TenantModels.
NOT_TENANT_MODELS = {
    "audit.AuditEvent",  # immutable trail, organization id without a constraint
    "audit.AuditSigningKeypair",  # one per organization (OneToOne)
    "audit.AuditRetention",  # one per organization (OneToOne)
    "audit.AuditArchive",  # a month of the trail in the archive store; None: the global chain
    "approvals.ApprovalSettings",  # one per organization (OneToOne)
    "mcpauth.McpPolicy",  # one per organization (OneToOne)
    "connections.OAuthState",  # a single-use, ten-minute state row
}


# Tables owned through a parent row (no organization key of their own): the foreign key each
# names in `tenant_through`, which apps.core.models.tenant_rows follows.
OWNED_THROUGH_A_PARENT = {
    "policies.Rule": "role",
    "providers.CustomAction": "provider",
    "approvals.ApprovalDecision": "approval",
    "approvals.ApprovalWebhookEvent": "approval",
    "approvals.ApprovalLink": "approval",
    "connections.McpServer": "connection",
    "mcpauth.McpIssuedToken": "grant",
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
    assert len(others) == 19  # a new organization-owned table must be looked at here
    for label, model in others.items():
        assert issubclass(model, TenantModel), label
        assert isinstance(model._default_manager.all(), TenantQuerySet), label


def test_every_table_keyed_through_a_tenant_row_names_its_parent() -> None:
    """A table with a required key to a tenant row and none to the organization is owned
    through that row: it names the key (`tenant_through`), so tenant_rows() can scope it."""
    tenant = set(organization_keyed_models())
    found = {}
    for model in apps.get_models():
        if model._meta.label in tenant:
            continue
        parents = [
            f.name
            for f in model._meta.concrete_fields
            if f.is_relation
            and f.related_model is not None
            and f.related_model._meta.label in tenant
            and not f.null
        ]
        if parents:
            through = getattr(model, "tenant_through", None)
            assert through in parents, (model._meta.label, parents)
            found[model._meta.label] = through
    assert found == OWNED_THROUGH_A_PARENT  # a new one must be looked at here


@pytest.mark.django_db
def test_tenant_rows_scopes_a_table_owned_through_a_parent(
    org: Organization, other_org: Organization, admin: User, outsider: User
) -> None:
    from apps.policies.models import Rule
    from apps.policies.services import role_create

    rules = [{"kind": "action", "provider_key": "sandbox", "action_pattern": "sandbox.*"}]
    mine = role_create(organization=org, name="mine", rules=rules, actor=admin)
    role_create(organization=other_org, name="theirs", rules=rules, actor=outsider)
    assert Rule.objects.count() == 2
    assert [r.role_id for r in tenant_rows(Rule, org)] == [mine.pk]
    assert [r.role_id for r in tenant_rows(Rule, org.pk)] == [mine.pk]
    with pytest.raises(TypeError, match="not owned by an organization"):
        tenant_rows(User, org)


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
