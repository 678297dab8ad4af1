"""Management API routes for the organization itself (settings, members, invitations),
mounted under /api/v1/orgs/<org_slug>/ by the project's router (grantry/api_urls.py)."""

from django.urls import path

from apps.organizations import api

urlpatterns = [
    path("settings/", api.OrganizationSettingsAPIView.as_view(), name="settings"),
    path("members/", api.MemberListAPIView.as_view(), name="member-list"),
    path("members/<int:membership_id>/", api.MemberDetailAPIView.as_view(), name="member-detail"),
    path("invitations/", api.InvitationListCreateAPIView.as_view(), name="invitation-list"),
    path(
        "invitations/<int:invitation_id>/revoke/",
        api.InvitationRevokeAPIView.as_view(),
        name="invitation-revoke",
    ),
]
