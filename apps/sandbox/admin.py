from django.contrib import admin
from django.http import HttpRequest
from oauth2_provider.admin import ApplicationAdmin
from oauth2_provider.models import get_application_model
from typing_extensions import override

from apps.sandbox.models import Project, SandboxApiKey, Task

Application = get_application_model()


class SandboxApplicationAdmin(ApplicationAdmin):
    """DOT's application admin without the client secret: the stored value is a
    hash, and a hash is not shown either. Clients are registered with
    `sandbox_client_register()`, which hands the plaintext secret back once."""

    exclude = ("client_secret",)

    @override
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


# DOT's own admin module registered first (oauth2_provider precedes apps.sandbox).
if admin.site.is_registered(Application):
    admin.site.unregister(Application)
admin.site.register(Application, SandboxApplicationAdmin)


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "created_at")
    search_fields = ("name",)
    raw_id_fields = ("owner",)


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ("title", "project", "done", "priority", "created_at")
    list_filter = ("done",)
    raw_id_fields = ("project",)


@admin.register(SandboxApiKey)
class SandboxApiKeyAdmin(admin.ModelAdmin):
    """Shows the key's last four characters only; the digest is never displayed."""

    list_display = ("name", "user", "masked", "created_at", "revoked_at")
    fields = ("user", "name", "masked", "created_at", "revoked_at")
    readonly_fields = ("user", "name", "masked", "created_at")
    raw_id_fields = ("user",)

    @admin.display(description="Key")
    def masked(self, obj: SandboxApiKey) -> str:
        return f"sbx_…{obj.last4}"

    @override
    def has_add_permission(self, request: HttpRequest) -> bool:
        # Keys are created on the Sandbox page, where the plaintext is shown once.
        return False
