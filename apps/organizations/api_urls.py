"""The management API, /api/v1/orgs/<org_slug>/…: each app contributes its routes.
Every view here uses OrgAPIMixin (apps.organizations.tenancy)."""

from django.urls import include, path

app_name = "org_api"
urlpatterns = [
    path("", include("apps.workers.api_urls")),
    path("", include("apps.policies.api_urls")),
    path("", include("apps.connections.api_urls")),
    path("", include("apps.audit.api_urls")),
    path("", include("apps.providers.api_urls")),
]
