"""Personal API token pages (mounted at /accounts/tokens/)."""

from django.urls import path

from apps.accounts import views

app_name = "personal_tokens"
urlpatterns = [
    path("", views.PersonalTokenListView.as_view(), name="list"),
    path("<str:public_id>/revoke/", views.PersonalTokenRevokeView.as_view(), name="revoke"),
]
