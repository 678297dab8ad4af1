"""Dashboard routes, mounted at /o/<org_slug>/workers/."""

from django.urls import path

from apps.workers import views

app_name = "workers"
urlpatterns = [
    path("", views.WorkerListView.as_view(), name="list"),
    path("new/", views.WorkerCreateView.as_view(), name="create"),
    path("kill-switch/", views.KillSwitchView.as_view(), name="kill_switch"),
    path("token/", views.TokenOnceView.as_view(), name="token_once"),
    path("<int:worker_id>/", views.WorkerDetailView.as_view(), name="detail"),
    path("<int:worker_id>/edit/", views.WorkerUpdateView.as_view(), name="edit"),
    path("<int:worker_id>/mint/", views.TokenMintView.as_view(), name="mint"),
    path("<int:worker_id>/disable/", views.WorkerDisableView.as_view(), name="disable"),
    path("<int:worker_id>/enable/", views.WorkerEnableView.as_view(), name="enable"),
    path("<int:worker_id>/revoke-all/", views.WorkerRevokeAllView.as_view(), name="revoke_all"),
    path(
        "<int:worker_id>/trust-policies/new/",
        views.TrustPolicyAddView.as_view(),
        name="trust_policy_add",
    ),
    path(
        "<int:worker_id>/trust-policies/<int:trust_policy_id>/toggle/",
        views.TrustPolicyToggleView.as_view(),
        name="trust_policy_toggle",
    ),
    path(
        "<int:worker_id>/trust-policies/<int:trust_policy_id>/delete/",
        views.TrustPolicyDeleteView.as_view(),
        name="trust_policy_delete",
    ),
    path(
        "<int:worker_id>/tokens/<str:token_id>/revoke/",
        views.TokenRevokeView.as_view(),
        name="token_revoke",
    ),
    path(
        "<int:worker_id>/tokens/<str:token_id>/roll/",
        views.TokenRollView.as_view(),
        name="token_roll",
    ),
]
