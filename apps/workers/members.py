"""When the member a worker acts for goes: their agents and personal connections stop.

A worker bound to a member (`Worker.acts_for`) and the member's personal connections
(`Connection.owner`) exist only while the person is an enabled member. Two things end
that, and both stop everything at once, each step audited:

* the member leaves the organization: `organizations.signals.membership_removed`, sent
  inside `membership_remove`'s transaction (a receiver that fails rolls it back);
* the account is disabled (`User.is_active` set false, by the Django admin or any
  code): Django's `post_save` of the user model; each organization where something was
  stopped gets a `member.disabled` event.

"Stop" is the kill machinery the workers already have: the worker is disabled with the
exact-revocation fence (apps.workers.fence: no byte of a call of it leaves after the
service returns), audited `worker.member_gone`; each personal connection is
disconnected (revoked at the provider where it can, secrets destroyed,
`connection.disconnected`). Independently of these writes, the agent authenticator
refuses a bound worker's tokens in its one statement once the member is no longer an
enabled member (401 `member_inactive`), so a change made behind the services' back (SQL,
a restore) is also seen on the next call.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from apps.audit.services import audit_record
from apps.connections.models import Connection, ConnectionStatus
from apps.connections.services import personal_connections_disconnect
from apps.organizations.models import Membership, Organization
from apps.organizations.signals import membership_removed
from apps.workers.fence import fence_worker
from apps.workers.models import Worker, WorkerStatus


@transaction.atomic
def member_agents_stop(
    *, user: Any, organization: Organization, reason: str, actor: Any = None
) -> tuple[list[Worker], list[Connection]]:
    """Disable every worker of `organization` that acts for `user` (fenced, audited
    `worker.member_gone`) and disconnect the user's personal connections there.
    `reason`: "left" (removed from the organization) or "disabled" (account disabled)."""
    stopped = []
    for worker in (
        Worker.objects.select_for_update()
        .filter(organization=organization, acts_for=user, status=WorkerStatus.ACTIVE)
        .order_by("pk")
    ):
        worker.status = WorkerStatus.DISABLED
        worker.save(update_fields=["status", "updated_at"])
        fence_worker(worker.pk)
        audit_record(
            action="worker.member_gone",
            organization=organization,
            target=worker,
            worker_id=worker.pk,
            on_behalf_of_id=user.pk,
            on_behalf_of_label=user.get_username(),
            metadata={"member": user.get_username(), "reason": reason},
            actor=actor,
        )
        stopped.append(worker)
    connections = personal_connections_disconnect(user=user, organization=organization)
    return stopped, connections


@receiver(membership_removed)
def agents_of_removed_member_stop(*, membership: Membership, actor: Any, **_: Any) -> None:
    """The member left: their agents and personal connections in that organization stop
    (inside membership_remove's transaction)."""
    member_agents_stop(
        user=membership.user, organization=membership.organization, reason="left", actor=actor
    )


def _has_something_to_stop(user: Any) -> list[int]:
    """Organizations where a disabled account still has an active agent or a live
    personal connection."""
    workers = Worker.objects.filter(acts_for=user, status=WorkerStatus.ACTIVE).values_list(
        "organization_id", flat=True
    )
    connections = (
        Connection.objects.filter(owner=user)
        .exclude(status=ConnectionStatus.REVOKED)
        .values_list("organization_id", flat=True)
    )
    return sorted({*workers, *connections})


@receiver(post_save, sender=get_user_model())
def agents_of_disabled_member_stop(*, instance: Any, **_: Any) -> None:
    """An account was saved disabled: stop its agents and personal connections in every
    organization (nothing to do, no query beyond the check, for an enabled account)."""
    if instance.is_active:
        return
    for organization in Organization.objects.filter(pk__in=_has_something_to_stop(instance)):
        with transaction.atomic():
            audit_record(
                action="member.disabled",
                organization=organization,
                target_type="user",
                target_id=instance.pk,
                target_label=instance.get_username(),
            )
            member_agents_stop(user=instance, organization=organization, reason="disabled")
