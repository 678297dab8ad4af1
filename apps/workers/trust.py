"""Trust policies: which outside identities (a CI job's or a pod's signed OIDC token) may
become a worker, and the short-lived token such an identity gets.

A policy names an issuer, the audience its tokens must carry, and conditions on their
claims: each {"claim": name, "value": v}, where `v` is an exact value or an fnmatch glob
(`*`, `?`, `[…]`); all must match. A policy without a condition would let every workload
of a shared issuer in (every repository on GitHub), so the preset's identifying claim is
required (`repository` for GitHub Actions, `project_path` for GitLab CI, `sub` otherwise),
and its value may not be wildcards alone. Verifying the token and the RFC 8693 exchange
live with the OAuth server (apps.mcpauth.exchange); this module owns the rows, the
matching rule and the mint, each write audited in its transaction.

The ID-JAG preset is the same rule for MCP's enterprise-managed authorization: the issuer is
the company's own identity provider, the audience is Grantry's OAuth issuer, `clients` lists
the MCP client ids the company lets in (exact, at least one), and claim conditions are
optional (a multi-tenant issuer needs one, e.g. its tenant claim). The grant itself is
verified in apps.mcpauth.idjag.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.audit.models import ActorType
from apps.audit.services import audit_record
from apps.core.tokens import issued_token_create
from apps.workers.fence import fence_worker
from apps.workers.models import (
    MAX_TRUST_MINUTES,
    TrustPolicy,
    TrustPreset,
    Worker,
    WorkerToken,
)

MAX_CONDITIONS = 10
MAX_CLIENTS = 20
WILDCARDS = frozenset("*?[]!")


@dataclass(frozen=True)
class Preset:
    issuer: str  # "" when each policy names its own (a cluster's, a generic issuer's)
    required_claim: str
    claims: tuple[str, ...]  # the claims worth matching on, for the form's hint


PRESETS: dict[str, Preset] = {
    TrustPreset.GITHUB: Preset(
        "https://token.actions.githubusercontent.com",
        "repository",
        ("repository", "ref", "environment", "workflow_ref", "repository_owner", "sub"),
    ),
    TrustPreset.GITLAB: Preset(
        "https://gitlab.com",
        "project_path",
        ("project_path", "ref", "ref_type", "environment", "namespace_path", "sub"),
    ),
    TrustPreset.KUBERNETES: Preset(
        "", "sub", ("sub", "kubernetes.io.namespace", "kubernetes.io.serviceaccount.name")
    ),
    TrustPreset.OIDC: Preset("", "sub", ("sub",)),
    # No required claim: the issuer is the company's own, and `clients` names who may come.
    TrustPreset.IDJAG: Preset("", "", ("sub", "email", "tid")),
}


def default_audience() -> str:
    """The audience a policy expects unless told otherwise: Grantry's own URL."""
    return str(settings.GRANTRY_BASE_URL)


def oauth_issuer() -> str:
    """Grantry's OAuth issuer identifier (RFC 8414; apps.mcpauth.services.issuer_url), the
    one audience an ID-JAG may carry."""
    return f"{settings.GRANTRY_BASE_URL}/oauth"


def _issuer_clean(preset: Preset, issuer: str) -> str:
    issuer = (issuer or preset.issuer).strip().rstrip("/")
    if preset.issuer and issuer != preset.issuer:
        raise ValidationError({"issuer": f"This preset's issuer is {preset.issuer}."})
    allowed = ("https://", "http://") if settings.GRANTRY_EGRESS_ALLOW_LOOPBACK else ("https://",)
    if not issuer.startswith(allowed) or len(issuer) > 255:
        raise ValidationError({"issuer": "Give the issuer's https URL (its `iss` claim)."})
    return issuer


