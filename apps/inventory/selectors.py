"""Reads of the inventory: the migration summary, the role a key's program needs, and
which of the old key's scope the calls through Grantry never used."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Count, Max, Min, Q
from django.db.models.fields.json import KT

from apps.audit.models import AuditEvent, Decision
from apps.inventory.models import LIVE_STATES, Finding, FindingLocation
from apps.organizations.models import Organization
from apps.providers.catalog import ActionClass
from apps.providers.registry import UnknownAction, UnknownProvider, get_action, get_provider


@dataclass(frozen=True)
class HostRow:
    host: str
    keys: int
    live: int
    oldest_live: datetime | None
    last_seen: datetime | None


@dataclass
class Summary:
    keys: int = 0
    live: int = 0
    done: int = 0
    oldest_live: datetime | None = None
    by_state: dict[str, int] = field(default_factory=dict)
    by_provider: dict[str, int] = field(default_factory=dict)
    hosts: list[HostRow] = field(default_factory=list)


def migration_summary(organization: Organization) -> Summary:
    """The page a security lead shows in a review: raw keys found, still live, the
    oldest live one, and the same per host."""
    findings = Finding.objects.for_organization(organization)
    live = findings.live()
    summary = Summary(
        keys=findings.count(),
        live=live.count(),
        oldest_live=live.aggregate(m=Min("first_seen_at"))["m"],
    )
    summary.done = summary.keys - summary.live
    summary.by_state = dict(findings.values_list("state").annotate(n=Count("id")).order_by())
    summary.by_provider = dict(
        findings.values_list("provider_key").annotate(n=Count("id")).order_by()
    )
    rows = (
        FindingLocation.objects.for_organization(organization)
        .values("host")
        .annotate(
            keys=Count("finding", distinct=True),
            live=Count("finding", distinct=True, filter=Q(finding__state__in=LIVE_STATES)),
            oldest_live=Min("finding__first_seen_at", filter=Q(finding__state__in=LIVE_STATES)),
            last_seen=Max("last_seen_at"),
        )
        .order_by("-live", "host")
    )
    summary.hosts = [HostRow(**row) for row in rows]
    return summary


def role_proposal(finding: Finding) -> dict[str, Any]:
    """A draft role for what the key's program needs: every action of its provider that
    the key's scopes cover (all of them when the provider does not tell), reads allowed,
    writes behind a person's approval. It is a draft: the admin edits it before saving."""
    try:
        provider = get_provider(finding.provider_key, organization=finding.organization)
    except UnknownProvider:
        return {"name": "", "description": "", "rules": [], "note": "No provider for this key."}
    scopes = set(finding.scopes) if isinstance(finding.scopes, list) else None
    rules = []
    for action in provider.actions:
        needed = set(getattr(action, "scopes", ()) or ())
        if scopes is not None and needed and not needed <= scopes:
            continue
        rule: dict[str, Any] = {
            "kind": "action",
            "provider_key": provider.key,
            "action_pattern": action.name,
        }
        if action.action_class != ActionClass.READ:
            rule["approval"] = "required"
        rules.append(rule)
    program = finding.locations.exclude(program="").values_list("program", flat=True).first()
    server = finding.locations.exclude(server="").values_list("server", flat=True).first()
    base = (server or provider.key).lower().replace(" ", "-")[:40]
    return {
        "name": f"{base}-migrated",
        "description": (
            f"What {program or server or 'the program'} needed from {provider.display_name} "
            "with its raw key: reads allowed, writes after a person's approval."
        )[:300],
        "rules": rules,
        "note": "" if scopes is None else "Only actions the key's scopes covered.",
    }


def scope_use(finding: Finding) -> dict[str, list[str]]:
    """Which of the old key's scopes the calls through its connection since the import
    used, and which never: after a trial period, what the over-grant was."""
    if not isinstance(finding.scopes, list) or finding.connection_id is None:
        return {"used": [], "unused": []}
    names = (
        AuditEvent.objects.for_organization(finding.organization_id)
        .filter(
            action="broker.execute",
            connection_id=finding.connection_id,
            decision=Decision.ALLOWED,
            created_at__gte=finding.imported_at,
        )
        .annotate(saas_action=KT("metadata__action"))
        .values_list("saas_action", flat=True)
        .distinct()
    )
    used: set[str] = set()
    for name in names:
        try:
            used.update(getattr(get_action(name, organization=finding.organization), "scopes", ()))
        except UnknownAction:
            continue
    granted = set(finding.scopes)
    return {"used": sorted(granted & used), "unused": sorted(granted - used)}
