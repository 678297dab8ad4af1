"""Django admin for personal API tokens: metadata only, never the digest."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from typing_extensions import override

from apps.accounts.models import PersonalAPIToken
from apps.accounts.services import personal_token_revoke

FIELDS = (
    "public_id",
    "last4",
    "name",
    "user",
    "organization",
    "created_at",
    "expires_at",
    "revoked_at",
    "last_used_at",
)


@admin.register(PersonalAPIToken)
class PersonalAPITokenAdmin(admin.ModelAdmin):
    list_display = ("name", "public_id", "user", "organization", "expires_at", "revoked_at")
    search_fields = ("public_id", "name", "user__email", "organization__slug")
    fields = FIELDS
    readonly_fields = FIELDS
    actions = ("revoke_tokens",)

    @override
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # minted by their owner at /accounts/tokens/, shown once there

    @override
    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Revoke selected tokens")
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[PersonalAPIToken]) -> None:
        for token in queryset:
            personal_token_revoke(token=token, actor=request.user)
        messages.success(request, f"Revoked {queryset.count()} token(s).")
