"""Reads about connections that are more than one line."""

from __future__ import annotations

from typing import Any

from django.apps import apps as django_apps
from django.db.models import Q
from django.utils import timezone


def connection_users(connection: Any) -> tuple[list[str], list[str]]:
    """(role names, worker names) that can use `connection`: roles with a rule naming
    it, or a rule for any connection of its provider, and the workers those roles
    govern (default role, or a token that still works). Policies and workers sit
    above connections, so their models are looked up by name (as apps.audit.selectors
    does) and nothing here is imported upward."""
    rule: Any = django_apps.get_model("policies", "Rule")
    role: Any = django_apps.get_model("policies", "Role")
    worker: Any = django_apps.get_model("workers", "Worker")
    role_ids = set(
        rule.objects.filter(role__organization_id=connection.organization_id)
        .filter(
            Q(connection=connection)
            | Q(connection__isnull=True, provider_key=connection.provider_key)
        )
        .values_list("role_id", flat=True)
    )
    if not role_ids:
        return [], []
    roles = list(
        role.objects.filter(pk__in=role_ids).order_by("name").values_list("name", flat=True)
    )
    working = Q(
        tokens__role_id__in=role_ids,
        tokens__revoked_at__isnull=True,
        tokens__expires_at__gt=timezone.now(),
    )
    workers = list(
        worker.objects.filter(organization_id=connection.organization_id)
        .filter(Q(default_role_id__in=role_ids) | working)
        .order_by("name")
        .values_list("name", flat=True)
        .distinct()[:100]
    )
    return roles, workers
