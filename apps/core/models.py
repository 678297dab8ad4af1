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

from typing import Any, Self, TypeVar

from django.conf import settings
from django.db import models

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
