"""Django admin for workers and tokens: metadata only, never a digest or raw token.

Tokens are minted in the dashboard or the API (where the raw value is shown
once); here they can only be inspected and revoked, through the service."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from typing_extensions import override

from apps.workers.models import Worker, WorkerToken
from apps.workers.services import token_revoke, worker_disable

TOKEN_FIELDS = (
    "public_id",
    "last4",
    "organization",
    "worker",
    "role",
    "created_by",
    "created_at",
    "expires_at",
    "revoked_at",
    "revoked_by",
    "revoke_reason",
    "rolled_from",
    "last_used_at",
    "last_used_ip",
    "expiry_warned_at",
)


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ("name", "organization", "status", "default_role", "owner", "created_at")
    list_filter = ("status",)
    search_fields = ("name", "organization__slug")
    readonly_fields = ("organization", "created_by", "created_at", "status")
    fields = (
        "organization",
        "name",
        "description",
        "owner",
        "default_role",
        "status",
        "created_by",
        "created_at",
    )
    actions = ("disable_workers",)

    @override
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # workers are created in the dashboard or API (audited there)

    @override
    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Disable selected workers (all their tokens fail)")
    def disable_workers(self, request: HttpRequest, queryset: QuerySet[Worker]) -> None:
        for worker in queryset:
            worker_disable(worker=worker, actor=request.user)
        messages.success(request, f"Disabled {queryset.count()} worker(s).")


@admin.register(WorkerToken)
class WorkerTokenAdmin(admin.ModelAdmin):
    list_display = (
        "public_id",
        "last4",
        "worker",
        "organization",
        "role",
        "expires_at",
        "revoked_at",
        "last_used_at",
    )
    list_filter = ("revoked_at",)
    search_fields = ("public_id", "worker__name", "organization__slug")
    fields = TOKEN_FIELDS
    readonly_fields = TOKEN_FIELDS
    actions = ("revoke_tokens",)

    @override
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @override
    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Revoke selected tokens")
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[WorkerToken]) -> None:
        for token in queryset:
            token_revoke(
                token=token,
                actor=request.user,
                reason="Revoked in Django admin",
            )
        messages.success(request, f"Revoked {queryset.count()} token(s).")
