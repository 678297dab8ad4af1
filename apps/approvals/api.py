"""Approvals on the management API, under /api/v1/orgs/<org_slug>/approvals/: list, show,
approve and deny with a session or a personal token (OrgAPIMixin). Members see what
`ApprovalQuerySet.visible_to(membership)` allows; who may decide is the service's rule
(apps.approvals.services.approval_decide). The agent's status endpoint is `agent.py`.
"""

from __future__ import annotations

from typing import Any, cast

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from typing_extensions import override

from apps.approvals.models import Approval, ApprovalQuerySet, ApprovalStatus
from apps.approvals.services import (
    ApprovalRefused,
    agent_document,
    approval_decide,
    excluded_approver_ids,
    input_for,
    may_decide,
)
from apps.core.api import APIError
from apps.organizations.models import OrgRole
from apps.organizations.tenancy import OrgAPIMixin


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
            cast(ApprovalQuerySet, self.tenant_rows(Approval))
            .visible_to(self.membership)
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
