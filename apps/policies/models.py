"""Roles and their deny-by-default rules.

A role allows nothing until a rule allows it. A rule allows an action of the
provider catalog (an exact name, `provider.*`, optionally only its read or write
actions), a proxy call (methods + path glob) on one connection, or tools of one
MCP connection (a tool name or a glob such as `get_*` in `action_pattern`,
optionally only its read-only tools: the approved readOnlyHint). The decision
itself is made by the pure `apps.policies.evaluate`.

`Rule.connection` is `on_delete=CASCADE`: when a connection is deleted the
rules naming it go with it. That only ever narrows what a role allows
(SET_NULL would silently widen "this connection" to "any connection", and
PROTECT would block a disconnect on a role edit).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from django.db import models

from apps.core.models import TenantModel, TenantQuerySet, organization_key

if TYPE_CHECKING:
    from apps.policies.evaluate import RuleSpec


class RuleKind(models.TextChoices):
    ACTION = "action", "Action"
    PROXY = "proxy", "Proxy"
    MCP = "mcp", "MCP tools"


class RuleActionClass(models.TextChoices):
    ANY = "", "Read and write"
    READ = "read", "Read only"
    WRITE = "write", "Write only"


def initial_rules_version() -> int:
    return secrets.randbits(62)


class Role(TenantModel):
    organization = organization_key(related_name="roles")
    name = models.SlugField(max_length=60, help_text="Unique within the organization.")
    description = models.TextField(blank=True)
    # Raised in the same transaction as every change to the role's rules. The agent
    # token lookup reads it with the role, so every process knows on each call
    # whether the rules it keeps in memory are current (policies.selectors). It
    # starts at a random number: a role id can come back (a restored backup, a reset
    # sequence) and must not find the rules of an earlier role cached.
    rules_version = models.PositiveBigIntegerField(default=initial_rules_version, editable=False)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["organization", "name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="uniq_role_name")
        ]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<Role {self.pk} {self.name!r} org={self.organization_id}>"


class Rule(models.Model):
    # Owned through its role's organization (apps.core.models.tenant_rows).
    tenant_through = "role"
    role = models.ForeignKey(Role, on_delete=models.CASCADE, related_name="rules")
    kind = models.CharField(max_length=8, choices=RuleKind.choices, default=RuleKind.ACTION)
    provider_key = models.CharField(max_length=60)
    # Exact dotted name ("sandbox.list_tasks") or a provider-wide pattern ("github.*").
    action_pattern = models.CharField(max_length=160, blank=True)
    action_class = models.CharField(
        max_length=8, choices=RuleActionClass.choices, blank=True, default=RuleActionClass.ANY
    )
    # None: any connection of this provider in the organization.
    connection = models.ForeignKey(
        "connections.Connection",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
    )
    # `connection: on_behalf_of` (action rules only): the personal connection of the
    # member the calling worker acts for (apps.workers.models.Worker.acts_for), of the
    # action's provider; `connection` is then None. Such a rule never matches a shared
    # connection, and no other rule ever matches a personal one (apps.policies.evaluate).
    on_behalf_of = models.BooleanField(default=False)
    methods = models.JSONField(default=list, blank=True)  # proxy only: ["GET", "POST"]
    path_glob = models.CharField(max_length=300, blank=True)  # proxy only
    # [{"field": "repo", "op": "one_of", "value": ["acme/web", "acme/api"]}, …]
    constraints = models.JSONField(default=list, blank=True)
    rate_limit_per_minute = models.PositiveIntegerField(null=True, blank=True)
    # {} for a plain rule. An approval rule allows a call only once a person approves
    # that exact call (apps.approvals):
    # {"required": true, "expires_in": 3600, "approvers": [{"id": 7, "email": "a@b.test"}]}
    approval = models.JSONField(default=dict, blank=True)
    # {"days": ["mon", …], "start": "09:00", "end": "18:00", "timezone": "Europe/Berlin"}
    schedule = models.JSONField(null=True, blank=True)
    # {"limit": 20, "per": "day"}: calls per worker (apps/policies/windows.py)
    quota = models.JSONField(null=True, blank=True)
    position = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["role", "position", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind__in=["action", "proxy", "mcp"]), name="rule_kind_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(action_class__in=["", "read", "write"]),
                name="rule_action_class_valid",
            ),
            # On behalf of: an action rule that names no connection.
            models.CheckConstraint(
                condition=models.Q(on_behalf_of=False)
                | models.Q(kind="action", connection__isnull=True),
                name="rule_on_behalf_of_action_only",
            ),
        ]

    def __str__(self) -> str:
        if self.kind == RuleKind.PROXY:
            return f"proxy {','.join(self.methods)} {self.path_glob}"
        return f"{self.action_pattern}{f' ({self.action_class})' if self.action_class else ''}"

    def to_spec(self) -> RuleSpec:
        from apps.policies.evaluate import rule_spec_from_values

        return rule_spec_from_values(
            rule_id=self.pk,
            kind=self.kind,
            provider_key=self.provider_key,
            action_pattern=self.action_pattern,
            action_class=self.action_class,
            connection_id=self.connection_id,
            connection_name=self.connection.name if self.connection is not None else "",
            on_behalf_of=self.on_behalf_of,
            methods=self.methods,
            path_glob=self.path_glob,
            constraints=self.constraints,
            rate_limit_per_minute=self.rate_limit_per_minute,
            approval=self.approval,
            schedule=self.schedule,
            quota=self.quota,
        )
