"""Django admin for custody models: read-only metadata. Secret fields are excluded;
a read-only column says whether a secret is set ("•••• set"). Connections and
OAuth apps are created, changed and disconnected in the dashboard or the API,
which audit the change; the admin cannot add, change (e.g. move a connection and
its credential to another organization) or delete them."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from typing_extensions import override

from apps.connections.models import SECRET_FIELDS, Connection, OAuthState, ProviderApp


def _secret_state(obj: object, field: str) -> str:
    return "•••• set" if getattr(obj, field) else "—"


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


@admin.register(Connection)
class ConnectionAdmin(ReadOnlyAdmin):
    list_display = (
        "name",
        "organization",
        "provider_key",
        "auth_type",
        "status",
        "expires_at",
        "last_used_at",
    )
    list_filter = ("status", "auth_type", "provider_key")
    search_fields = ("name", "account_label", "organization__slug")
    exclude = SECRET_FIELDS["Connection"]
    readonly_fields = (
        "credential",
        "refresh_credential",
        "created_at",
        "updated_at",
        "last_refreshed_at",
        "last_used_at",
        "revoked_at",
        "revocation_result",
    )

    @admin.display(description="Credential")
    def credential(self, obj: Connection) -> str:
        return _secret_state(obj, "api_key" if obj.auth_type == "api_key" else "access_token")

    @admin.display(description="Refresh token")
    def refresh_credential(self, obj: Connection) -> str:
        return "•••• set" if obj.has_refresh_token else "—"


@admin.register(ProviderApp)
class ProviderAppAdmin(ReadOnlyAdmin):
    list_display = ("provider_key", "organization", "client_id", "updated_at")
    search_fields = ("provider_key", "client_id", "organization__slug")
    exclude = SECRET_FIELDS["ProviderApp"]
    readonly_fields = ("client_secret_state", "created_at", "updated_at")

    @admin.display(description="Client secret")
    def client_secret_state(self, obj: ProviderApp) -> str:
        return _secret_state(obj, "client_secret")


@admin.register(OAuthState)
class OAuthStateAdmin(admin.ModelAdmin):
    list_display = ("provider_key", "organization", "user", "created_at", "expires_at", "used_at")
    exclude = (*SECRET_FIELDS["OAuthState"], "state_digest", "session_digest")
    readonly_fields = ("created_at",)

    @override
    def has_add_permission(self, request: object) -> bool:
        return False

    @override
    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False
