"""Management API routes of this app, mounted under /api/v1/orgs/<org_slug>/."""

from django.urls import path

from apps.connections import api

urlpatterns = [
    path("connections/", api.ConnectionListAPIView.as_view(), name="connection-list"),
    path("connections/api-key/", api.ApiKeyConnectAPIView.as_view(), name="connection-api-key"),
    path(
        "connections/oauth/start/", api.OAuthStartAPIView.as_view(), name="connection-oauth-start"
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
