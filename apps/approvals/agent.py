"""Approvals on the agent API: `GET /api/v1/approvals/<id>` with the worker token.

A worker sees only its own approvals (another worker's, or another organization's, is 404).
`?wait=N` (at most 30 s) holds the answer until the status changes: the view polls the
database with short sleeps, outside any transaction, and gives its database connection back
while it sleeps. Only so many polls wait at once per process and per token (long_poll.py);
any other answers at once."""

from __future__ import annotations

import time
from typing import cast

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.approvals import long_poll
from apps.approvals.models import Approval, ApprovalStatus
from apps.approvals.services import RETRY_AFTER_SECONDS, agent_document
from apps.core.api import APIError
from apps.core.db import connections_release
from apps.core.models import tenant_rows
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
        mine = (
            tenant_rows(Approval, context.organization.pk)
            .filter(worker_id=context.worker.pk)
            .select_related("organization")
        )
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
