"""Writes for workers and worker tokens. Every change is audited in its transaction.

The raw token leaves this module exactly once: as the second item returned by
`token_mint()` / `token_roll()`. It is never stored, logged or audited.

Lock order (so concurrent writes queue instead of deadlocking):
1. the worker row, FOR UPDATE, only by the writes that change the worker itself;
2. token rows, FOR NO KEY UPDATE of the token table only, in ascending id;
3. the organization's audit chain head, always last (taken by `audit_record`).
Nothing locks the organization or the role: a token insert only takes PostgreSQL's
FOR KEY SHARE on the rows it references, which no lock here conflicts with.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit.models import Outcome
from apps.audit.services import audit_record
from apps.core.tokens import (
    EXPIRY_WARNING_DAYS,
    issued_token_create,
    issued_token_revoke,
    last_used_touch,
    leak_notify,
    leak_report,
    token_lifetime,
)
from apps.organizations.models import Membership, Organization, OrgRole
from apps.workers.dpop import jkt_from
from apps.workers.fence import fence_organization, fence_worker
from apps.workers.models import TrustPolicy, Worker, WorkerStatus, WorkerToken
from apps.workers.trust import trust_policy_set_enabled

# Roll overlap choices: how long the old token keeps working after a roll.
ROLL_OVERLAPS: dict[str, timedelta] = {
    "none": timedelta(0),
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
}


def _check_owner(organization: Organization, owner: Any) -> None:
    if (
        owner is not None
        and not Membership.objects.filter(organization=organization, user=owner).exists()
    ):
        raise ValidationError({"owner": "The owner must be a member of this organization."})


def member_is_active(organization: Organization | int, user: Any) -> bool:
    """Is `user` an enabled account and a member of the organization? (A worker may act
    only for such a member; the agent authenticator asks the same in its statement.)"""
    return bool(
        user is not None
        and user.is_active
        and Membership.objects.filter(organization=organization, user=user).exists()
    )


def _check_acts_for(organization: Organization, acts_for: Any, actor: Any) -> None:
    """Who a worker may act for: an active member. Admins and owners bind a worker to any
    member; anyone else only to themselves (docs/architecture.md, "Acting for a person")."""
    if acts_for is None:
        return
    if not member_is_active(organization, acts_for):
        raise ValidationError(
            {"acts_for": "A worker can act only for an active member of this organization."}
        )
    if actor is None or getattr(actor, "pk", None) == acts_for.pk:
        return
    membership = Membership.objects.filter(organization=organization, user=actor).first()
    if membership is None or not membership.can_manage():
        raise ValidationError(
            {"acts_for": "Only an admin can make a worker act for another member."}
        )


def _check_role(organization: Organization, role: Any, field: str) -> None:
    if role is None or role.organization_id != organization.pk:
        raise ValidationError({field: "Choose a role of this organization."})


def _token_target(token: WorkerToken) -> dict[str, Any]:
    return {
        "target_type": "workertoken",
        "target_id": token.public_id,
        "target_label": f"{token.public_id} of {token.worker.name}",
        "worker_id": token.worker_id,
        "token_id": token.public_id,
    }


# --- Workers -------------------------------------------------------------------


@transaction.atomic
def worker_create(
    *,
    organization: Organization,
    name: str,
    default_role: Any,
    description: str = "",
    owner: Any = None,
    acts_for: Any = None,
    require_dpop: bool = False,
    actor: Any = None,
) -> Worker:
    _check_role(organization, default_role, "default_role")
    _check_owner(organization, owner)
    _check_acts_for(organization, acts_for, actor)
    if Worker.objects.filter(organization=organization, name=name).exists():
        raise ValidationError({"name": "A worker with this name already exists."})
    worker = Worker(
        organization=organization,
        name=name,
        description=description,
        owner=owner,
        acts_for=acts_for,
        default_role=default_role,
        require_dpop=require_dpop,
        created_by=actor,
    )
    worker.full_clean(exclude=["organization", "default_role", "owner", "acts_for", "created_by"])
    try:
        with transaction.atomic():
            worker.save()
    except IntegrityError as exc:
        raise ValidationError({"name": "A worker with this name already exists."}) from exc
    audit_record(
        action="worker.created",
        organization=organization,
        target=worker,
        metadata={
            "name": worker.name,
            "default_role": default_role.name,
            "owner": owner.get_username() if owner else None,
            "acts_for": acts_for.get_username() if acts_for else None,
            "require_dpop": require_dpop,
        },
        worker_id=worker.pk,
        actor=actor,
    )
    return worker


_EDITABLE = ("name", "description", "owner", "default_role", "acts_for", "require_dpop")


def _display(value: Any) -> Any:
    if value is None or isinstance(value, str | int):
        return value
    if hasattr(value, "get_username"):
        return value.get_username()
    return str(value)


def _check_changes(worker: Worker, changes: dict[str, Any], actor: Any) -> None:
    """What `worker_update` refuses before it changes anything."""
    organization = worker.organization
    if "default_role" in changes:
        _check_role(organization, changes["default_role"], "default_role")
    if "owner" in changes:
        _check_owner(organization, changes["owner"])
    if "acts_for" in changes and changes["acts_for"] != worker.acts_for:
        _check_acts_for(organization, changes["acts_for"], actor)
    if (
        "name" in changes
        and changes["name"] != worker.name
        and (Worker.objects.filter(organization=organization, name=changes["name"]).exists())
    ):
        raise ValidationError({"name": "A worker with this name already exists."})


@transaction.atomic
def worker_update(*, worker: Worker, actor: Any = None, **changes: Any) -> Worker:
    """Change name, description, owner, default role or whether DPoP is required. The
    `worker.changed` event holds the diff; turning DPoP on or off is `worker.dpop_changed`
    of its own (a security setting a reviewer looks for), with the count of the worker's
    live unbound tokens that it stops (or lets work again)."""
    unknown = set(changes) - set(_EDITABLE)
    if unknown:
        raise TypeError(f"Not editable: {sorted(unknown)}")
    worker = Worker.objects.select_for_update().get(pk=worker.pk)
    organization = worker.organization
    _check_changes(worker, changes, actor)
    diff: dict[str, dict[str, Any]] = {}
    for field, new in changes.items():
        old = getattr(worker, field)
        if old != new:
            diff[field] = {"from": _display(old), "to": _display(new)}
            setattr(worker, field, new)
    if not diff:
        return worker
    worker.full_clean(exclude=["organization", "default_role", "owner", "acts_for", "created_by"])
    worker.save()
    revoked: list[str] = []
    if "acts_for" in diff:
        # A token minted while the worker acted for someone (held by that person's agent,
        # an MCP client's family, an exchange) never acts for whoever comes next: every
        # token of it is revoked, so a new binding starts with new tokens. And whoever the
        # worker acted for, a call in flight as them ends within the send window before
        # this returns (exact, like a disable: apps.workers.fence).
        revoked = _revoke_all(
            WorkerToken.objects.filter(worker=worker),
            revoked_by=actor,
            reason="The worker now acts for someone else",
        )
        # The outside identities trusted to become it (the previous person's CI, say) are
        # turned off too, each audited: an admin turns on again what the new binding needs.
        for policy in TrustPolicy.objects.filter(worker=worker, enabled=True).order_by("pk"):
            trust_policy_set_enabled(policy=policy, enabled=False, actor=actor)
        fence_worker(worker.pk)
    dpop_change = diff.pop("require_dpop", None)
    if diff:
        audit_record(
            action="worker.changed",
            organization=organization,
            target=worker,
            metadata={"changes": diff, **({"revoked_tokens": revoked} if revoked else {})},
            worker_id=worker.pk,
            actor=actor,
        )
    if dpop_change is not None:
        unbound = WorkerToken.objects.filter(worker=worker, dpop_jkt="").usable().count()
        audit_record(
            action="worker.dpop_changed",
            organization=organization,
            target=worker,
            metadata={
                "changes": {"require_dpop": dpop_change},
                "unbound_live_tokens": unbound,
            },
            reason=(
                f"{unbound} unbound token(s) of it are refused from now on"
                if worker.require_dpop
                else f"{unbound} unbound token(s) of it work again"
            ),
            worker_id=worker.pk,
            actor=actor,
        )
    return worker


def _worker_set_status(*, worker: Worker, status: str, action: str, actor: Any) -> Worker:
    worker = Worker.objects.select_for_update().get(pk=worker.pk)
    if worker.status == status:
        return worker
    worker.status = status
    worker.save(update_fields=["status"])
    if status == WorkerStatus.DISABLED:
        fence_worker(worker.pk)
    audit_record(
        action=action,
        organization=worker.organization,
        target=worker,
        worker_id=worker.pk,
        actor=actor,
    )
    return worker


@transaction.atomic
def worker_disable(*, worker: Worker, actor: Any = None) -> Worker:
    """All of the worker's tokens fail at once (the auth checks the worker's status)."""
    return _worker_set_status(
        worker=worker,
        status=WorkerStatus.DISABLED,
        action="worker.disabled",
        actor=actor,
    )


@transaction.atomic
def worker_enable(*, worker: Worker, actor: Any = None) -> Worker:
    """Re-enabling revives no revoked token: revocation is permanent. A worker that acts
    for a member who left or was disabled stays off (bind it to someone else first,
    which revokes every token it had)."""
    if worker.acts_for_id is not None and not member_is_active(
        worker.organization_id, worker.acts_for
    ):
        raise ValidationError(
            {"acts_for": "The member this worker acts for is no longer an active member."}
        )
    return _worker_set_status(
        worker=worker,
        status=WorkerStatus.ACTIVE,
        action="worker.enabled",
        actor=actor,
    )


@transaction.atomic
def worker_delete(*, worker: Worker, actor: Any = None) -> None:
    """Delete a worker and its tokens (they stop working at once). The audit
    trail keeps the worker's id, name and the ids of the tokens that went with it."""
    worker = Worker.objects.select_for_update().get(pk=worker.pk)
    token_ids = list(worker.tokens.values_list("public_id", flat=True))
    fence_worker(worker.pk)
    audit_record(
        action="worker.deleted",
        organization_id=worker.organization_id,
        target=worker,
        metadata={"name": worker.name, "tokens": token_ids},
        worker_id=worker.pk,
        actor=actor,
    )
    worker.delete()


