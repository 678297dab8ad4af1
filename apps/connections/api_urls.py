"""Management API routes of this app, mounted under /api/v1/orgs/<org_slug>/."""

from django.urls import path

from apps.connections import api
from apps.connections.gateway import api as mcp_api

urlpatterns = [
    path("connections/", api.ConnectionListAPIView.as_view(), name="connection-list"),
    path("connections/api-key/", api.ApiKeyConnectAPIView.as_view(), name="connection-api-key"),
    path(
        "connections/oauth/start/", api.OAuthStartAPIView.as_view(), name="connection-oauth-start"
    ),
    # MCP servers (apps/connections/gateway/api.py)
    path("connections/mcp/", mcp_api.McpServerCreateAPIView.as_view(), name="connection-mcp"),
    path(
        "connections/mcp/oauth/start/",
        mcp_api.McpOAuthStartAPIView.as_view(),
        name="connection-mcp-oauth-start",
    ),
    path(
        "connections/<int:connection_id>/mcp/tools/",
        mcp_api.McpToolListAPIView.as_view(),
        name="connection-mcp-tools",
    ),
    path(
        "connections/<int:connection_id>/mcp/tools/<int:tool_id>/approve/",
        mcp_api.McpToolApproveAPIView.as_view(),
        name="connection-mcp-tool-approve",
    ),
    path(
        "connections/<int:connection_id>/mcp/refresh/",
        mcp_api.McpRefreshAPIView.as_view(),
        name="connection-mcp-refresh",
    ),
    path("provider-apps/", api.ProviderAppListAPIView.as_view(), name="provider-app-list"),
    path(
        "provider-apps/<str:provider_key>/",
        api.ProviderAppDetailAPIView.as_view(),
        name="provider-app-detail",
    ),
    path(
        "connections/<int:connection_id>/",
        api.ConnectionDetailAPIView.as_view(),
        name="connection-detail",
    ),
    path(
        "connections/<int:connection_id>/disconnect/",
        api.ConnectionDisconnectAPIView.as_view(),
        name="connection-disconnect",
    ),
]