def conditions_clean(preset_key: str, conditions: Any) -> list[dict[str, str]]:
    """The conditions as stored, or a ValidationError on `conditions`."""
    preset = PRESETS[preset_key]
    conditions = [] if conditions is None else conditions
    least = 1 if preset.required_claim else 0
    if not isinstance(conditions, list) or not least <= len(conditions) <= MAX_CONDITIONS:
        raise ValidationError(
            {"conditions": f"Give between {least} and {MAX_CONDITIONS} claim conditions."}
        )
    cleaned: list[dict[str, str]] = []
    for item in conditions:
        claim = item.get("claim") if isinstance(item, dict) else None
        value = item.get("value") if isinstance(item, dict) else None
        if not isinstance(claim, str) or not isinstance(value, str) or not claim or not value:
            raise ValidationError({"conditions": "Each condition is {claim, value}, both text."})
        if len(claim) > 100 or len(value) > 255:
            raise ValidationError({"conditions": "A claim name or value is too long."})
        cleaned.append({"claim": claim.strip(), "value": value.strip()})
    if not preset.required_claim:
        return cleaned
    required = [c for c in cleaned if c["claim"] == preset.required_claim]
    if not required or all(set(c["value"]) <= WILDCARDS for c in required):
        raise ValidationError(
            {
                "conditions": f"Match the `{preset.required_claim}` claim on a value "
                "(not wildcards alone): without it any workload of the issuer gets in."
            }
        )
    return cleaned


def clients_clean(preset_key: str, clients: Any) -> list[str]:
    """The MCP client ids an ID-JAG policy lets in (exact ids, no globs: a company names
    the clients it vetted), or a ValidationError on `clients`. Other presets have none."""
    clients = clients or []
    if preset_key != TrustPreset.IDJAG:
        if clients:
            raise ValidationError({"clients": "Only the ID-JAG preset names MCP clients."})
        return []
    if not isinstance(clients, list) or not 1 <= len(clients) <= MAX_CLIENTS:
        raise ValidationError(
            {"clients": f"Name between 1 and {MAX_CLIENTS} MCP client ids (their `client_id`)."}
        )
    cleaned: list[str] = []
    for client in clients:
        if not isinstance(client, str) or not client.strip() or len(client.strip()) > 255:
            raise ValidationError({"clients": "Each MCP client id is text of 1 to 255 characters."})
        if set(client) & WILDCARDS or any(c.isspace() for c in client.strip()):
            raise ValidationError({"clients": "Give exact client ids, no wildcards or spaces."})
        if client.strip() not in cleaned:
            cleaned.append(client.strip())
    return cleaned


def idjag_candidates(issuer: str) -> list[TrustPolicy]:
    """Every enabled ID-JAG policy for `issuer`, of any organization, oldest first: the one
    read that crosses organizations, because an ID-JAG names none (its issuer, client and
    claims choose; apps.mcpauth.idjag refuses a grant that more than one organization's
    policies accept)."""
    return list(
        TrustPolicy.objects.filter(preset=TrustPreset.IDJAG, enabled=True, issuer=issuer)
        .select_related("role", "worker", "organization")
        .order_by("id")
    )


def idjag_client_ids() -> set[str]:
    """The MCP client ids any ID-JAG policy names (their registrations are kept)."""
    ids: set[str] = set()
    for clients in TrustPolicy.objects.filter(preset=TrustPreset.IDJAG).values_list(
        "clients", flat=True
    ):
        ids.update(c for c in clients if isinstance(c, str))
    return ids


def _claim_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int):
        return str(value)
    return None  # lists and objects never match


def _claim(claims: dict[str, Any], name: str) -> Any:
    """A claim by name; Kubernetes nests its own (`kubernetes.io.namespace` reads
    claims["kubernetes.io"]["namespace"])."""
    if name in claims:
        return claims[name]
    head, dot, rest = name.rpartition(".")
    while dot:
        outer = claims.get(head)
        if isinstance(outer, dict):
            return _claim(outer, rest)
        head, dot, tail = head.rpartition(".")
        rest = f"{tail}.{rest}"
    return None


