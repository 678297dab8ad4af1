"""Management API routes for personal tokens, mounted under /api/v1/orgs/<org_slug>/."""

from django.urls import path

from apps.accounts import api

urlpatterns = [
    path(
        "personal-tokens/",
        api.PersonalTokenListAPIView.as_view(),
        name="personal-token-list",
    ),
    path(
        "personal-tokens/<str:public_id>/revoke/",
        api.PersonalTokenRevokeAPIView.as_view(),
        name="personal-token-revoke",
    ),
]
