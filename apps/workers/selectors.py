"""Reads of workers and tokens that are more than one line."""

from __future__ import annotations

from typing import Any

from django.db.models import Q
from django.utils import timezone

from apps.policies.models import Role, Rule
from apps.policies.selectors import allowed_actions, allowed_proxy_rules
from apps.workers.models import Worker, WorkerToken


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
    rules = Rule.objects.filter(role__organization_id=connection.organization_id)
    if connection.owner_id is not None:
        # A member's personal connection: `on_behalf_of` rules, workers acting for them.
        rules = rules.filter(on_behalf_of=True, provider_key=connection.provider_key)
    else:
        rules = rules.filter(
            Q(connection=connection)
            | Q(connection__isnull=True, on_behalf_of=False, provider_key=connection.provider_key)
        )
    role_ids = set(rules.values_list("role_id", flat=True))
    if not role_ids:
        return [], []
    roles = list(
        Role.objects.filter(pk__in=role_ids).order_by("name").values_list("name", flat=True)
    )
    governed = Worker.objects.filter(_governed_by(connection.organization_id, role_ids))
    if connection.owner_id is not None:
        governed = governed.filter(acts_for_id=connection.owner_id)
    workers = list(governed.order_by("name").values_list("name", flat=True).distinct()[:100])
    return roles, workers


def role_allowances(
    *, role_id: int, organization: Any, acting_for: int | None = None
) -> dict[str, list[dict[str, Any]]]:
    """What a role allows: the catalog actions (with the connections each may use)
    and the proxy rules. Built on apps.policies' cached `role_rules()`."""
    actions = [
        {
            "name": action.name,
            "class": str(action.action_class),
            "description": action.description,
            "connections": [connection.name for connection in connections],
        }
        for action, connections in allowed_actions(role_id, organization, acting_for=acting_for)
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


def role_subjects(organization: Any, role: Any) -> list[tuple[str, set[int]]]:
    """(worker name, people separation of duties excludes) for each worker that could
    ask under `role`: workers whose default role it is, and unexpired tokens with it.
    Answers apps.policies.approvers' question (plugged in by apps.workers.apps)."""
    subjects: dict[tuple[int, str], set[int]] = {}
    for worker in Worker.objects.for_organization(organization).filter(
        default_role=role, status="active"
    ):
        subjects[(worker.pk, "")] = worker.separation_of_duties_ids()
    tokens = (
        WorkerToken.objects.for_organization(organization)
        .filter(
            role=role,
            revoked_at__isnull=True,
            expires_at__gt=timezone.now(),
            worker__status="active",
        )
        .select_related("worker")
    )
    for token in tokens:
        subjects[(token.worker_id, token.public_id)] = token.separation_of_duties_ids()
    workers = Worker.objects.for_organization(organization).filter(pk__in={k[0] for k in subjects})
    names = {w.pk: w.name for w in workers}
    seen: set[tuple[str, frozenset[int]]] = set()
    out = []
    for (worker_id, _token), excluded in subjects.items():
        entry = (names[worker_id], frozenset(excluded))
        if entry not in seen:
            seen.add(entry)
            out.append((names[worker_id], excluded))
    return out


def worker_of(organization: Any, worker_id: int) -> Worker | None:
    """The organization's worker with this id, or None: apps.policies.least_privilege asks
    (plugged in by apps.workers.apps)."""
    return Worker.objects.for_organization(organization).filter(pk=worker_id).first()
