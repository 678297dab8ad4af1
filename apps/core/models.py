"""The tenancy kernel: what every row an organization owns has in common.

`TenantModel` is the abstract base of the organization-owned models (workers and
their tokens, roles, connections and OAuth apps, custom providers, approvals,
memberships, invitations, personal tokens, audit exports and sinks). It declares
the organization foreign key (a string reference: core imports no app above it),
the timestamps and `created_by`; its queryset, `TenantQuerySet`, has the one
`for_organization()`. Each model names its manager (`objects = TenantQuerySet.as_manager()`,
or its own subclass of it): an inherited manager would hide its type from mypy.

A model keeps its own reverse accessor (`organization.connections`, …) by
redeclaring the key with `organization_key(related_name=…)`, which changes nothing
else. A model whose creator already has a better name (`Invitation.invited_by`,
`AuditExport.requested_by`) or that no person creates (an `Approval` is asked for
by an agent) sets `created_by = None`, which removes the inherited field.

The dashboard and management API reach these rows only through the tenant mixins
(`apps.organizations.tenancy`); the agent side reads them by the organization id
that comes with the token (`apps.workers.auth`, `apps.connections.selectors`).
`apps.audit.models.AuditEvent` is not a `TenantModel` (it is immutable, and its
organization is a plain id without a constraint) but uses `TenantQuerySet`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Self, TypeVar

from django.conf import settings
from django.db import models
from django.utils import timezone

_M = TypeVar("_M", bound=models.Model)


class TenantQuerySet(models.QuerySet[_M]):
    def for_organization(self, organization: Any) -> Self:
        """The rows of one organization (an `Organization` or its id)."""
        return self.filter(organization=organization)


def organization_key(
    *, related_name: str, on_delete: Any = models.CASCADE, **options: Any
) -> models.ForeignKey[Any, Any]:
    """The foreign key to the owning organization, with a model's own reverse name."""
    return models.ForeignKey(
        "organizations.Organization", on_delete=on_delete, related_name=related_name, **options
    )


class TenantModel(models.Model):
    organization = organization_key(related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class IssuedTokenQuerySet(TenantQuerySet[_M]):
    def unrevoked(self) -> Self:
        return self.filter(revoked_at__isnull=True)

    def usable(self, *, now: datetime | None = None) -> Self:
        """Not revoked and not expired."""
        return self.unrevoked().filter(expires_at__gt=now or timezone.now())


class IssuedToken(TenantModel):
    """What every bearer token Grantry issues has, worker tokens (apps.workers) and personal
    API tokens (apps.accounts) alike: the public id, the digest (never the token), the last
    four characters, expiry, revocation and last use. The format is apps.core.tokens; the
    lifecycle helpers both kinds use are there too (`last_used_touch`)."""

    public_id = models.CharField(max_length=32, unique=True, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    last4 = models.CharField(max_length=4, editable=False)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.expires_at <= (now or timezone.now())


def tenant_rows(model: type[_M], organization: Any) -> models.QuerySet[_M]:
    """The one way to an organization's rows of `model` (an `Organization` or its id):
    by the model's own organization key, or, for a table owned through a parent (a rule
    through its role, an approval's decisions through the approval), through the foreign key
    the model names in `tenant_through`. A model that is neither is refused (TypeError):
    it holds no tenant rows. The tenant mixins call it (`self.tenant_rows(Model)`)."""
    fields = {f.name for f in model._meta.concrete_fields}
    manager = model._default_manager
    if "organization" in fields:
        return manager.filter(organization=organization)
    through = getattr(model, "tenant_through", None)
    if through is None:
        raise TypeError(f"{model._meta.label} is not owned by an organization.")
    parent = model._meta.get_field(through).related_model
    assert parent is not None
    parent_fields = {f.name for f in parent._meta.concrete_fields}
    if "organization" in parent_fields:
        return manager.filter(**{f"{through}__organization": organization})
    grand = getattr(parent, "tenant_through", None)  # one more level (none today)
    if grand is None:
        raise TypeError(f"{model._meta.label}.{through} does not lead to an organization.")
    return manager.filter(**{f"{through}__{grand}__organization": organization})
