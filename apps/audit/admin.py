from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from typing_extensions import override

from apps.audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Strictly read-only: no add, change, delete or bulk actions."""

    list_display = (
        "created_at",
        "organization_id",
        "action",
        "outcome",
        "decision",
        "actor_type",
        "actor_label",
        "target_type",
        "target_label",
        "ip",
    )
    list_filter = ("action", "outcome", "actor_type", "decision")
    search_fields = (
        "action",
        "actor_label",
        "actor_id",
        "target_label",
        "target_id",
        "request_id",
        "=ip",
    )
    date_hierarchy = "created_at"
    actions = None
    list_per_page = 100
    show_full_result_count = False

    @override
    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [field.name for field in self.model._meta.fields]

    @override
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @override
    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @override
    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
