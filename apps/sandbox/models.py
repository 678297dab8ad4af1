"""The Sandbox's own data: a tiny projects-and-tasks SaaS that belongs to its users.

Nothing here is Grantry tenant data. Each row belongs to one sandbox user (a
Django user, because the Sandbox shares Grantry's login session for the demo)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Project(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sandbox_projects"
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.pk,
            "name": self.name,
            "description": self.description,
            "created_at": self.created_at.isoformat(),
        }


class Task(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="tasks")
    title = models.CharField(max_length=300)
    done = models.BooleanField(default=False)
    priority = models.PositiveSmallIntegerField(default=3)
    notes = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.title

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.pk,
            "project_id": self.project_id,
            "title": self.title,
            "done": self.done,
            "priority": self.priority,
            "notes": self.notes,
            "created_at": self.created_at.isoformat(),
        }


class SandboxApiKeyQuerySet(models.QuerySet["SandboxApiKey"]):
    def active(self) -> SandboxApiKeyQuerySet:
        return self.filter(revoked_at__isnull=True)


class SandboxApiKey(models.Model):
    """An API key for the Sandbox API. Only the SHA-256 digest is stored; the
    plaintext is shown once, when the key is created."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sandbox_api_keys"
    )
    name = models.CharField(max_length=100)
    key_digest = models.CharField(max_length=64, unique=True, editable=False)
    last4 = models.CharField(max_length=4, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = SandboxApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        verbose_name = "Sandbox API key"

    def __str__(self) -> str:
        return f"{self.name} (sbx_…{self.last4})"

    def __repr__(self) -> str:
        return f"<SandboxApiKey id={self.pk} name={self.name!r} last4={self.last4!r}>"

    def is_active(self) -> bool:
        return self.revoked_at is None