def claims_match(policy: TrustPolicy, claims: dict[str, Any]) -> dict[str, str] | None:
    """The claims that matched (name → value) when every condition holds, else None."""
    matched: dict[str, str] = {}
    for condition in policy.conditions:
        value = _claim_text(_claim(claims, condition["claim"]))
        if value is None or not fnmatch.fnmatchcase(value, condition["value"]):
            return None
        matched[condition["claim"]] = value
    return matched


def _target(policy: TrustPolicy) -> dict[str, Any]:
    return {
        "target_type": "trustpolicy",
        "target_id": policy.pk,
        "target_label": f"{policy.get_preset_display()} → {policy.worker.name}",
        "worker_id": policy.worker_id,
    }


@transaction.atomic
def trust_policy_create(
    *,
    worker: Worker,
    preset: str,
    role: Any,
    conditions: Any = None,
    issuer: str = "",
    audience: str = "",
    clients: Any = None,
    max_minutes: int = 15,
    enabled: bool = True,
    actor: Any = None,
) -> TrustPolicy:
    if preset not in PRESETS:
        raise ValidationError({"preset": f"Choose one of: {', '.join(PRESETS)}."})
    if preset == TrustPreset.IDJAG:
        # The draft fixes it: an ID-JAG's `aud` is the issuer of the authorization server.
        if audience and audience.strip() != oauth_issuer():
            raise ValidationError(
                {"audience": f"An ID-JAG's audience is Grantry's OAuth issuer, {oauth_issuer()}."}
            )
        audience = oauth_issuer()
        if worker.acts_for_id is not None:
            # An ID-JAG names whoever the IdP signed in, not this member: each of the
            # IdP's people would act as the member's personal connections.
            raise ValidationError(
                {
                    "worker": "A company IdP cannot let MCP clients in as a worker that acts "
                    "for a member."
                }
            )
    if role is None or role.organization_id != worker.organization_id:
        raise ValidationError({"role": "Choose a role of this organization."})
    if not 1 <= int(max_minutes) <= MAX_TRUST_MINUTES:
        raise ValidationError({"max_minutes": f"Choose between 1 and {MAX_TRUST_MINUTES}."})
    audience = (audience or default_audience()).strip()
    if not audience or len(audience) > 255:
        raise ValidationError({"audience": "Give the audience the tokens carry (`aud`)."})
    policy = TrustPolicy.objects.create(
        organization_id=worker.organization_id,
        worker=worker,
        preset=preset,
        issuer=_issuer_clean(PRESETS[preset], issuer),
        audience=audience,
        conditions=conditions_clean(preset, conditions),
        clients=clients_clean(preset, clients),
        role=role,
        max_minutes=int(max_minutes),
        enabled=enabled,
        created_by=actor,
    )
    audit_record(
        action="worker.trust_policy_added",
        organization_id=worker.organization_id,
        metadata={
            "preset": preset,
            "issuer": policy.issuer,
            "audience": policy.audience,
            "conditions": policy.conditions,
            "clients": policy.clients,
            "role": role.name,
            "max_minutes": policy.max_minutes,
            "enabled": enabled,
        },
        **_target(policy),
        actor=actor,
    )
    return policy


@transaction.atomic
def trust_policy_set_enabled(
    *, policy: TrustPolicy, enabled: bool, actor: Any = None
) -> TrustPolicy:
    """Turn a policy off (no new exchange; the tokens it let in are revoked) or on again."""
    policy = TrustPolicy.objects.select_for_update().select_related("worker").get(pk=policy.pk)
    if policy.enabled == enabled:
        return policy
    policy.enabled = enabled
    policy.save(update_fields=["enabled", "updated_at"])
    ids: list[str] = []
    if not enabled:
        ids = _revoke_tokens_of(policy, actor=actor, reason="Its trust policy was disabled")
    audit_record(
        action="worker.trust_policy_changed",
        organization_id=policy.organization_id,
        metadata={
            "changes": {"enabled": {"from": not enabled, "to": enabled}},
            "revoked_tokens": ids,
        },
        **_target(policy),
        actor=actor,
    )
    return policy


