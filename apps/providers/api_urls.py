"""Management API routes of the catalog, mounted under /api/v1/orgs/<org_slug>/."""

from django.urls import path

from apps.providers.api import custom as api
from apps.providers.api import openapi as openapi_api

urlpatterns = [
    path(
        "custom-providers/",
        api.CustomProviderListCreateAPIView.as_view(),
        name="custom-provider-list",
    ),
    path(
        "custom-providers/<slug:provider_slug>/",
        api.CustomProviderDetailAPIView.as_view(),
        name="custom-provider-detail",
    ),
    path(
        "custom-providers/<slug:provider_slug>/actions/",
        api.CustomActionListCreateAPIView.as_view(),
        name="custom-action-list",
    ),
    path(
        "custom-providers/<slug:provider_slug>/actions/<slug:action_name>/",
        api.CustomActionDetailAPIView.as_view(),
        name="custom-action-detail",
    ),
    path(
        "custom-providers/<slug:provider_slug>/openapi-import/",
        openapi_api.OpenAPIImportAPIView.as_view(),
        name="custom-provider-openapi-import",
    ),
    path(
        "custom-providers/<slug:provider_slug>/openapi-import/<int:pk>/",
        openapi_api.OpenAPIImportDetailAPIView.as_view(),
        name="custom-provider-openapi-import-detail",
    ),
]