# --- Tokens --------------------------------------------------------------------


def _check_dpop_jkt(worker: Worker, dpop_jkt: str) -> str:
    """The thumbprint a new token of `worker` is bound to: well formed, and present when
    the worker requires DPoP (it gets no unbound token)."""
    try:
        dpop_jkt = jkt_from(jkt=dpop_jkt)
    except ValueError as exc:
        raise ValidationError({"dpop_jkt": str(exc)}) from None
    if worker.require_dpop and not dpop_jkt:
        raise ValidationError(
            {
                "dpop_jkt": "This worker requires DPoP: give the public key (JWK) the token is "
                "bound to, or its thumbprint."
            }
        )
    return dpop_jkt


def token_expiry(
    *, organization: Organization, expires_in_days: int | None, now: datetime | None = None
) -> datetime:
    """Mandatory expiry: the default is 30 days, capped by the org's maximum (≤ 366)
    (apps.core.tokens.token_lifetime, which personal tokens share)."""
    return token_lifetime(organization, expires_in_days, now=now)


def _new_token(
    *,
    worker: Worker,
    role: Any,
    expires_at: datetime,
    created_by: Any,
    rolled_from: WorkerToken | None = None,
    name: str = "",
    dpop_jkt: str = "",
) -> tuple[WorkerToken, str]:
    return issued_token_create(
        WorkerToken,
        kind="worker",
        organization=worker.organization,
        worker=worker,
        role=role,
        name=name,
        created_by=created_by,
        expires_at=expires_at,
        rolled_from=rolled_from,
        dpop_jkt=dpop_jkt,
    )


