"""Management API routes of MCP clients, mounted under /api/v1/orgs/<org_slug>/."""

from django.urls import path

from apps.mcpauth import api

urlpatterns = [
    path("mcp/policy/", api.McpPolicyAPIView.as_view(), name="mcp-policy"),
    path("mcp/grants/", api.McpGrantListAPIView.as_view(), name="mcp-grant-list"),
    path(
        "mcp/grants/<int:grant_id>/", api.McpGrantDetailAPIView.as_view(), name="mcp-grant-detail"
    ),
    path(
        "mcp/grants/<int:grant_id>/revoke/",
        api.McpGrantRevokeAPIView.as_view(),
        name="mcp-grant-revoke",
    ),
]
