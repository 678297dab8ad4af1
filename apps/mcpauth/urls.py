"""Grantry's authorization server for /mcp, and the org's MCP client settings.
Included at the root: the paths are absolute."""

from django.urls import path

from apps.mcpauth import oauth, views

app_name = "mcpauth"

urlpatterns = [
    # RFC 8414 metadata of the issuer <base>/oauth (path-inserted form, and the
    # appended form some clients try).
    path(
        ".well-known/oauth-authorization-server/oauth",
        oauth.authorization_server_metadata,
        name="metadata",
    ),
    path(
        "oauth/.well-known/oauth-authorization-server",
        oauth.authorization_server_metadata,
        name="metadata-appended",
    ),
    path("oauth/authorize/", oauth.ConsentView.as_view(), name="authorize"),
    path("oauth/token/", oauth.TokenView.as_view(), name="token"),
    path("oauth/revoke/", oauth.RevokeTokenView.as_view(), name="revoke"),
    path("oauth/register/", oauth.RegisterView.as_view(), name="register"),
    path("o/<slug:org_slug>/settings/mcp/", views.McpSettingsView.as_view(), name="settings"),
    path(
        "o/<slug:org_slug>/settings/mcp/grants/<int:grant_id>/revoke/",
        views.GrantRevokeView.as_view(),
        name="grant_revoke",
    ),
]
