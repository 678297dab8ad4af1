"""Management API routes of this app, mounted under /api/v1/orgs/<org_slug>/."""

from django.urls import URLPattern, URLResolver, path

from apps.approvals import api

urlpatterns: list[URLPattern | URLResolver] = [
    path("approvals/", api.ApprovalListAPIView.as_view(), name="approval-list"),
    path(
        "approvals/<str:approval_id>/", api.ApprovalDetailAPIView.as_view(), name="approval-detail"
    ),
    path(
        "approvals/<str:approval_id>/approve/",
        api.ApprovalApproveAPIView.as_view(),
        name="approval-approve",
    ),
    path(
        "approvals/<str:approval_id>/deny/", api.ApprovalDenyAPIView.as_view(), name="approval-deny"
    ),
]
