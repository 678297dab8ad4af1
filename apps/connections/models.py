"""Custody: the SaaS credentials an organization holds.

Secret columns are encrypted at rest (django-cryptography, keyed by
GRANTRY_ENCRYPTION_KEY). Only `apps.connections.custody` reads them."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django_cryptography.fields import encrypt


class ConnectionStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    NEEDS_REAUTH = "needs_reauth", "Needs re-auth"
    REVOKED = "revoked", "Revoked"
    ERROR = "error", "Error"


class ConnectionQuerySet(models.QuerySet["Connection"]):
    def for_organization(self, organization: object) -> ConnectionQuerySet:
        return self.filter(organization=organization)

    def usable(self) -> ConnectionQuerySet:
        return self.filter(status=ConnectionStatus.ACTIVE)


class Connection(models.Model):
    organization = models.ForeignKey(
        "organizations.Organization", on_delete=models.CASCADE, related_name="connections"
    )
    provider_key = models.CharField(max_length=60)
    name = models.SlugField(max_length=60, help_text="Unique name within the organization.")
    auth_type = models.CharField(max_length=16)  # providers.catalog.AuthType
    account_label = models.CharField(max_length=200, blank=True)
    scopes = models.JSONField(default=list, blank=True)
    status = models.CharField(
        max_length=16, choices=ConnectionStatus.choices, default=ConnectionStatus.ACTIVE
    )
    status_detail = models.CharField(max_length=300, blank=True)

    access_token = encrypt(models.TextField(blank=True, default=""))
    refresh_token = encrypt(models.TextField(blank=True, default=""))
    expires_at = models.DateTimeField(null=True, blank=True)
    last_refreshed_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ConnectionQuerySet.as_manager()

    class Meta:
        ordering = ["organization", "name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="uniq_connection_name")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.provider_key})"

    def __repr__(self) -> str:
        return f"<Connection {self.pk} {self.provider_key}:{self.name} {self.status}>"