def _revoke_tokens_of(policy: TrustPolicy, *, actor: Any, reason: str) -> list[str]:
    ids = list(
        WorkerToken.objects.filter(trust_policy=policy, revoked_at__isnull=True)
        .select_for_update(no_key=True)
        .order_by("pk")
        .values_list("public_id", flat=True)
    )
    WorkerToken.objects.filter(public_id__in=ids).update(
        revoked_at=timezone.now(), revoked_by=actor, revoke_reason=reason
    )
    fence_worker(policy.worker_id)
    return ids


@transaction.atomic
def trust_policy_delete(*, policy: TrustPolicy, actor: Any = None) -> int:
    """Delete a policy; the tokens it let in are revoked at once. Returns how many."""
    policy = TrustPolicy.objects.select_related("worker").get(pk=policy.pk)
    ids = _revoke_tokens_of(policy, actor=actor, reason="Its trust policy was deleted")
    audit_record(
        action="worker.trust_policy_removed",
        organization_id=policy.organization_id,
        metadata={"issuer": policy.issuer, "conditions": policy.conditions, "revoked_tokens": ids},
        **_target(policy),
        actor=actor,
    )
    policy.delete()
    return len(ids)


@transaction.atomic
def exchanged_token_mint(
    *,
    policy: TrustPolicy,
    subject: str,
    matched: dict[str, str],
    subject_expires_at: datetime | None = None,
    dpop_jkt: str = "",
    now: datetime | None = None,
    max_seconds: int | None = None,
    audience: str = "",
    oauth_client: str = "",
    action: str = "token.exchanged",
    details: dict[str, Any] | None = None,
) -> tuple[WorkerToken, str]:
    """The worker token an accepted exchange gets: the policy's worker and role, until the
    policy's maximum, `max_seconds` or the subject token's own expiry, whichever is first,
    bound to the key of the request's DPoP proof when it had one (`dpop_jkt`; a worker that
    requires DPoP gets no unbound token). Audited as `action` (`token.exchanged`;
    `mcp.id_jag_accepted` for an ID-JAG, whose token is bound to the /mcp `audience` and
    names its `oauth_client` like the tokens of the MCP OAuth flow), naming the outside
    identity (issuer, subject, matched claims)."""
    now = now or timezone.now()
    worker = Worker.objects.select_related("organization").get(pk=policy.worker_id)
    if not worker.is_active():
        raise ValidationError({"worker": "This worker is disabled."})
    if worker.require_dpop and not dpop_jkt:
        raise ValidationError({"dpop_jkt": "This worker requires DPoP."})
    ends = [now + timedelta(minutes=policy.max_minutes)]
    if subject_expires_at is not None:
        ends.append(subject_expires_at)
    if max_seconds is not None:
        ends.append(now + timedelta(seconds=max_seconds))
    expires_at = min(ends)
    label = "ID-JAG" if oauth_client else "Exchanged"
    token, raw = issued_token_create(
        WorkerToken,
        kind="worker",
        organization_id=worker.organization_id,
        worker=worker,
        role_id=policy.role_id,
        name=f"{label}: {subject}"[:100],
        created_by=None,
        expires_at=expires_at,
        trust_policy=policy,
        dpop_jkt=dpop_jkt,
        audience=audience,
        oauth_client=oauth_client[:255],
    )
    audit_record(
        action=action,
        organization_id=worker.organization_id,
        metadata={
            "issuer": policy.issuer,
            "subject": subject,
            "matched_claims": matched,
            "trust_policy": policy.pk,
            "role": policy.role.name,
            "expires_at": expires_at.isoformat(),
            "dpop_jkt": dpop_jkt,
            **(details or {}),
        },
        target_type="workertoken",
        target_id=token.public_id,
        target_label=f"{token.public_id} of {worker.name}",
        worker_id=worker.pk,
        token_id=token.public_id,
        actor_type=ActorType.WORKER,
        actor_id=worker.pk,
        actor_label=worker.name,
    )
    return token, raw
