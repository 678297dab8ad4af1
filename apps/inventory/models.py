"""The inventory of raw keys agents hold, as the `grantry` CLI reports it (never a
secret: a key is known by its fingerprint), and each key's way out.

A `Finding` is one raw key of an organization (one fingerprint), with its state:
found → imported (its secret now in a connection) → config replaced (no agent config
holds it any more) → rotated (the provider refuses it; Grantry's copy purged) →
confirmed unused (rotated, and no later scan finds it anywhere). A `FindingLocation`
is one place the key sits: host, file, JSON/TOML path or line, and the MCP server or
program that uses it."""

from __future__ import annotations

import hashlib
import secrets

from django.db import models

from apps.core.models import TenantModel, TenantQuerySet, organization_key


def new_public_id() -> str:
    return "fnd_" + secrets.token_urlsafe(12)


def fingerprint(secret: str) -> str:
    """The CLI's fingerprint of a key (grantry_cli.detect.fingerprint, the same formula;
    apps/inventory/tests check that the two agree)."""
    digest = hashlib.sha256(b"grantry-fingerprint:v1:" + secret.encode()).hexdigest()
    return f"fp_{digest[:24]}"


class FindingState(models.TextChoices):
    FOUND = "found", "Found"
    IMPORTED = "imported", "Imported"
    CONFIG_REPLACED = "config_replaced", "Config replaced"
    ROTATED = "rotated", "Old key rotated"
    CONFIRMED_UNUSED = "confirmed_unused", "Confirmed unused"


LIVE_STATES = (FindingState.FOUND, FindingState.IMPORTED, FindingState.CONFIG_REPLACED)


class FindingQuerySet(TenantQuerySet["Finding"]):
    def live(self) -> FindingQuerySet:
        """Keys the provider may still accept: not yet rotated."""
        return self.filter(state__in=LIVE_STATES)


class Finding(TenantModel):
    organization = organization_key(related_name="inventory_findings")
    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    fingerprint = models.CharField(max_length=40)
    provider_key = models.CharField(max_length=60, blank=True)
    kind = models.CharField(max_length=60)
    label = models.CharField(max_length=100)
    # From `grantry scan --check`: None when the provider does not tell.
    scopes = models.JSONField(null=True, blank=True)
    scope_status = models.CharField(max_length=16, blank=True)
    scope_note = models.CharField(max_length=300, blank=True)
    state = models.CharField(
        max_length=20, choices=FindingState.choices, default=FindingState.FOUND
    )
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    connection = models.ForeignKey(
        "connections.Connection",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="inventory_findings",
    )
    role = models.ForeignKey(
        "policies.Role", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    imported_at = models.DateTimeField(null=True, blank=True)
    config_replaced_at = models.DateTimeField(null=True, blank=True)
    rotated_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)

    objects = FindingQuerySet.as_manager()

    class Meta:
        ordering = ["-first_seen_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "fingerprint"], name="uniq_finding_fingerprint"
            )
        ]

    def __str__(self) -> str:
        return f"{self.label} {self.fingerprint}"

    def __repr__(self) -> str:
        return f"<Finding {self.public_id} {self.provider_key or '?'} {self.state}>"

    def is_live(self) -> bool:
        return self.state in LIVE_STATES


class FindingLocationQuerySet(TenantQuerySet["FindingLocation"]):
    def present(self) -> FindingLocationQuerySet:
        """Places that still hold the key as far as Grantry knows."""
        return self.filter(gone_at__isnull=True, replaced_at__isnull=True)


class FindingLocation(TenantModel):
    organization = organization_key(related_name="inventory_locations")
    finding = models.ForeignKey(Finding, on_delete=models.CASCADE, related_name="locations")
    host = models.CharField(max_length=255)
    file = models.CharField(max_length=1000)
    location = models.CharField(max_length=500)
    line = models.PositiveIntegerField(null=True, blank=True)
    client = models.CharField(max_length=40, blank=True)
    name = models.CharField(max_length=200, blank=True)
    server = models.CharField(max_length=200, blank=True)
    program = models.CharField(max_length=300, blank=True)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    gone_at = models.DateTimeField(null=True, blank=True)  # a later scan of the file
    replaced_at = models.DateTimeField(null=True, blank=True)  # `grantry rewrite`

    objects = FindingLocationQuerySet.as_manager()

    class Meta:
        ordering = ["host", "file", "location"]
        constraints = [
            models.UniqueConstraint(
                fields=["finding", "host", "file", "location"], name="uniq_finding_location"
            )
        ]

    def __str__(self) -> str:
        return f"{self.host}:{self.file} {self.location}"

    def is_present(self) -> bool:
        return self.gone_at is None and self.replaced_at is None
