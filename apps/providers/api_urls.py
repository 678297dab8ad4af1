"""Management API routes of the catalog, mounted under /api/v1/orgs/<org_slug>/."""

from django.urls import path

from apps.providers import openapi_api

urlpatterns = [
    path(
        "custom-providers/<slug:slug>/openapi-import/",
        openapi_api.OpenAPIImportAPIView.as_view(),
        name="custom-provider-openapi-import",
    ),
]
