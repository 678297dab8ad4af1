"""The audit filter's pickers: workers, connections, providers and members by name,
and suggestions for "Event" and "Call". Only the reviewer pages render them (the API
and export jobs validate and apply the same filter without them), and they need the
catalog and the agent-side models, which sit above apps.audit."""

from __future__ import annotations

from typing import Any

from apps.audit.filters import EVENT_SUGGESTIONS, PICKER_MAX, AuditEventFilter, DatalistInput
from apps.connections.models import Connection
from apps.policies.models import Role
from apps.providers.registry import all_providers
from apps.workers.models import Worker


def offer_pickers(filterset: AuditEventFilter, organization: Any) -> None:
    workers = Worker.objects.filter(organization=organization).order_by("name")
    if workers.count() <= PICKER_MAX:
        filterset.offer_choices(
            "worker", [(str(pk), n) for pk, n in workers.values_list("pk", "name")]
        )
    # Members' personal connections are listed to their owners and admins only, not here.
    connections = Connection.objects.filter(organization=organization, owner__isnull=True).order_by(
        "name"
    )
    if connections.count() <= PICKER_MAX:
        rows = list(connections.values_list("pk", "name", "provider_key"))
        filterset.offer_choices(
            "connection",
            [(str(pk), f"{n} ({p})") for pk, n, p in rows],
            aliases={n: str(pk) for pk, n, _ in rows},
        )
    roles = Role.objects.filter(organization=organization).order_by("name")
    if roles.count() <= PICKER_MAX:
        filterset.offer_choices("role", [(str(pk), n) for pk, n in roles.values_list("pk", "name")])
    providers = all_providers(organization=organization)
    connected = set(connections.values_list("provider_key", flat=True))
    filterset.offer_choices(
        "provider",
        [(p.key, p.display_name) for p in providers if p.key in connected]
        + [(p.key, p.display_name) for p in providers if p.key not in connected],
    )
    members = [
        (str(pk), email)
        for pk, email in organization.memberships.order_by("user__email").values_list(
            "user_id", "user__email"
        )
    ]
    filterset.offer_choices("member", members)
    filterset.offer_choices("on_behalf_of", members)
    form = filterset.form
    form.fields["action"].widget = DatalistInput(list(EVENT_SUGGESTIONS))
    form.fields["call"].widget = DatalistInput(
        [
            (action.name, action.description[:80])
            for p in providers
            if p.key in connected
            for action in p.actions
        ]
    )
