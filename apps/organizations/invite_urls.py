"""The top-level invitation link, /invitations/<key>/ (the key is the credential)."""

from django.urls import path

from apps.organizations import views

app_name = "invitations"
urlpatterns = [
    path("<str:key>/", views.InvitationAcceptView.as_view(), name="accept"),
]
