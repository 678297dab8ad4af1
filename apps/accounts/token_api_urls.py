"""Management API routes for personal tokens, mounted under /api/v1/orgs/<org_slug>/."""

from django.urls import path

from apps.accounts import token_api

urlpatterns = [
    path(
        "personal-tokens/",
        token_api.PersonalTokenListAPIView.as_view(),
        name="personal-token-list",
    ),
    path(
        "personal-tokens/<str:public_id>/revoke/",
        token_api.PersonalTokenRevokeAPIView.as_view(),
        name="personal-token-revoke",
    ),
]
