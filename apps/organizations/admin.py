from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest
from typing_extensions import override

from apps.audit.services import audit_record
from apps.organizations.models import Invitation, Membership, Organization


class AuditedAdmin(admin.ModelAdmin):
    """Staff edits are security changes too: each one writes an audit event in
    the admin's own transaction (the change form and delete view are atomic)."""

    def _audit(self, request: HttpRequest, obj: Model, verb: str, changed: list[str]) -> None:
        organization_id = obj.pk if isinstance(obj, Organization) else obj.organization_id  # type: ignore[attr-defined]
        audit_record(
            action=f"admin.{obj._meta.model_name}.{verb}",
            organization_id=organization_id,
            actor=request.user,
            target=obj,
            metadata={"changed_fields": changed, "via": "django-admin"},
        )

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        changed = sorted(form.changed_data) if form is not None else []
        self._audit(request, obj, "changed" if change else "added", changed)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self._audit(request, obj, "deleted", [])
        super().delete_model(request, obj)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        super().save_formset(request, form, formset, change)
        for obj in formset.new_objects:
            self._audit(request, obj, "added", [])
        for obj, fields in formset.changed_objects:
            self._audit(request, obj, "changed", sorted(fields))
        for obj in formset.deleted_objects:
            self._audit(request, obj, "deleted", [])

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for obj in queryset:
            self._audit(request, obj, "deleted", [])
        super().delete_queryset(request, queryset)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ("user",)
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)


@admin.register(Organization)
class OrganizationAdmin(AuditedAdmin):
    list_display = ("name", "slug", "max_token_days", "store_broker_input", "created_at")
    list_filter = ("store_broker_input", "created_at")
    search_fields = ("name", "slug")
    readonly_fields = ("created_at",)
    inlines = (MembershipInline,)


@admin.register(Membership)
class MembershipAdmin(AuditedAdmin):
    list_display = ("user", "organization", "role", "created_at")
    list_filter = ("role", "organization")
    search_fields = ("user__email", "organization__name", "organization__slug")
    raw_id_fields = ("user", "organization")
    readonly_fields = ("created_at",)
    list_select_related = ("user", "organization")


@admin.register(Invitation)
class InvitationAdmin(AuditedAdmin):
    """The key digest never shows: it is the only handle on a live link."""

    list_display = (
        "email",
        "organization",
        "role",
        "invited_by",
        "created_at",
        "expires_at",
        "accepted_at",
        "revoked_at",
    )
    list_filter = ("role", "organization")
    search_fields = ("email", "organization__name")
    exclude = ("key_digest",)
    readonly_fields = (
        "organization",
        "email",
        "invited_by",
        "created_at",
        "accepted_at",
        "accepted_by",
    )
    list_select_related = ("organization", "invited_by")

    @override
    def has_add_permission(self, request: HttpRequest) -> bool:
        # Invitations are created by invitation_create(), which emails the key.
        return False
