"""The management API, /api/v1/orgs/<org_slug>/…: each app contributes its routes (its
`api_urls.py`), mounted here in the project package so that no app routes to the apps
above it. Every view here uses OrgAPIMixin (apps.organizations.tenancy)."""

from django.urls import include, path

app_name = "org_api"
urlpatterns = [
    path("", include("apps.workers.api_urls")),
    path("", include("apps.policies.api_urls")),
    path("", include("apps.connections.api_urls")),
    path("", include("apps.review.api_urls")),
    path("", include("apps.providers.api_urls")),
    path("", include("apps.accounts.api_urls")),
    path("", include("apps.organizations.api_urls")),
    path("", include("apps.approvals.api_urls")),
    path("", include("apps.mcpauth.api_urls")),
    path("", include("apps.inventory.api_urls")),
]
