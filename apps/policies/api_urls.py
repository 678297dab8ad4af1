"""Management API routes of this app, mounted under /api/v1/orgs/<org_slug>/."""

from django.urls import path

from apps.policies import api

urlpatterns = [
    path("roles/", api.RoleListCreateAPIView.as_view(), name="role-list"),
    path("roles/<int:role_id>/", api.RoleDetailAPIView.as_view(), name="role-detail"),
    path("roles/<int:role_id>/test/", api.RoleDryRunAPIView.as_view(), name="role-test"),
    path("roles/<int:role_id>/simulate/", api.RoleSimulateAPIView.as_view(), name="role-simulate"),
    path(
        "roles/<int:role_id>/least-privilege/",
        api.RoleLeastPrivilegeAPIView.as_view(),
        name="role-least-privilege",
    ),
]
