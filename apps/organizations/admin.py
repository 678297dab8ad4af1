from __future__ import annotations

from django.contrib import admin

from apps.organizations.models import Invitation, Membership, Organization


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "max_token_days", "store_broker_input", "created_at"]
    list_filter = ["store_broker_input", "created_at"]
    search_fields = ["name", "slug"]
    readonly_fields = ["created_at"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role", "organization"]
    search_fields = ["user__email", "organization__name", "organization__slug"]
    raw_id_fields = ["user", "organization"]
    readonly_fields = ["created_at"]
    list_select_related = ["user", "organization"]


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    """The key digest never shows: it is the only handle on a live link."""

    list_display = [
        "email",
        "organization",
        "role",
        "invited_by",
        "created_at",
        "expires_at",
        "accepted_at",
        "revoked_at",
    ]
    list_filter = ["role", "organization"]
    search_fields = ["email", "organization__name"]
    exclude = ["key_digest"]
    readonly_fields = [
        "organization",
        "email",
        "invited_by",
        "created_at",
        "accepted_at",
        "accepted_by",
    ]
    list_select_related = ["organization", "invited_by"]

    def has_add_permission(self, request):  # noqa: ANN001, ANN201
        # Invitations are created by invitation_create(), which emails the key.
        return False
