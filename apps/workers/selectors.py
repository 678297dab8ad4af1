"""Reads of workers and tokens that are more than one line."""

from __future__ import annotations

from typing import Any

from django.db.models import Q
from django.utils import timezone

from apps.policies.models import Role, Rule
from apps.policies.selectors import allowed_actions, allowed_proxy_rules
from apps.workers.models import Worker


def _governed_by(organization_id: int, role_ids: set[int] | list[int]) -> Q:
    """Workers a role governs: by default role, or through a token that still works."""
    working = Q(
        tokens__role_id__in=role_ids,
        tokens__revoked_at__isnull=True,
        tokens__expires_at__gt=timezone.now(),
    )
    return Q(organization_id=organization_id) & (Q(default_role_id__in=role_ids) | working)


def role_users(role: Any) -> list[str]:
    """Names of the workers `role` governs, for confirmations ("these workers lose …").
    Answers apps.policies.selectors.role_users (plugged in by apps.workers.apps)."""
    return list(
        Worker.objects.filter(_governed_by(role.organization_id, [role.pk]))
        .order_by("name")
        .values_list("name", flat=True)
        .distinct()[:50]
    )


def connection_users(connection: Any) -> tuple[list[str], list[str]]:
    """(role names, worker names) that can use `connection`: roles with a rule naming it, or
    a rule for any connection of its provider, and the workers those roles govern. Answers
    apps.connections.selectors.connection_users (plugged in by apps.workers.apps)."""
    role_ids = set(
        Rule.objects.filter(role__organization_id=connection.organization_id)
        .filter(
            Q(connection=connection)
            | Q(connection__isnull=True, provider_key=connection.provider_key)
        )
        .values_list("role_id", flat=True)
    )
    if not role_ids:
        return [], []
    roles = list(
        Role.objects.filter(pk__in=role_ids).order_by("name").values_list("name", flat=True)
    )
    workers = list(
        Worker.objects.filter(_governed_by(connection.organization_id, role_ids))
        .order_by("name")
        .values_list("name", flat=True)
        .distinct()[:100]
    )
    return roles, workers


def role_allowances(*, role_id: int, organization: Any) -> dict[str, list[dict[str, Any]]]:
    """What a role allows: the catalog actions (with the connections each may use)
    and the proxy rules. Built on apps.policies' cached `role_rules()`."""
    actions = [
        {
            "name": action.name,
            "class": str(action.action_class),
            "description": action.description,
            "connections": [connection.name for connection in connections],
        }
        for action, connections in allowed_actions(role_id, organization)
    ]
    proxy = [
        {
            "rule_id": rule.rule_id,
            "provider": rule.provider_key,
            "connection": rule.connection_name or None,
            "methods": list(rule.methods),
            "path_glob": rule.path_glob,
            "rate_limit_per_minute": rule.rate_limit_per_minute,
        }
        for rule in allowed_proxy_rules(role_id)
    ]
    return {"actions": actions, "proxy": proxy}


def worker_ids_named(name: str, organization: Any = None) -> list[int]:
    """Ids of the workers called `name` (of `organization` when given): the audit filter's
    name lookup (apps.audit.filters.IDS_NAMED)."""
    rows = Worker.objects.filter(name=name)
    if organization is not None:
        rows = rows.for_organization(organization)
    return list(rows.values_list("pk", flat=True)[:50])
