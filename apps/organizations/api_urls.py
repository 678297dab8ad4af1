"""The management API, /api/v1/orgs/<org_slug>/…: each app contributes its routes.
Every view here uses OrgAPIMixin (apps.organizations.tenancy)."""

from django.urls import include, path

from apps.organizations import api

app_name = "org_api"
urlpatterns = [
    path("", include("apps.workers.api_urls")),
    path("", include("apps.policies.api_urls")),
    path("", include("apps.connections.api_urls")),
    path("", include("apps.review.api_urls")),
    path("", include("apps.providers.api_urls")),
    path("", include("apps.accounts.api_urls")),
    path("settings/", api.OrganizationSettingsAPIView.as_view(), name="settings"),
    path("members/", api.MemberListAPIView.as_view(), name="member-list"),
    path("members/<int:membership_id>/", api.MemberDetailAPIView.as_view(), name="member-detail"),
    path("invitations/", api.InvitationListCreateAPIView.as_view(), name="invitation-list"),
    path(
        "invitations/<int:invitation_id>/revoke/",
        api.InvitationRevokeAPIView.as_view(),
        name="invitation-revoke",
    ),
    path("", include("apps.approvals.api_urls")),
    path("", include("apps.mcpauth.api_urls")),
    path("", include("apps.inventory.api_urls")),
]
