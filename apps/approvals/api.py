"""Approvals over HTTP.

* Agent API: `GET /api/v1/approvals/<id>` with the worker token. A worker sees
  only its own approvals (another worker's, or another organization's, is 404).
  `?wait=N` (at most 30 s) holds the answer until the status changes: the view
  polls the database with short sleeps, outside any transaction, and gives its
  database connection back while it sleeps. Only so many polls wait at once per
  process and per token (long_poll.py); any other answers at once.
* Management API under /api/v1/orgs/<org_slug>/approvals/: list, show, approve
  and deny with a session or a personal token (OrgAPIMixin). Members see what
  `Approval.objects.visible_to(membership)` allows; who may decide is the
  service's rule (apps.approvals.services.approval_decide).
"""

from __future__ import annotations

import time
from typing import Any, cast

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import generics, serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from typing_extensions import override

from apps.approvals import long_poll
from apps.approvals.models import Approval, ApprovalStatus
from apps.approvals.services import (
    RETRY_AFTER_SECONDS,
    ApprovalRefused,
    agent_document,
    approval_decide,
    excluded_approver_ids,
    input_for,
    may_decide,
)
from apps.core.api import APIError
from apps.core.db import connections_release
from apps.organizations.models import OrgRole
from apps.organizations.tenancy import OrgAPIMixin
from apps.workers.auth import AgentContext, WorkerTokenAuthentication

MAX_WAIT_SECONDS = 30
POLL_SECONDS = 1.0

AGENT_EXAMPLE = {
    "id": "apr_Qm3x9TzK1bV0aLp2",
    "status": "pending",
    "status_url": "https://grantry.example.com/api/v1/approvals/apr_Qm3x9TzK1bV0aLp2",
    "summary": "Worker 'triage-bot' asks to run sandbox.delete_task on connection "
    "'sandbox-demo' with input sha256 9f2c41d07a3e…; needs approval by an admin or owner.",
    "kind": "action",
    "action": "sandbox.delete_task",
    "method": None,
    "path": None,
    "connection": "sandbox-demo",
    "input_sha256": "9f2c41d07a3e5b…",
    "reason": "The user asked me to remove the duplicate task 42.",
    "created_at": "2026-12-03T09:00:00+00:00",
    "expires_at": "2026-12-03T10:00:00+00:00",
    "decided_at": None,
    "executed_at": None,
    "approvals_needed": 1,
    "approvals_received": 0,
    "comment": "",
    "next": "Waiting for an admin or owner. Poll this URL (?wait=30 waits up to 30 s for a "
    "change); do not re-send the call until it is approved.",
}


def _release_connection() -> None:
    """Give the database connection back while sleeping."""
    connections_release()


def _wait_while_pending(mine: QuerySet[Approval], approval: Approval, wait: int) -> Approval:
    deadline = time.monotonic() + wait
    while approval.effective_status() == ApprovalStatus.PENDING:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        _release_connection()
        time.sleep(min(POLL_SECONDS, left))
        approval = mine.get(pk=approval.pk)
    return approval


class ApprovalStatusView(APIView):
    """The status of one of this worker's approvals, optionally waiting for a change."""

    authentication_classes = (WorkerTokenAuthentication,)
    permission_classes = (IsAuthenticated,)

    @extend_schema(
        operation_id="agent_approval_status",
        tags=["agent"],
        parameters=[
            OpenApiParameter(
                "wait",
                OpenApiTypes.INT,
                description="Seconds (0 to 30) to wait for the status to leave 'pending'.",
            )
        ],
        responses={
            200: OpenApiResponse(description="The approval's status and what to do next."),
            400: OpenApiResponse(description="'wait' is not a whole number."),
            401: OpenApiResponse(description="Missing or invalid worker token."),
            404: OpenApiResponse(description="No such approval for this worker."),
        },
        examples=[OpenApiExample("pending", value=AGENT_EXAMPLE, response_only=True)],
    )
    def get(self, request: Request, approval_id: str) -> Response:
        context = cast(AgentContext, request.auth)
        raw_wait = request.query_params.get("wait", "0")
        if not (raw_wait.isascii() and raw_wait.isdigit()) or len(raw_wait) > 6:
            raise APIError("invalid_input", "'wait' is a whole number of seconds, 0 to 30.")
        wait = min(int(raw_wait), MAX_WAIT_SECONDS)
        mine = Approval.objects.filter(
            organization_id=context.organization.pk, worker_id=context.worker.pk
        ).select_related("organization")
        approval = get_object_or_404(mine, public_id=approval_id)
        if wait and approval.effective_status() == ApprovalStatus.PENDING:
            # Beyond the bound, the answer is the status now (long_poll.py).
            with long_poll.LONG_POLLS.slot(context.token_pk) as may_wait:
                if may_wait:
                    approval = _wait_while_pending(mine, approval, wait)
        response = Response(agent_document(approval))
        response["Cache-Control"] = "no-store"
        if approval.effective_status() == ApprovalStatus.PENDING:
            response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response


