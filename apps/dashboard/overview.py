"""What the organization overview page shows: inventory counts, what needs
attention, and the latest audit events. Read-only, scoped to one org."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db.models import Count, Q
from django.utils import timezone

from apps.audit.actions import CALL_ACTIONS
from apps.audit.models import AuditEvent, Decision
from apps.audit.selectors import chain_head, with_actor_names
from apps.connections.models import Connection, ConnectionStatus
from apps.policies.models import Role
from apps.workers.models import Worker, WorkerStatus, WorkerToken

EXPIRY_WARNING = timedelta(days=7)


@dataclass
class Overview:
    connections: dict[str, int]
    workers_active: int
    workers_disabled: int
    roles: int
    tokens_usable: int
    tokens_expiring: int
    calls_24h: int
    denied_24h: int
    recent: list[AuditEvent]
    chain_seq: int
    chain_hash: str
    attention: list[str] = field(default_factory=list)
    checklist: list[Step] = field(default_factory=list)

    @property
    def onboarding_done(self) -> bool:
        return all(step.done for step in self.checklist)

    @property
    def onboarding_progress(self) -> int:
        return sum(step.done for step in self.checklist)


@dataclass
class Step:
    label: str
    help: str
    url: str
    done: bool


def onboarding_checklist(organization: Any) -> list[Step]:
    """A new organization's first steps, each ticked from real state (not a flag):
    an active connection, a role with a rule, a worker, a token, an allowed call."""
    from django.urls import reverse

    def url(name: str) -> str:
        return reverse(name, kwargs={"org_slug": organization.slug})

    return [
        Step(
            "Connect an account",
            "The Sandbox provider shows the whole flow offline.",
            url("connections:pick"),
            Connection.objects.for_organization(organization)
            .filter(status=ConnectionStatus.ACTIVE)
            .exists(),
        ),
        Step(
            "Create a role",
            "Deny by default: give it a rule for what the agent may do.",
            url("policies:list"),
            Role.objects.filter(organization=organization, rules__isnull=False).exists(),
        ),
        Step(
            "Create a worker",
            "One worker per AI agent, with that role as its default.",
            url("workers:list"),
            Worker.objects.filter(organization=organization).exists(),
        ),
        Step(
            "Mint a token",
            "On the worker's page; it is shown once, with curl and MCP snippets.",
            url("workers:list"),
            WorkerToken.objects.for_organization(organization).exists(),
        ),
        Step(
            "Make a first call",
            "Run the curl snippet from the token page: an allowed call shows up here.",
            url("audit:list") + "?action=broker.",
            AuditEvent.objects.for_organization(organization)
            .filter(action__in=CALL_ACTIONS, decision=Decision.ALLOWED)
            .exists(),
        ),
    ]


def organization_overview(organization: Any) -> Overview:
    now = timezone.now()
    statuses = dict(
        Connection.objects.for_organization(organization)
        .values_list("status")
        .annotate(n=Count("id"))
        .order_by()
    )
    workers = Worker.objects.filter(organization=organization).aggregate(
        active=Count("id", filter=Q(status=WorkerStatus.ACTIVE)),
        disabled=Count("id", filter=~Q(status=WorkerStatus.ACTIVE)),
    )
    tokens = WorkerToken.objects.for_organization(organization)
    day = (
        AuditEvent.objects.for_organization(organization)
        .filter(created_at__gte=now - timedelta(days=1))
        .exclude(decision="")
    )
    calls = day.aggregate(
        calls=Count("id", filter=~Q(action__endswith=".attempt")),
        denied=Count("id", filter=Q(decision=Decision.DENIED)),
    )
    head = chain_head(organization)
    overview = Overview(
        connections={s.value: statuses.get(s.value, 0) for s in ConnectionStatus},
        workers_active=workers["active"],
        workers_disabled=workers["disabled"],
        roles=Role.objects.filter(organization=organization).count(),
        tokens_usable=tokens.usable(now=now).count(),
        tokens_expiring=tokens.expiring(within=EXPIRY_WARNING, now=now).count(),
        calls_24h=calls["calls"],
        denied_24h=calls["denied"],
        recent=with_actor_names(
            list(AuditEvent.objects.for_organization(organization).order_by("-id")[:8])
        ),
        chain_seq=head.seq,
        chain_hash=head.hash,
    )
    overview.checklist = onboarding_checklist(organization)
    if overview.connections.get(ConnectionStatus.NEEDS_REAUTH, 0):
        overview.attention.append(
            f"{overview.connections[ConnectionStatus.NEEDS_REAUTH]} connection(s) need to be "
            "reconnected: agents get 409 until an admin reconnects them."
        )
    if overview.tokens_expiring:
        overview.attention.append(
            f"{overview.tokens_expiring} worker token(s) expire within 7 days."
        )
    return overview
