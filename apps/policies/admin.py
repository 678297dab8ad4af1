"""Django admin: read-only. Role changes go through the dashboard or the API,
which validate the rules and write the audit trail."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from typing_extensions import override

from apps.policies.models import Role, Rule


class ReadOnlyAdmin(admin.ModelAdmin):
    @override
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @override
    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @override
    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class RuleInline(admin.TabularInline):
    model = Rule
    extra = 0
    can_delete = False
    fields = (
        "position",
        "kind",
        "provider_key",
        "action_pattern",
        "action_class",
        "connection",
        "methods",
        "path_glob",
        "constraints",
        "rate_limit_per_minute",
    )
    readonly_fields = fields

    @override
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @override
    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Role)
class RoleAdmin(ReadOnlyAdmin):
    list_display = ("name", "organization", "updated_at")
    list_filter = ("organization",)
    search_fields = ("name", "organization__slug")
    inlines = (RuleInline,)


@admin.register(Rule)
class RuleAdmin(ReadOnlyAdmin):
    list_display = ("role", "kind", "provider_key", "action_pattern", "action_class", "connection")
    list_filter = ("kind", "provider_key")
    list_select_related = ("role", "connection")
