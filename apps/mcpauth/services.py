"""Writes for MCP OAuth: policies, grants (client → worker), issued tokens, revocation.

Every change is audited in its transaction. The access token an OAuth client gets is
a `WorkerToken` with an audience (the /mcp resource URL) and the client's name, so it
authenticates, shows and revokes like any other worker token.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from oauth2_provider.models import get_application_model, get_refresh_token_model

from apps.audit.models import ActorType, Outcome
from apps.audit.services import audit_record
from apps.core.tokens import GeneratedToken, issued_token_create
from apps.mcpauth.models import McpGrant, McpIssuedToken, McpPolicy
from apps.organizations.models import Membership, Organization, OrgRole
from apps.workers import trust
from apps.workers.fence import fence_worker
from apps.workers.models import Worker, WorkerToken
from apps.workers.services import token_revoke, worker_create

# Who may bind a client to a worker: the same people who may mint its tokens.
BIND_ROLE = OrgRole.ADMIN
# Why a refresh revokes the token it replaces (any other revocation ends the family).
REPLACED_BY_REFRESH = "Replaced by a refresh"


def _grant_target(grant: McpGrant) -> dict[str, Any]:
    return {
        "target_type": "mcpgrant",
        "target_id": grant.pk,
        "target_label": f"{grant.label} as {grant.worker.name}",
        "worker_id": grant.worker_id,
    }


def mcp_resource_url() -> str:
    return f"{settings.GRANTRY_BASE_URL}/mcp"


def issuer_url() -> str:
    return f"{settings.GRANTRY_BASE_URL}/oauth"


def policy_for(organization: Organization) -> McpPolicy:
    """The org's policy, or an unsaved one with the defaults."""
    return McpPolicy.objects.filter(organization=organization).first() or McpPolicy(
        organization=organization
    )


def token_seconds(organization: Organization) -> int:
    """Default 1 h (GRANTRY_MCP_TOKEN_SECONDS), capped by the org's own lifetime."""
    return min(int(settings.GRANTRY_MCP_TOKEN_SECONDS), policy_for(organization).token_minutes * 60)


def _shown(value: Any) -> Any:
    """A policy value as an audit diff shows it (a role by name)."""
    return getattr(value, "name", value)


@transaction.atomic
def policy_update(*, organization: Organization, actor: Any, **changes: Any) -> McpPolicy:
    policy = policy_for(organization)
    diff = {}
    for field in ("clients_allowed", "allowed_clients", "token_minutes", "member_role"):
        if field in changes and getattr(policy, field) != changes[field]:
            diff[field] = {"from": _shown(getattr(policy, field)), "to": _shown(changes[field])}
            setattr(policy, field, changes[field])
    if not diff and policy.pk:
        return policy
    if policy.member_role is not None and policy.member_role.organization_id != organization.pk:
        raise ValidationError({"member_role": "Choose a role of this organization."})
    policy.full_clean(exclude=["organization", "member_role"])
    policy.save()
    audit_record(
        action="mcp.policy_changed",
        organization=organization,
        target=organization,
        metadata={"changes": diff},
        actor=actor,
    )
    return policy


def may_bind(membership: Membership) -> bool:
    """May this member connect a client: an admin to any worker, or any member to a
    worker acting for themselves when the organization names a role for that
    (`McpPolicy.member_role`)."""
    return membership.has_at_least(BIND_ROLE) or (
        policy_for(membership.organization).member_role_id is not None
    )


def bindable_memberships(user: Any) -> list[Membership]:
    """The user's memberships that may bind a client to a worker."""
    return [
        m
        for m in Membership.objects.filter(user=user).select_related("organization")
        if may_bind(m)
    ]


