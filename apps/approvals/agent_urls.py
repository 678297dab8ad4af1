"""Agent API routes of this app, mounted under /api/v1/ (worker tokens only)."""

from django.urls import path

from apps.approvals.agent import ApprovalStatusView

app_name = "approvals_agent"
urlpatterns = [
    path("approvals/<str:approval_id>", ApprovalStatusView.as_view(), name="status"),
]
