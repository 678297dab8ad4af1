"""Who could approve the requests of a rule that requires approval.

Used twice, so the two agree: when a rule is saved (`approval_shortfalls`, a rule
nobody could ever approve is refused) and by apps.approvals when an agent asks
(`approver_candidates`, minus separation of duties, must leave enough people).

Separation of duties is the worker's rule (`Worker`/`WorkerToken`
`.separation_of_duties_ids()`); apps.workers sits above this app, so who could ask
under a role is its answer, plugged into `_role_subjects` (apps.core.ports)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from apps.core.ports import Port
from apps.organizations.models import Membership, OrgRole


def approver_candidates(*, organization_id: int, approver_ids: Iterable[int]) -> list[Any]:
    """The active members who may decide: those a rule names, else admins and owners."""
    members = Membership.objects.filter(
        organization_id=organization_id, user__is_active=True
    ).select_related("user")
    named = list(approver_ids)
    if named:
        members = members.filter(user_id__in=named)
    else:
        members = members.filter(role__in=[OrgRole.ADMIN, OrgRole.OWNER])
    return [m.user for m in members.order_by("user_id")]


def approvals_needed(organization: Any) -> int:
    """Two when the organization requires two approvers (its approval settings)."""
    approval_settings = getattr(organization, "approval_settings", None)  # may not exist
    return 2 if approval_settings is not None and approval_settings.require_two_approvers else 1


def _who(users: Sequence[Any]) -> str:
    return ", ".join(u.email or u.get_username() for u in users) or "nobody"


def approval_shortfalls(
    *, organization: Any, role: Any, rules: Sequence[Any], needed: int | None = None
) -> dict[str, list[str]]:
    """Why the requests of each approval rule could not be decided, keyed like
    `clean_rules`' errors ("rules.1.approval.approvers"); empty when all can be.

    A rule fails when fewer members than needed could approve at all, or when, for
    a worker that acts with `role` (its default role or an unexpired token's), the
    people separation of duties excludes leave too few."""
    needed = approvals_needed(organization) if needed is None else needed
    errors: dict[str, list[str]] = {}
    subjects = _role_subjects(organization, role) if role is not None else []
    for i, rule in enumerate(rules):
        approval = (rule.get("approval") if isinstance(rule, dict) else None) or {}
        if not approval.get("required"):
            continue
        named = [int(a["id"]) for a in approval.get("approvers") or [] if a.get("id")]
        candidates = approver_candidates(organization_id=organization.pk, approver_ids=named)
        where = "the approvers this rule names" if named else "the admins and owners"
        key = f"rules.{i}.approval.approvers"
        # An organization always has an owner, so the default (admins and owners) can
        # fall short only of two approvers; named approvers can fall short of one.
        if (named or needed > 1) and len(candidates) < needed:
            errors.setdefault(key, []).append(
                f"This rule's requests could never be approved: they need {needed} approver"
                f"{'s' if needed > 1 else ''} and {where} are only {len(candidates)} "
                f"({_who(candidates)})."
            )
            continue
        for worker_name, excluded in subjects:
            left = [u for u in candidates if u.pk not in excluded]
            if len(left) < needed:
                barred = [u for u in candidates if u.pk in excluded]
                errors.setdefault(key, []).append(
                    f"Worker '{worker_name}' could never get this approval: of {where}, "
                    f"{_who(barred)} created or own{'s' if len(barred) == 1 else ''} that "
                    "worker or minted its token, and separation of duties bars them, which "
                    f"leaves {len(left)} of the {needed} needed. Name another approver."
                )
    return errors


# Who could ask under a role, and whom separation of duties excludes for each, is the
# workers' question (a layer above): apps.workers plugs its answer in (apps.core.ports).
_role_subjects: Port[[Any, Any], list[tuple[str, set[int]]]] = Port(
    "role_subjects", answered_by="apps.workers.selectors.role_subjects"
)