@transaction.atomic
def grant_approve(
    *,
    application: Any,
    organization: Organization,
    actor: Any,
    worker: Worker | None = None,
    new_worker_name: str = "",
    role: Any = None,
    for_myself: bool = False,
) -> McpGrant:
    """`actor` lets `application` act as `worker` (or a new worker named
    `new_worker_name` with `role`). Raises PermissionDenied when they may not.

    An admin binds a client to any worker that acts for no one or for the admin;
    `for_myself` makes it a worker acting for the admin (a new one, or one that already
    acts for them). Any other member, when the organization names a role for that
    (`McpPolicy.member_role`), binds a client only to a worker acting for themselves,
    with that role. Nobody binds a client to a worker that acts for someone else: the
    client would act as that person's accounts."""
    membership = Membership.objects.filter(organization=organization, user=actor).first()
    if membership is None or not may_bind(membership):
        raise PermissionDenied("Only an admin of the organization may connect a client.")
    policy = policy_for(organization)
    if not policy.allows(application.client_id):
        raise PermissionDenied("This organization does not allow this OAuth client.")
    admin = membership.has_at_least(BIND_ROLE)
    if not admin:
        for_myself, role = True, policy.member_role
    worker = _grant_worker(
        application=application,
        organization=organization,
        actor=actor,
        worker=worker,
        new_worker_name=new_worker_name,
        role=role,
        for_myself=for_myself,
    )
    role = role if role is not None and role.organization_id == organization.pk else None
    grant = McpGrant.objects.create(
        organization=organization,
        worker=worker,
        role=role or worker.default_role,
        application=application,
        client_id=application.client_id,
        client_name=(application.name or "")[:255],
        approved_by=actor,
    )
    audit_record(
        action="mcp.grant_approved",
        organization=organization,
        metadata={
            "client_id": grant.client_id,
            "client_name": grant.client_name,
            "registration": application.registration_source,
            "role": grant.role.name,
            **({"acts_for": actor.get_username()} if worker.acts_for_id else {}),
        },
        **_grant_target(grant),
        actor=actor,
    )
    return grant


def _grant_worker(
    *,
    application: Any,
    organization: Organization,
    actor: Any,
    worker: Worker | None,
    new_worker_name: str,
    role: Any,
    for_myself: bool,
) -> Worker:
    """The worker a grant binds: `worker`, or a new one (acting for `actor` when
    `for_myself`); never one that acts for someone else, nor a disabled one."""
    if worker is None:
        if role is None or role.organization_id != organization.pk:
            raise ValidationError({"role": "Choose a role of this organization."})
        worker = worker_create(
            organization=organization,
            name=new_worker_name,
            default_role=role,
            description="Created to connect the OAuth client "
            f"{application.name or application.client_id}"
            + (f" for {actor.get_username()}." if for_myself else "."),
            owner=actor,
            acts_for=actor if for_myself else None,
            actor=actor,
        )
    elif worker.organization_id != organization.pk:
        raise PermissionDenied("This worker is not in the organization.")
    if worker.acts_for_id is not None and worker.acts_for_id != actor.pk:
        raise PermissionDenied("This worker acts for another member.")
    if for_myself and worker.acts_for_id != actor.pk:
        raise ValidationError({"worker": "Choose a worker that acts for you, or a new one."})
    if not worker.is_active():
        raise ValidationError({"worker": "This worker is disabled."})
    return worker


def revoked_by_someone(issued: McpIssuedToken) -> bool:
    """The family's latest access token was revoked other than by a refresh (its
    worker page, a kill switch, a leak): the client may not refresh its way back."""
    token = issued.worker_token
    return token.revoked_at is not None and token.revoke_reason != REPLACED_BY_REFRESH


def grant_usable(grant: McpGrant) -> bool:
    """May this grant still get tokens? (not revoked, worker active, client allowed)"""
    return (
        grant.is_active()
        and grant.worker.is_active()
        and policy_for(grant.organization).allows(grant.client_id)
    )


@transaction.atomic
def token_issue(
    *,
    grant: McpGrant,
    generated: GeneratedToken,
    expires_at: datetime,
    token_family: Any,
    refreshed: bool,
    code_digest: str = "",
    dpop_jkt: str = "",
) -> WorkerToken:
    """Store the access token just issued to `grant`'s client as a worker token bound
    to the MCP resource (and to the key of the request's DPoP proof, `dpop_jkt`, when it
    had one). On refresh the family's previous token stops working."""
    replaced: list[str] = []
    if refreshed:
        for issued in McpIssuedToken.objects.filter(
            token_family=token_family, worker_token__revoked_at__isnull=True
        ).select_related("worker_token"):
            token_revoke(token=issued.worker_token, reason=REPLACED_BY_REFRESH)
            replaced.append(issued.worker_token.public_id)
    token, _ = issued_token_create(
        WorkerToken,
        kind="worker",
        generated=generated,
        organization_id=grant.organization_id,
        worker_id=grant.worker_id,
        role_id=grant.role_id,
        created_by=None,
        expires_at=expires_at,
        audience=mcp_resource_url(),
        oauth_client=grant.label[:255],
        dpop_jkt=dpop_jkt,
    )
    McpIssuedToken.objects.create(
        grant=grant, worker_token=token, token_family=token_family, code_digest=code_digest
    )
    audit_record(
        action="mcp.token_issued",
        organization_id=grant.organization_id,
        metadata={
            "client_id": grant.client_id,
            "grant": grant.pk,
            "role": grant.role.name,
            "expires_at": expires_at.isoformat(),
            "refresh": refreshed,
            "replaced": replaced,
            "dpop_jkt": dpop_jkt,
        },
        target_type="workertoken",
        target_id=token.public_id,
        target_label=f"{token.public_id} of {grant.worker.name}",
        worker_id=grant.worker_id,
        token_id=token.public_id,
        actor_type=ActorType.WORKER,
        actor_id=grant.worker_id,
        actor_label=grant.worker.name,
    )
    return token


