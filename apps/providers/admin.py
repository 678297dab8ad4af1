from django.contrib import admin

from apps.providers.models import CustomAction, CustomProvider


class CustomActionInline(admin.TabularInline):
    model = CustomAction
    extra = 0
    fields = ("name", "action_class", "method", "path", "description", "input_schema", "scopes")


@admin.register(CustomProvider)
class CustomProviderAdmin(admin.ModelAdmin):
    list_display = ("display_name", "key", "organization", "auth_type", "api_base_url")
    list_filter = ("auth_type",)
    search_fields = ("display_name", "slug", "organization__name")
    readonly_fields = ("created_by", "created_at", "updated_at")
    list_select_related = ("organization",)
    inlines = [CustomActionInline]

    def get_readonly_fields(self, request, obj=None):  # noqa: ANN001, ANN201
        # The slug is the catalog key that rules and connections refer to.
        fields = super().get_readonly_fields(request, obj)
        return (*fields, "slug", "organization") if obj is not None else fields
