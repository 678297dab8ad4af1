from django.apps import AppConfig


class McpAuthConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "apps.mcpauth"
    label = "mcpauth"
    verbose_name = "MCP OAuth"