def _revoke_tokens(issued: Any, *, actor: Any, reason: str) -> list[str]:
    ids = []
    for row in issued.filter(worker_token__revoked_at__isnull=True).select_related("worker_token"):
        token_revoke(token=row.worker_token, actor=actor, reason=reason)
        ids.append(row.worker_token.public_id)
    return ids


@transaction.atomic
def family_revoke(
    *, token_family: Any, reason: str, action: str = "mcp.refresh_reused", by_client: bool = False
) -> None:
    """End every token of one refresh-token family: a refresh token of it was used
    twice (`mcp.refresh_reused`), or the client revoked it (RFC 7009)."""
    issued = McpIssuedToken.objects.filter(token_family=token_family)
    first = issued.select_related("grant", "grant__worker").first()
    if first is None:
        return
    get_refresh_token_model().revoke_family(token_family)
    ids = _revoke_tokens(issued, actor=None, reason=reason)
    grant = first.grant
    if not ids and not grant.is_active():
        return  # the grant was revoked already (and audited then)
    audit_record(
        action=action,
        organization_id=grant.organization_id,
        outcome=Outcome.SUCCESS if by_client else Outcome.FAILURE,
        reason=reason,
        metadata={"client_id": grant.client_id, "revoked_tokens": ids},
        **_grant_target(grant),
        actor_type=ActorType.WORKER,
        actor_id=grant.worker_id,
        actor_label=grant.worker.name,
    )


def code_reuse_revoke(*, code_digest: str, application: Any) -> None:
    """An authorization code was presented again: end every token family bought with
    it (`mcp.code_reused`). Nothing when the code never bought a token."""
    families = (
        McpIssuedToken.objects.filter(code_digest=code_digest, grant__application=application)
        .values_list("token_family", flat=True)
        .distinct()
    )
    for family in list(families):
        family_revoke(
            token_family=family,
            reason="Its authorization code was used twice",
            action="mcp.code_reused",
        )


@transaction.atomic
def grant_revoke(*, grant: McpGrant, actor: Any = None, reason: str = "") -> McpGrant:
    """End a grant now: its access tokens fail on the next call and its refresh
    tokens are refused."""
    grant = McpGrant.objects.select_for_update().select_related("worker").get(pk=grant.pk)
    if grant.revoked_at is not None:
        return grant
    grant.revoked_at = timezone.now()
    grant.revoked_by = actor
    grant.revoke_reason = reason[:200]
    grant.save(update_fields=["revoked_at", "revoked_by", "revoke_reason"])
    families = set(grant.issued.values_list("token_family", flat=True))
    for family in families:
        get_refresh_token_model().revoke_family(family)
    ids = _revoke_tokens(grant.issued.all(), actor=actor, reason="OAuth grant revoked")
    fence_worker(grant.worker_id)
    audit_record(
        action="mcp.grant_revoked",
        organization_id=grant.organization_id,
        metadata={"client_id": grant.client_id, "reason": grant.revoke_reason, "tokens": ids},
        **_grant_target(grant),
        actor=actor,
    )
    return grant


def issued_for_digest(digest: str) -> McpIssuedToken | None:
    return (
        McpIssuedToken.objects.filter(worker_token__digest=digest)
        .select_related("grant", "worker_token")
        .first()
    )


@transaction.atomic
def expire_unused_clients(*, now: datetime | None = None) -> int:
    """Delete dynamically registered clients that never got a grant within
    GRANTRY_MCP_DCR_UNUSED_HOURS (CIMD clients are re-created from their URL on demand),
    except those a company IdP's trust policy names (they get tokens by ID-JAG, no grant)."""
    now = now or timezone.now()
    application_model = get_application_model()
    cutoff = now - timedelta(hours=int(settings.GRANTRY_MCP_DCR_UNUSED_HOURS))
    stale = application_model.objects.filter(
        registration_source__in=[
            application_model.RegistrationSource.DCR,
            application_model.RegistrationSource.CIMD,
        ],
        created__lt=cutoff,
        mcp_grants__isnull=True,
    ).exclude(client_id__in=trust.idjag_client_ids())
    count = stale.count()
    stale.delete()
    return count