@transaction.atomic
def token_mint(
    *,
    worker: Worker,
    role: Any = None,
    expires_in_days: int | None = None,
    actor: Any = None,
    name: str = "",
    dpop_jkt: str = "",
) -> tuple[WorkerToken, str]:
    """A new token for `worker`, named `name` (what it is for; the dashboard requires
    one), bound to the key whose thumbprint is `dpop_jkt` when given (DPoP,
    apps.workers.dpop; required when the worker requires DPoP). Returns (token, raw); the
    raw value is never seen again."""
    worker = Worker.objects.select_related("organization", "default_role").get(pk=worker.pk)
    organization = worker.organization
    if not worker.is_active():
        raise ValidationError({"worker": "This worker is disabled; enable it to mint tokens."})
    role = role if role is not None else worker.default_role
    _check_role(organization, role, "role")
    dpop_jkt = _check_dpop_jkt(worker, dpop_jkt)
    expires_at = token_expiry(organization=organization, expires_in_days=expires_in_days)
    name = " ".join(name.split())[:100]
    token, raw = _new_token(
        worker=worker,
        role=role,
        expires_at=expires_at,
        created_by=actor,
        name=name,
        dpop_jkt=dpop_jkt,
    )
    audit_record(
        action="token.minted",
        organization=organization,
        metadata={
            "role": role.name,
            "expires_at": expires_at.isoformat(),
            "last4": token.last4,
            "name": name,
            "dpop_jkt": dpop_jkt,
        },
        **_token_target(token),
        actor=actor,
    )
    return token, raw


