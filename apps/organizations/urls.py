"""The organization's pages under /o/<org_slug>/ (`urlpatterns`), and the invitation
link outside any organization, /invitations/<key>/ (`invitation_urlpatterns`, namespace
`invitations`; the key is the credential)."""

from django.urls import path

from apps.organizations import views

app_name = "orgs"
urlpatterns = [
    path("", views.OverviewView.as_view(), name="overview"),
    path("members/", views.MembersView.as_view(), name="members"),
    path("members/<int:membership_id>/role/", views.MemberRoleView.as_view(), name="member_role"),
    path(
        "members/<int:membership_id>/remove/",
        views.MemberRemoveView.as_view(),
        name="member_remove",
    ),
    path(
        "invitations/<int:invitation_id>/revoke/",
        views.InvitationRevokeView.as_view(),
        name="invitation_revoke",
    ),
    path("settings/", views.SettingsView.as_view(), name="settings"),
    path("soon/<slug:section>/", views.UpcomingSectionView.as_view(), name="upcoming"),
]

invitation_urlpatterns = [
    path(
        "mine/<int:invitation_id>/accept/",
        views.MyInvitationAcceptView.as_view(),
        name="accept_mine",
    ),
    path("<str:key>/", views.InvitationAcceptView.as_view(), name="accept"),
]
