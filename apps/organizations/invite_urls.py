"""The top-level invitation link, /invitations/<key>/ (the key is the credential)."""

from django.urls import path

from apps.organizations import views

app_name = "invitations"
urlpatterns = [
    path(
        "mine/<int:invitation_id>/accept/",
        views.MyInvitationAcceptView.as_view(),
        name="accept_mine",
    ),
    path("<str:key>/", views.InvitationAcceptView.as_view(), name="accept"),
]