@transaction.atomic
def token_revoke(
    *,
    token: WorkerToken,
    actor: Any = None,
    reason: str = "",
) -> WorkerToken:
    token, revoked = issued_token_revoke(
        WorkerToken, pk=token.pk, revoked_by=actor, revoke_reason=reason[:200]
    )
    if not revoked:
        return token
    fence_worker(token.worker_id)
    audit_record(
        action="token.revoked",
        organization_id=token.organization_id,
        metadata={"reason": token.revoke_reason},
        **_token_target(token),
        actor=actor,
    )
    return token


@transaction.atomic
def token_roll(
    *,
    token: WorkerToken,
    overlap: str = "none",
    expires_in_days: int | None = None,
    actor: Any = None,
) -> tuple[WorkerToken, str]:
    """Replace `token` with a new one (same worker and role). The old one keeps
    working for `overlap` (none, 1h, 24h, 7d) and then expires."""
    if overlap not in ROLL_OVERLAPS:
        raise ValidationError({"overlap": f"Choose one of: {', '.join(ROLL_OVERLAPS)}."})
    # Only the token row is locked (see the lock order above); its worker, organization
    # and role are plain reads.
    old = WorkerToken.objects.select_for_update(no_key=True).get(pk=token.pk)
    now = timezone.now()
    if old.revoked_at is not None or old.is_expired(now):
        raise ValidationError({"token": "Only an active token can be rolled."})
    if hasattr(old, "rolled_to"):
        raise ValidationError({"token": "This token was already rolled."})
    if not old.worker.is_active():
        raise ValidationError({"worker": "This worker is disabled; enable it to roll tokens."})
    organization = old.worker.organization
    # The new token is bound to the old one's key: the agent keeps its key and swaps tokens.
    if old.worker.require_dpop and not old.dpop_jkt:
        raise ValidationError(
            {
                "token": "This worker requires DPoP and this token is not bound to a key: "
                "mint a bound token instead."
            }
        )
    expires_at = token_expiry(organization=organization, expires_in_days=expires_in_days, now=now)
    new, raw = _new_token(
        worker=old.worker,
        role=old.role,
        expires_at=expires_at,
        created_by=actor,
        rolled_from=old,
        name=old.name,
        dpop_jkt=old.dpop_jkt,
    )
    old.expires_at = min(old.expires_at, now + ROLL_OVERLAPS[overlap])
    old.save(update_fields=["expires_at"])
    if old.expires_at <= now:
        fence_worker(old.worker_id)
    audit_record(
        action="token.rolled",
        organization=organization,
        metadata={
            "overlap": overlap,
            "new_token_id": new.public_id,
            "old_expires_at": old.expires_at.isoformat(),
            "new_expires_at": new.expires_at.isoformat(),
        },
        **_token_target(old),
        actor=actor,
    )
    return new, raw


@transaction.atomic
def token_leaked(
    *, token: WorkerToken, where: str, method: str = "", path: str = ""
) -> WorkerToken:
    """A valid worker token was seen where it must never be (`where`, e.g. a URL's query
    string): revoke it, audit `token.leaked` and email the worker's owner (or, with no
    owner, the organization's admins) after commit. Never given the raw token."""
    token = token_revoke(token=token, reason=f"Leaked: sent in {where}", actor=None)
    audit_record(
        action="token.leaked",
        organization_id=token.organization_id,
        outcome=Outcome.FAILURE,
        **leak_report(kind="worker", where=where, method=method, path=path),
        **_token_target(token),
    )
    worker = token.worker
    owner = worker.owner
    recipients = (
        [owner.email]
        if owner is not None and owner.email
        else list(
            Membership.objects.filter(
                organization_id=token.organization_id, role__in=[OrgRole.ADMIN, OrgRole.OWNER]
            ).values_list("user__email", flat=True)
        )
    )
    leak_notify(
        recipients=recipients,
        subject=f"[Grantry] A token of worker {worker.name} leaked and was revoked",
        label=f"worker token {token.public_id} (…{token.last4}) of worker {worker.name}",
        where=where,
        method=method,
        path=path,
        remedy=(
            "Roll or mint a new one at "
            f"{settings.GRANTRY_BASE_URL}/o/{worker.organization.slug}/workers/{worker.pk}/"
        ),
    )
    return token


