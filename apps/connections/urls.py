from django.urls import path

from apps.connections import views
from apps.connections.gateway import views as mcp_views

app_name = "connections"
urlpatterns = [
    path("", views.ConnectionListView.as_view(), name="list"),
    path("connect/", views.ProviderPickView.as_view(), name="pick"),
    path("connect/<str:provider_key>/", views.ConnectView.as_view(), name="connect"),
    path(
        "mine/<str:provider_key>/",
        views.PersonalConnectView.as_view(),
        name="connect-personal",
    ),
    path("apps/<str:provider_key>/", views.ProviderAppView.as_view(), name="provider-app"),
    path("<int:pk>/reconnect/", views.ReconnectView.as_view(), name="reconnect"),
    path("<int:pk>/disconnect/", views.DisconnectView.as_view(), name="disconnect"),
    # MCP servers (apps/connections/gateway)
    path("mcp/add/", mcp_views.McpAddView.as_view(), name="mcp-add"),
    path("mcp/import/", mcp_views.McpImportView.as_view(), name="mcp-import"),
    path("<int:pk>/mcp/", mcp_views.McpDetailView.as_view(), name="mcp-detail"),
    path("<int:pk>/mcp/refresh/", mcp_views.McpRefreshView.as_view(), name="mcp-refresh"),
    path(
        "<int:pk>/mcp/approve-new/", mcp_views.McpApproveNewView.as_view(), name="mcp-approve-new"
    ),
    path("<int:pk>/mcp/tools/<int:tool>/", mcp_views.McpToolView.as_view(), name="mcp-tool"),
]
