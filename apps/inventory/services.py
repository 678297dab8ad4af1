"""Writes of the inventory: a scan's upload, and each step of a key's way out. Every step
writes its audit event in the same transaction; the provider is asked (through egress)
before a transaction opens, never inside one.

The secrets themselves never stay here: an imported key goes into a connection
(`apps.connections`), the old key after a rotation into a `RetiredCredential` there, and both
are read only by `apps.connections.custody`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit.models import Outcome
from apps.audit.services import audit_record
from apps.connections import services as connections
from apps.connections.models import RetiredCredential
from apps.inventory.models import (
    Finding,
    FindingLocation,
    FindingState,
    fingerprint,
)
from apps.organizations.models import Organization
from apps.policies.models import Role
from apps.policies.services import role_create
from apps.providers.catalog import AuthType
from apps.providers.registry import UnknownProvider, get_provider


@dataclass(frozen=True)
class UploadResult:
    findings_new: int
    findings_seen: int
    locations_gone: int
    findings: list[Finding]


def _audit_state(finding: Finding, actor: Any, **metadata: Any) -> None:
    audit_record(
        action=f"inventory.finding_{finding.state}",
        organization_id=finding.organization_id,
        target=finding,
        provider=finding.provider_key,
        connection_id=finding.connection_id,
        actor=actor,
        metadata={"fingerprint": finding.fingerprint, **metadata},
    )


def _settle(finding: Finding, now: datetime, actor: Any) -> None:
    """Move a key on when no place holds it any more: an imported key whose every place
    was rewritten or is gone is out of the configs; a rotated one is confirmed unused."""
    if finding.locations.present().exists():
        return
    if finding.state == FindingState.IMPORTED:
        finding.state = FindingState.CONFIG_REPLACED
        finding.config_replaced_at = now
    elif finding.state == FindingState.ROTATED:
        finding.state = FindingState.CONFIRMED_UNUSED
        finding.confirmed_at = now
    else:
        return
    finding.save(update_fields=["state", "config_replaced_at", "confirmed_at", "updated_at"])
    _audit_state(finding, actor)


def _finding_for(
    organization: Organization, item: dict[str, Any], now: datetime, actor: Any
) -> tuple[Finding, bool]:
    finding, created = Finding.objects.select_for_update().get_or_create(
        organization=organization,
        fingerprint=item["fingerprint"],
        defaults={
            "provider_key": item.get("provider", ""),
            "kind": item["kind"],
            "label": item["label"],
            "first_seen_at": now,
            "last_seen_at": now,
            "created_by": actor,
        },
    )
    finding.last_seen_at = now
    check = item.get("check")
    if check:
        finding.scope_status = check.get("status", "")[:16]
        finding.scopes = check.get("scopes")
        finding.scope_note = (check.get("note") or "")[:300]
    finding.save()
    return finding, created


@transaction.atomic
def scan_upload(
    *,
    organization: Organization,
    host: str,
    files_scanned: list[str],
    findings: list[dict[str, Any]],
    actor: Any = None,
) -> UploadResult:
    """Record one scan of one host. A place this host's earlier scans reported, in a file
    this scan read, that no longer holds its key is marked gone."""
    now = timezone.now()
    seen: dict[str, Finding] = {}
    new = 0
    present: set[int] = set()
    for item in findings:
        finding = seen.get(item["fingerprint"])
        if finding is None:
            finding, created = _finding_for(organization, item, now, actor)
            seen[finding.fingerprint] = finding
            new += created
        location, _ = FindingLocation.objects.update_or_create(
            finding=finding,
            host=host,
            file=item["file"],
            location=item["location"],
            defaults={
                "organization": organization,
                "line": item.get("line"),
                "client": item.get("client", ""),
                "name": item.get("name", ""),
                "server": item.get("server", ""),
                "program": item.get("program", ""),
                "last_seen_at": now,
                "gone_at": None,
            },
            create_defaults={
                "organization": organization,
                "line": item.get("line"),
                "client": item.get("client", ""),
                "name": item.get("name", ""),
                "server": item.get("server", ""),
                "program": item.get("program", ""),
                "first_seen_at": now,
                "last_seen_at": now,
                "created_by": actor,
            },
        )
        present.add(location.pk)
    gone = (
        FindingLocation.objects.for_organization(organization)
        .filter(host=host, file__in=files_scanned, gone_at__isnull=True)
        .exclude(pk__in=present)
    )
    gone_findings = set(gone.values_list("finding_id", flat=True))
    locations_gone = gone.update(gone_at=now)
    for finding in Finding.objects.for_organization(organization).filter(pk__in=gone_findings):
        _settle(finding, now, actor)
    audit_record(
        action="inventory.scan_uploaded",
        organization=organization,
        actor=actor,
        metadata={
            "host": host[:255],
            "files": len(files_scanned),
            "places": len(findings),
            "keys": len(seen),
            "new_keys": new,
            "places_gone": locations_gone,
        },
    )
    return UploadResult(new, len(seen) - new, locations_gone, list(seen.values()))


class ImportRefused(Exception):
    """The key cannot be imported (the message says why; nothing was saved)."""

    def __init__(self, message: str, *, field: str = "secret", conflict: bool = False) -> None:
        super().__init__(message)
        self.field = field
        self.conflict = conflict


def finding_import(
    *,
    finding: Finding,
    secret: str,
    connection_name: str,
    base_url_params: dict[str, str] | None = None,
    actor: Any = None,
) -> Finding:
    """Move the key into a new API-key connection. The key must be the one this finding
    is (its fingerprint) and the provider must accept it (its identity call, as the
    dashboard's connect does); then the connection and the finding's new state are
    written in one transaction. Raises ImportRefused, CredentialRejected,
    ProviderUnreachable or BaseURLParamError (nothing saved)."""
    secret = secret.strip()
    if finding.state != FindingState.FOUND:
        raise ImportRefused(
            f"This key was imported already ({finding.get_state_display()}).", conflict=True
        )
    if fingerprint(secret) != finding.fingerprint:
        raise ImportRefused("This is not the key of this finding (the fingerprints differ).")
    organization = finding.organization
    try:
        provider = get_provider(finding.provider_key, organization=organization)
    except UnknownProvider:
        raise ImportRefused(
            f"Grantry has no provider for this key ({finding.label}): add it as a custom "
            "provider first, then connect it on the Connections page.",
            field="non_field_errors",
        ) from None
    if AuthType.API_KEY not in provider.auth_types:
        raise ImportRefused(
            f"{provider.display_name} connects to Grantry with OAuth, not a pasted key: connect "
            "it on the Connections page, then rotate this key.",
            field="non_field_errors",
        )
    params = dict(base_url_params or {})
    resolved = connections.resolved_provider(
        provider.key, organization=organization, base_url_params=params
    )
    account_label = connections.fetch_account_label(resolved, secret, params)
    return _save_import(
        finding_id=finding.pk,
        organization=organization,
        provider_key=provider.key,
        name=connection_name,
        secret=secret,
        params=params,
        account_label=account_label,
        actor=actor,
    )


@transaction.atomic
def _save_import(
    *,
    finding_id: int,
    organization: Organization,
    provider_key: str,
    name: str,
    secret: str,
    params: dict[str, str],
    account_label: str,
    actor: Any,
) -> Finding:
    finding = Finding.objects.for_organization(organization).select_for_update().get(pk=finding_id)
    if finding.state != FindingState.FOUND:
        raise ImportRefused("This key was imported meanwhile.", conflict=True)
    try:
        with transaction.atomic():
            connection = connections.connection_save_checked_api_key(
                organization=organization,
                provider_key=provider_key,
                name=name,
                api_key=secret,
                base_url_params=params,
                account_label=account_label,
                created_by=actor if getattr(actor, "pk", None) else None,
            )
    except IntegrityError:
        raise ImportRefused(
            f"A connection named '{name}' exists already.", field="connection_name"
        ) from None
    finding.connection = connection
    finding.state = FindingState.IMPORTED
    finding.imported_at = timezone.now()
    finding.save()
    _audit_state(finding, actor, connection=connection.name)
    _settle(finding, finding.imported_at, actor)
    return finding


@transaction.atomic
def finding_config_replaced(
    *, finding: Finding, host: str, file: str, actor: Any = None
) -> Finding:
    """`grantry rewrite` took the key out of `file` on `host`."""
    finding = Finding.objects.select_for_update().get(pk=finding.pk)
    now = timezone.now()
    changed = finding.locations.present().filter(host=host, file=file).update(replaced_at=now)
    if not changed:
        raise ValidationError(
            {"file": ["The inventory has this key in no such file on that host."]}
        )
    audit_record(
        action="inventory.config_rewritten",
        organization_id=finding.organization_id,
        target=finding,
        provider=finding.provider_key,
        actor=actor,
        metadata={"fingerprint": finding.fingerprint, "host": host[:255], "file": file[:500]},
    )
    _settle(finding, now, actor)
    return finding


def finding_new_key(*, finding: Finding, api_key: str, actor: Any = None) -> Finding:
    """The admin made a new key at the provider: the connection gets it (checked with the
    provider first) and the imported one is retired, held until it is confirmed dead."""
    if finding.connection_id is None or not finding.imported_at:
        raise ValidationError({"api_key": ["Import the key into a connection first."]})
    if not finding.is_live():
        raise ValidationError({"api_key": ["This key was rotated already."]}, code="conflict")
    connections.connection_replace_api_key(
        organization=finding.organization,
        connection_id=finding.connection_id,
        api_key=api_key,
        actor=actor,
    )
    finding.refresh_from_db()
    return finding


def _retired_key(finding: Finding) -> RetiredCredential | None:
    """The imported key, retired: the first key the connection gave up after the import."""
    if finding.connection_id is None or finding.imported_at is None:
        return None
    return (
        RetiredCredential.objects.for_organization(finding.organization_id)
        .filter(connection_id=finding.connection_id, created_at__gte=finding.imported_at)
        .order_by("created_at", "id")
        .first()
    )


class StillLive(Exception):
    """The provider still accepts the old key (recorded; the state did not move)."""


def finding_confirm_rotated(*, finding: Finding, actor: Any = None) -> Finding:
    """Ask the provider with the old key. Refused (401/403): the held copy is purged and
    the key is rotated (confirmed unused if no place holds it any more). Accepted: the
    attempt is recorded and StillLive raised. ProviderUnreachable: nothing concluded."""
    if not finding.is_live() or finding.state == FindingState.FOUND:
        raise ValidationError(
            "Only an imported key that is not rotated yet can be confirmed rotated.",
            code="conflict",
        )
    retired = _retired_key(finding)
    if retired is None:
        raise ValidationError(
            f"Connection '{finding.connection.name if finding.connection else '?'}' still uses "
            "the old key: make a new key at the provider and give it to the connection first "
            "(new-key), or the connection stops working when the old key is revoked.",
            code="conflict",
        )
    if retired.purged_at and not retired.confirmed_dead_at:
        raise ValidationError(
            "The connection was disconnected, and Grantry destroyed the old key with it: "
            "there is nothing left to check. Revoke the old key at the provider.",
            code="conflict",
        )
    if not connections.retired_key_is_dead(retired=retired):
        audit_record(
            action="inventory.rotation_unconfirmed",
            organization_id=finding.organization_id,
            target=finding,
            provider=finding.provider_key,
            outcome=Outcome.FAILURE,
            actor=actor,
            reason="The provider still accepts the old key.",
            metadata={"fingerprint": finding.fingerprint},
        )
        raise StillLive(
            "The provider still accepts the old key: revoke it at the provider, then confirm again."
        )
    return _save_rotated(finding_id=finding.pk, retired=retired, actor=actor)


@transaction.atomic
def _save_rotated(*, finding_id: int, retired: RetiredCredential, actor: Any) -> Finding:
    finding = Finding.objects.select_for_update().get(pk=finding_id)
    if not finding.is_live():
        return finding
    connections.retired_key_confirm_dead(retired=retired, actor=actor)
    finding.state = FindingState.ROTATED
    finding.rotated_at = timezone.now()
    finding.save()
    _audit_state(finding, actor)
    _settle(finding, finding.rotated_at, actor)
    return finding


@transaction.atomic
def finding_role_create(
    *,
    finding: Finding,
    name: str,
    description: str,
    rules: list[dict[str, Any]],
    actor: Any = None,
) -> Role:
    """Save the (edited) proposed role and remember it on the finding."""
    role = role_create(
        organization=finding.organization,
        name=name,
        description=description,
        rules=rules,
        actor=actor,
    )
    Finding.objects.filter(pk=finding.pk).update(role=role)
    audit_record(
        action="inventory.role_created",
        organization_id=finding.organization_id,
        target=finding,
        provider=finding.provider_key,
        actor=actor,
        metadata={"fingerprint": finding.fingerprint, "role": role.pk},
    )
    return role
