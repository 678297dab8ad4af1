"""Personal API token pages (mounted at /accounts/tokens/)."""

from django.urls import path

from apps.accounts import token_views

app_name = "personal_tokens"
urlpatterns = [
    path("", token_views.PersonalTokenListView.as_view(), name="list"),
    path("<str:public_id>/revoke/", token_views.PersonalTokenRevokeView.as_view(), name="revoke"),
]