def _revoke_all(queryset: Any, *, revoked_by: Any, reason: str) -> list[str]:
    now = timezone.now()
    ids = list(
        queryset.unrevoked()
        .select_for_update(no_key=True)
        .order_by("pk")
        .values_list("public_id", flat=True)
    )
    queryset.filter(public_id__in=ids).update(
        revoked_at=now, revoked_by=revoked_by, revoke_reason=reason
    )
    return ids


@transaction.atomic
def worker_revoke_all_tokens(*, worker: Worker, actor: Any = None) -> int:
    """Kill switch for one worker: every unrevoked token of it is revoked now."""
    ids = _revoke_all(
        WorkerToken.objects.filter(worker=worker),
        revoked_by=actor,
        reason="Kill switch: all tokens of the worker",
    )
    fence_worker(worker.pk)
    audit_record(
        action="killswitch.worker",
        organization_id=worker.organization_id,
        target=worker,
        metadata={"revoked_tokens": ids, "count": len(ids)},
        worker_id=worker.pk,
        actor=actor,
    )
    return len(ids)


@transaction.atomic
def organization_revoke_all_worker_tokens(
    *,
    organization: Organization,
    confirm: str,
    actor: Any = None,
) -> int:
    """Org-wide kill switch. `confirm` must be the org's slug, typed by a person."""
    if confirm != organization.slug:
        raise ValidationError({"confirm": "Type the organization's slug exactly to confirm."})
    ids = _revoke_all(
        WorkerToken.objects.filter(organization=organization),
        revoked_by=actor,
        reason="Kill switch: every worker token of the organization",
    )
    fence_organization(organization.pk)
    audit_record(
        action="killswitch.org",
        organization=organization,
        target=organization,
        metadata={"revoked_tokens": ids, "count": len(ids)},
        actor=actor,
    )
    return len(ids)


# --- Use of a token (called by the authentication) -----------------------------


def token_touch(
    *,
    token_id: int,
    last_used_at: datetime | None,
    ip: str | None,
    now: datetime | None = None,
) -> bool:
    """Record last use and the address, at most once a minute per token
    (apps.core.tokens.last_used_touch, which personal tokens share)."""
    return last_used_touch(
        WorkerToken, pk=token_id, last_used_at=last_used_at, now=now, last_used_ip=ip
    )


# --- Expiry warnings (daily Celery beat task) ----------------------------------


@transaction.atomic
def token_expiry_warnings_send(*, now: datetime | None = None) -> int:
    """Email each org's admins and owners once per token about an upcoming expiry."""
    now = now or timezone.now()
    tokens = list(
        WorkerToken.objects.expiring(within=timedelta(days=EXPIRY_WARNING_DAYS), now=now)
        .filter(expiry_warned_at__isnull=True, worker__status=WorkerStatus.ACTIVE)
        .select_for_update(skip_locked=True, of=("self",))
        .select_related("worker", "organization")
    )
    by_org: dict[int, list[WorkerToken]] = defaultdict(list)
    for token in tokens:
        by_org[token.organization_id].append(token)
    messages = []
    warned: list[int] = []
    for org_tokens in by_org.values():
        organization = org_tokens[0].organization
        recipients = list(
            Membership.objects.filter(
                organization=organization, role__in=[OrgRole.ADMIN, OrgRole.OWNER]
            ).values_list("user__email", flat=True)
        )
        if not recipients:
            continue
        lines = [
            f"- {t.public_id} (…{t.last4}) of worker {t.worker.name}: expires "
            f"{t.expires_at:%Y-%m-%d %H:%M} UTC"
            for t in org_tokens
        ]
        url = f"{settings.GRANTRY_BASE_URL}/o/{organization.slug}/workers/"
        body = (
            f"These worker tokens of {organization.name} expire within "
            f"{EXPIRY_WARNING_DAYS} days:\n\n"
            + "\n".join(lines)
            + f"\n\nRoll them before they expire: {url}\n"
        )
        messages.append(
            (f"[Grantry] {len(org_tokens)} worker token(s) expire soon", body, recipients)
        )
        warned.extend(t.pk for t in org_tokens)
    WorkerToken.objects.filter(pk__in=warned).update(expiry_warned_at=now)

    def send() -> None:
        for subject, body, recipients in messages:
            send_mail(subject, body, None, recipients)

    transaction.on_commit(send)
    return len(warned)
