"""Management API routes of this app, mounted under /api/v1/orgs/<org_slug>/."""

from django.urls import path

from apps.connections import api

urlpatterns = [
    path("connections/", api.ConnectionListAPIView.as_view(), name="connection-list"),
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
