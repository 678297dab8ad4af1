from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)

from apps.broker.mcp import mcp_connection_endpoint, mcp_endpoint, protected_resource_metadata
from apps.connections.views import OAuthCallbackView, mcp_client_metadata
from apps.core.csp import api_docs_policy
from apps.core.views import healthz
from apps.organizations import urls as organization_urls
from apps.review.views import audit_public_key
from grantry.metrics import metrics_view

handler404 = "apps.core.views.not_found"
handler500 = "apps.core.views.server_error"

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("accounts/tokens/", include("apps.accounts.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Swagger's initializer is served as a file of its own (?script): no inline script.
    path(
        "api/docs/",
        api_docs_policy(SpectacularSwaggerSplitView.as_view(url_name="api-schema")),
        name="api-docs",
    ),
    path(
        "api/redoc/",
        api_docs_policy(SpectacularRedocView.as_view(url_name="api-schema")),
        name="api-redoc",
    ),
    path("api/v1/", include("apps.broker.agent_urls")),
    path("mcp", mcp_endpoint, name="mcp"),
    # One MCP connection's tools under their own names (apps/broker/mcp_upstream.py).
    path("mcp/c/<str:connection>", mcp_connection_endpoint, name="mcp-connection"),
    path(
        ".well-known/oauth-protected-resource/mcp",
        protected_resource_metadata,
        name="mcp-resource-metadata",
    ),
    path(
        ".well-known/grantry-audit-keys/<str:key_id>",
        audit_public_key,
        name="audit-public-key",
    ),
    path("api/v1/", include("apps.workers.agent_urls")),
    path("api/v1/", include("apps.approvals.agent_urls")),
    path("api/v1/orgs/<slug:org_slug>/", include("grantry.api_urls")),
    path("o/<slug:org_slug>/", include("apps.organizations.urls")),
    path("o/<slug:org_slug>/connections/", include("apps.connections.urls")),
    # The one fixed OAuth redirect URI every provider app registers (connections).
    path("oauth/callback/", OAuthCallbackView.as_view(), name="oauth-callback"),
    # The client ID metadata document Grantry publishes as the OAuth client of upstream
    # MCP servers (apps/connections/gateway/oauth.py).
    path("oauth/mcp-client.json", mcp_client_metadata, name="mcp-client-metadata"),
    path("o/<slug:org_slug>/workers/", include("apps.workers.urls")),
    path("o/<slug:org_slug>/roles/", include("apps.policies.urls")),
    path("o/<slug:org_slug>/audit/", include("apps.review.urls")),
    path("o/<slug:org_slug>/approvals/", include("apps.approvals.urls")),
    path("o/<slug:org_slug>/providers/", include("apps.providers.urls")),
    path("o/<slug:org_slug>/inventory/", include("apps.inventory.urls")),
    path("invitations/", include((organization_urls.invitation_urlpatterns, "invitations"))),
    # Grantry's OAuth authorization server for /mcp (RFC 8414 metadata, /oauth/…) and
    # the org's MCP client settings.
    path("", include("apps.mcpauth.urls")),
    path("", include("apps.dashboard.urls")),
]

if settings.GRANTRY_SANDBOX_ENABLED:
    urlpatterns += [path("sandbox/", include("apps.sandbox.urls"))]