# --- management API ---------------------------------------------------------------------


class DecisionSerializer(serializers.Serializer[Any]):
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000)


def management_document(approval: Approval, membership: Any) -> dict[str, Any]:
    body = agent_document(approval)
    body.pop("next")
    shown, exact = input_for(approval, membership)
    body.update(
        worker={"id": approval.worker_id, "name": approval.worker.name},
        token_id=approval.token_public_id,
        rule_id=approval.rule_id,
        input=shown,
        input_redacted=not exact,
        decisions=[
            {
                "by": d.user_label,
                "approve": d.approve,
                "comment": d.comment,
                "at": d.created_at.isoformat(),
            }
            for d in approval.decisions.all()
        ],
        can_decide=may_decide(approval, membership)
        and membership.user_id not in excluded_approver_ids(approval),
    )
    return body


class _ApprovalScope(OrgAPIMixin):
    model = Approval
    kwargs: dict[str, Any]
    # Named approvers may be plain members; what each sees is narrowed in scope_queryset.
    read_role = OrgRole.MEMBER
    write_role = OrgRole.MEMBER

    def scope_queryset(self) -> QuerySet[Approval]:
        return (
            Approval.objects.visible_to(self.membership)
            .select_related("worker", "organization")
            .prefetch_related("decisions")
        )

    def get_approval(self) -> Approval:
        return get_object_or_404(self.get_queryset(), public_id=self.kwargs["approval_id"])


_STATUS_PARAM = OpenApiParameter("status", OpenApiTypes.STR, enum=list(ApprovalStatus.values))


class ApprovalListAPIView(_ApprovalScope, generics.ListAPIView[Approval]):
    @extend_schema(
        tags=["approvals"],
        summary="List approval requests (newest first)",
        parameters=[_STATUS_PARAM],
        responses=OpenApiResponse(description="A page of approvals."),
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def scope_queryset(self) -> QuerySet[Approval]:
        queryset = super().scope_queryset()
        wanted = self.request.query_params.get("status")
        if wanted:
            if wanted not in ApprovalStatus.values:
                raise APIError(
                    "invalid_input",
                    f"'status' is one of {', '.join(ApprovalStatus.values)}.",
                )
            queryset = queryset.filter(status=wanted)
        return queryset

    @override
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        rows = [management_document(a, self.membership) for a in page or []]
        return self.get_paginated_response(rows)


class ApprovalDetailAPIView(_ApprovalScope, APIView):
    @extend_schema(
        tags=["approvals"],
        summary="One approval request: what, who, why, the input, the decisions",
        responses={200: OpenApiResponse(description="The approval."), 404: None},
    )
    def get(self, _request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(management_document(self.get_approval(), self.membership))


class _DecideAPIView(_ApprovalScope, APIView):
    approve = True

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        approval = self.get_approval()
        serializer = DecisionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            approval = approval_decide(
                approval=approval,
                actor=request.user,
                approve=self.approve,
                comment=serializer.validated_data.get("comment", ""),
            )
        except ApprovalRefused as refused:
            raise APIError(
                refused.code, refused.message, status_code=refused.status, details=refused.details
            ) from None
        approval.refresh_from_db()
        return Response(management_document(approval, self.membership), status=status.HTTP_200_OK)


_decide_responses = {
    200: OpenApiResponse(description="The approval after the decision."),
    403: OpenApiResponse(description="Not an approver, or separation of duties."),
    404: OpenApiResponse(description="No such approval in this organization."),
    409: OpenApiResponse(description="Already decided, or void (the rules changed)."),
    410: OpenApiResponse(description="The request expired."),
}


class ApprovalApproveAPIView(_DecideAPIView):
    approve = True

    @extend_schema(
        tags=["approvals"],
        summary="Approve (with an optional comment)",
        request=DecisionSerializer,
        responses=_decide_responses,
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().post(request, *args, **kwargs)


class ApprovalDenyAPIView(_DecideAPIView):
    approve = False

    @extend_schema(
        tags=["approvals"],
        summary="Deny (with an optional comment)",
        request=DecisionSerializer,
        responses=_decide_responses,
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().post(request, *args, **kwargs)
