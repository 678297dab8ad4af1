"""Django admin for custom providers: read-only. They are created, changed and
deleted in the dashboard, whose services validate (e.g. no new host while
connections are live) and write the audit trail."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from apps.providers.models import CustomAction, CustomProvider


class _ReadOnly:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:  # noqa: ARG002 - shared by ModelAdmin and inlines
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:  # noqa: ARG002 - shared by ModelAdmin and inlines
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:  # noqa: ARG002 - shared by ModelAdmin and inlines
        return False


class CustomActionInline(_ReadOnly, admin.TabularInline):
    model = CustomAction
    extra = 0
    can_delete = False
    fields = ("name", "action_class", "method", "path", "description", "input_schema", "scopes")
    readonly_fields = fields


@admin.register(CustomProvider)
class CustomProviderAdmin(_ReadOnly, admin.ModelAdmin):
    list_display = ("display_name", "key", "organization", "auth_type", "api_base_url")
    list_filter = ("auth_type",)
    search_fields = ("display_name", "slug", "organization__name")
    readonly_fields = ("created_by", "created_at", "updated_at")
    list_select_related = ("organization",)
    inlines = (CustomActionInline,)
