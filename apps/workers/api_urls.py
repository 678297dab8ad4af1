"""Management API routes of this app, mounted under /api/v1/orgs/<org_slug>/."""

from django.urls import path

from apps.workers import api as v

urlpatterns = [
    path("workers/", v.WorkerListCreateAPIView.as_view(), name="worker-list"),
    path("workers/<int:worker_id>/", v.WorkerDetailAPIView.as_view(), name="worker-detail"),
    path(
        "workers/<int:worker_id>/disable/", v.WorkerDisableAPIView.as_view(), name="worker-disable"
    ),
    path("workers/<int:worker_id>/enable/", v.WorkerEnableAPIView.as_view(), name="worker-enable"),
    path(
        "workers/<int:worker_id>/revoke-all-tokens/",
        v.WorkerRevokeAllTokensAPIView.as_view(),
        name="worker-revoke-all-tokens",
    ),
    path(
        "workers/<int:worker_id>/tokens/",
        v.WorkerTokenListMintAPIView.as_view(),
        name="worker-token-list",
    ),
    path(
        "workers/<int:worker_id>/tokens/<str:token_id>/",
        v.WorkerTokenDetailAPIView.as_view(),
        name="worker-token-detail",
    ),
    path(
        "workers/<int:worker_id>/tokens/<str:token_id>/revoke/",
        v.WorkerTokenRevokeAPIView.as_view(),
        name="worker-token-revoke",
    ),
    path(
        "workers/<int:worker_id>/tokens/<str:token_id>/roll/",
        v.WorkerTokenRollAPIView.as_view(),
        name="worker-token-roll",
    ),
    path(
        "workers/<int:worker_id>/trust-policies/",
        v.TrustPolicyListCreateAPIView.as_view(),
        name="worker-trust-policy-list",
    ),
    path(
        "workers/<int:worker_id>/trust-policies/<int:trust_policy_id>/",
        v.TrustPolicyDetailAPIView.as_view(),
        name="worker-trust-policy-detail",
    ),
    path("tokens/", v.OrganizationTokenListAPIView.as_view(), name="token-list"),
    path("kill-switch/", v.KillSwitchAPIView.as_view(), name="kill-switch"),
]
