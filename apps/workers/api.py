"""Management API for workers and their tokens (/api/v1/orgs/<org_slug>/…).

Reviewers read, admins and owners write (OrgAPIMixin). Every write calls a
service in apps.workers.services, which audits it."""

from __future__ import annotations

from typing import Any, cast

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.openapi import error_responses
from apps.organizations.tenancy import OrgAPIMixin
from apps.workers import services, trust
from apps.workers.models import TrustPolicy, Worker, WorkerToken, WorkerTokenQuerySet
from apps.workers.serializers import (
    KillSwitchSerializer,
    MintedTokenSerializer,
    RevokedCountSerializer,
    TokenMintSerializer,
    TokenRevokeSerializer,
    TokenRollSerializer,
    TrustPolicyEnabledSerializer,
    TrustPolicySerializer,
    WorkerSerializer,
    WorkerTokenSerializer,
)

TOKEN_EXAMPLE = {
    "id": "tok_3kT9aQ2mX7bZ",
    "name": "CI deploy",
    "created_by_email": "owner@example.com",
    "worker": 7,
    "worker_name": "demo-agent",
    "role": 3,
    "role_name": "sandbox-read-and-create-tasks",
    "last4": "a1B2",
    "status": "active",
    "created_at": "2026-11-28T10:00:00Z",
    "expires_at": "2026-12-28T10:00:00Z",
    "expires_soon": False,
    "revoked_at": None,
    "revoke_reason": "",
    "rolled_from": None,
    "last_used_at": None,
    "last_used_ip": None,
    "dpop_jkt": "",
}
MINTED_EXAMPLE = {"token": "gry_<43 base62 chars><6-char checksum>", **TOKEN_EXAMPLE}
WORKER_EXAMPLE = {
    "id": 7,
    "name": "demo-agent",
    "description": "Reads the sandbox",
    "status": "active",
    "default_role": 3,
    "default_role_name": "sandbox-read-and-create-tasks",
    "owner": 1,
    "owner_email": "owner@example.com",
    "acts_for": None,
    "acts_for_email": None,
    "created_by_email": "owner@example.com",
    "require_dpop": False,
    "created_at": "2026-11-28T10:00:00Z",
}


def _service_errors(exc: DjangoValidationError) -> serializers.ValidationError:
    detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
    return serializers.ValidationError(detail)


class _WorkerScoped(OrgAPIMixin):
    """Views under workers/<worker_id>/: the worker is looked up inside the org."""

    kwargs: dict[str, Any]

    def get_worker(self) -> Worker:
        return get_object_or_404(self.tenant_rows(Worker), pk=self.kwargs["worker_id"])


@extend_schema_view(
    get=extend_schema(
        tags=["workers"],
        summary="List workers",
        examples=[OpenApiExample("worker", value=WORKER_EXAMPLE, response_only=True)],
    ),
    post=extend_schema(tags=["workers"], summary="Create a worker"),
)
class WorkerListCreateAPIView(OrgAPIMixin, generics.ListCreateAPIView[Worker]):
    model = Worker
    serializer_class = WorkerSerializer

    def scope_queryset(self) -> QuerySet[Any]:
        return (
            super()
            .scope_queryset()
            .select_related("default_role", "owner", "acts_for", "created_by")
        )

    def perform_create(self, serializer: Any) -> None:
        data = serializer.validated_data
        try:
            serializer.instance = services.worker_create(
                organization=self.organization,
                name=data["name"],
                description=data.get("description", ""),
                default_role=data["default_role"],
                owner=data.get("owner"),
                acts_for=data.get("acts_for"),
                require_dpop=data.get("require_dpop", False),
                actor=self.request.user,
            )
        except DjangoValidationError as exc:
            raise _service_errors(exc) from exc


@extend_schema_view(
    get=extend_schema(tags=["workers"], summary="Read a worker"),
    patch=extend_schema(tags=["workers"], summary="Change a worker"),
    put=extend_schema(tags=["workers"], summary="Replace a worker's editable fields"),
    delete=extend_schema(tags=["workers"], summary="Delete a worker and all its tokens"),
)
class WorkerDetailAPIView(OrgAPIMixin, generics.RetrieveUpdateDestroyAPIView[Worker]):
    model = Worker
    serializer_class = WorkerSerializer
    lookup_url_kwarg = "worker_id"

    def scope_queryset(self) -> QuerySet[Any]:
        return (
            super()
            .scope_queryset()
            .select_related("default_role", "owner", "acts_for", "created_by")
        )

    def perform_update(self, serializer: Any) -> None:
        try:
            serializer.instance = services.worker_update(
                worker=serializer.instance,
                actor=self.request.user,
                **serializer.validated_data,
            )
        except DjangoValidationError as exc:
            raise _service_errors(exc) from exc

    def perform_destroy(self, instance: Worker) -> None:
        services.worker_delete(worker=instance, actor=self.request.user)


class _WorkerActionAPIView(_WorkerScoped, APIView):
    action_name = ""

    @extend_schema(tags=["workers"], request=None, responses=WorkerSerializer)
    def post(self, request: Request, **kwargs: Any) -> Response:
        worker = self.get_worker()
        if self.action_name == "disable":
            worker = services.worker_disable(worker=worker, actor=request.user)
        else:
            try:
                worker = services.worker_enable(worker=worker, actor=request.user)
            except DjangoValidationError as exc:
                raise _service_errors(exc) from exc
        return Response(WorkerSerializer(worker, context={"view": self}).data)


class WorkerDisableAPIView(_WorkerActionAPIView):
    """Disable a worker: every token of it fails at once."""

    action_name = "disable"


class WorkerEnableAPIView(_WorkerActionAPIView):
    """Enable a worker again. Revoked tokens stay revoked."""

    action_name = "enable"


class WorkerRevokeAllTokensAPIView(_WorkerScoped, APIView):
    """Kill switch for one worker: revoke every token it has."""

    @extend_schema(tags=["tokens"], request=None, responses=RevokedCountSerializer)
    def post(self, request: Request, **kwargs: Any) -> Response:
        count = services.worker_revoke_all_tokens(worker=self.get_worker(), actor=request.user)
        return Response({"revoked": count})


def _minted_response(token: WorkerToken, raw: str, view: Any) -> Response:
    token.raw_token = raw  # type: ignore[attr-defined]  # only for this one response
    body = MintedTokenSerializer(token, context={"view": view}).data
    response = Response(body, status=status.HTTP_201_CREATED)
    response["Cache-Control"] = "no-store"
    return response


@extend_schema_view(
    get=extend_schema(
        tags=["tokens"],
        summary="List a worker's tokens",
        examples=[OpenApiExample("token", value=TOKEN_EXAMPLE, response_only=True)],
    ),
)
class WorkerTokenListMintAPIView(_WorkerScoped, generics.ListAPIView[WorkerToken]):
    serializer_class = WorkerTokenSerializer

    def scope_queryset(self) -> QuerySet[Any]:
        return (
            self.tenant_rows(WorkerToken)
            .filter(worker_id=self.kwargs["worker_id"])
            .select_related("worker", "role", "rolled_from", "created_by")
        )

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        self.get_worker()  # another org's (or no) worker: 404, not an empty list
        return super().list(request, *args, **kwargs)

    @extend_schema(
        tags=["tokens"],
        summary="Mint a token (the token is in this response only)",
        request=TokenMintSerializer,
        responses={201: MintedTokenSerializer},
        examples=[OpenApiExample("minted", value=MINTED_EXAMPLE, response_only=True)],
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        worker = self.get_worker()
        form = TokenMintSerializer(data=request.data, context={"view": self})
        form.is_valid(raise_exception=True)
        try:
            token, raw = services.token_mint(
                worker=worker,
                role=form.validated_data.get("role"),
                expires_in_days=form.validated_data.get("expires_in_days"),
                actor=request.user,
                name=form.validated_data.get("name", ""),
                dpop_jkt=form.validated_data.get("dpop_jkt", ""),
            )
        except DjangoValidationError as exc:
            raise _service_errors(exc) from exc
        return _minted_response(token, raw, self)


class _TokenScoped(_WorkerScoped):
    def get_token(self) -> WorkerToken:
        return get_object_or_404(
            self.tenant_rows(WorkerToken).select_related(
                "worker", "role", "rolled_from", "created_by"
            ),
            worker_id=self.kwargs["worker_id"],
            public_id=self.kwargs["token_id"],
        )


class WorkerTokenDetailAPIView(_TokenScoped, APIView):
    @extend_schema(tags=["tokens"], summary="Read a token", responses=WorkerTokenSerializer)
    def get(self, _request: Request, **kwargs: Any) -> Response:
        return Response(WorkerTokenSerializer(self.get_token()).data)


class WorkerTokenRevokeAPIView(_TokenScoped, APIView):
    @extend_schema(
        tags=["tokens"],
        summary="Revoke a token (immediate)",
        request=TokenRevokeSerializer,
        responses=WorkerTokenSerializer,
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        form = TokenRevokeSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        token = services.token_revoke(
            token=self.get_token(),
            actor=request.user,
            reason=form.validated_data["reason"],
        )
        return Response(WorkerTokenSerializer(token).data)


class WorkerTokenRollAPIView(_TokenScoped, APIView):
    @extend_schema(
        tags=["tokens"],
        summary="Roll a token: a new one now, the old one expires after the overlap",
        request=TokenRollSerializer,
        responses={201: MintedTokenSerializer},
        examples=[OpenApiExample("roll", value={"overlap": "24h"}, request_only=True)],
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        form = TokenRollSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            token, raw = services.token_roll(
                token=self.get_token(),
                overlap=form.validated_data["overlap"],
                expires_in_days=form.validated_data.get("expires_in_days"),
                actor=request.user,
            )
        except DjangoValidationError as exc:
            raise _service_errors(exc) from exc
        return _minted_response(token, raw, self)


@extend_schema_view(
    get=extend_schema(tags=["tokens"], summary="List every worker token of the organization")
)
class OrganizationTokenListAPIView(OrgAPIMixin, generics.ListAPIView[WorkerToken]):
    serializer_class = WorkerTokenSerializer

    def scope_queryset(self) -> QuerySet[Any]:
        queryset = cast(WorkerTokenQuerySet, self.tenant_rows(WorkerToken)).select_related(
            "worker", "role", "rolled_from", "created_by"
        )
        if self.request.query_params.get("active") in ("1", "true"):
            queryset = queryset.usable()
        return queryset


class KillSwitchAPIView(OrgAPIMixin, APIView):
    """Org-wide kill switch: revoke every worker token. Confirm with the org slug."""

    @extend_schema(
        tags=["tokens"],
        request=KillSwitchSerializer,
        responses=RevokedCountSerializer,
        examples=[OpenApiExample("confirm", value={"confirm": "acme"}, request_only=True)],
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        form = KillSwitchSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            count = services.organization_revoke_all_worker_tokens(
                organization=self.organization,
                confirm=form.validated_data["confirm"],
                actor=request.user,
            )
        except DjangoValidationError as exc:
            raise _service_errors(exc) from exc
        return Response({"revoked": count})


TRUST_POLICY_EXAMPLE = {
    "preset": "github",
    "conditions": [
        {"claim": "repository", "value": "acme/triage"},
        {"claim": "ref", "value": "refs/heads/main"},
    ],
    "role": 3,
    "max_minutes": 15,
}

IDJAG_POLICY_EXAMPLE = {
    "preset": "idjag",
    "issuer": "https://acme.okta.com",
    "clients": ["https://claude.ai/oauth/mcp-oauth-client-metadata"],
    "conditions": [{"claim": "email", "value": "*@acme.example"}],
    "role": 3,
    "max_minutes": 60,
}


@extend_schema_view(
    get=extend_schema(
        tags=["workers"],
        summary="List a worker's trust policies",
        responses={200: TrustPolicySerializer(many=True), **error_responses(403, 404)},
    ),
    post=extend_schema(
        tags=["workers"],
        summary="Add a trust policy (outside tokens that may become this worker)",
        examples=[
            OpenApiExample("github", value=TRUST_POLICY_EXAMPLE, request_only=True),
            OpenApiExample("company IdP (ID-JAG)", value=IDJAG_POLICY_EXAMPLE, request_only=True),
        ],
        responses={201: TrustPolicySerializer, **error_responses(400, 403, 404)},
    ),
)
class TrustPolicyListCreateAPIView(_WorkerScoped, generics.ListCreateAPIView[TrustPolicy]):
    model = TrustPolicy
    serializer_class = TrustPolicySerializer

    def scope_queryset(self) -> QuerySet[Any]:
        return (
            self.tenant_rows(TrustPolicy)
            .filter(worker_id=self.kwargs["worker_id"])
            .select_related("role")
        )

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        self.get_worker()  # another org's (or no) worker: 404, not an empty list
        return super().list(request, *args, **kwargs)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        self.get_worker()  # 404 before the body is read: nothing about the worker leaks
        return super().create(request, *args, **kwargs)

    def perform_create(self, serializer: Any) -> None:
        data = serializer.validated_data
        try:
            serializer.instance = trust.trust_policy_create(
                worker=self.get_worker(),
                preset=data["preset"],
                issuer=data.get("issuer", ""),
                audience=data.get("audience", ""),
                conditions=[dict(c) for c in data.get("conditions", [])],
                clients=list(data.get("clients", [])),
                role=data["role"],
                max_minutes=data.get("max_minutes", 15),
                enabled=data.get("enabled", True),
                actor=self.request.user,
            )
        except DjangoValidationError as exc:
            raise _service_errors(exc) from exc


@extend_schema_view(
    get=extend_schema(
        tags=["workers"],
        summary="Read a trust policy",
        responses={200: TrustPolicySerializer, **error_responses(403, 404)},
    ),
    patch=extend_schema(
        tags=["workers"],
        summary="Enable or disable a trust policy (disabling revokes the tokens it let in)",
        request=TrustPolicyEnabledSerializer,
        responses={200: TrustPolicySerializer, **error_responses(400, 403, 404)},
    ),
    delete=extend_schema(
        tags=["workers"],
        summary="Delete a trust policy (the tokens it let in are revoked)",
        responses={204: None, **error_responses(403, 404)},
    ),
)
class TrustPolicyDetailAPIView(_WorkerScoped, generics.RetrieveDestroyAPIView[TrustPolicy]):
    model = TrustPolicy
    serializer_class = TrustPolicySerializer
    lookup_url_kwarg = "trust_policy_id"

    def scope_queryset(self) -> QuerySet[Any]:
        return (
            self.tenant_rows(TrustPolicy)
            .filter(worker_id=self.kwargs["worker_id"])
            .select_related("role")
        )

    def patch(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        policy = self.get_object()
        form = TrustPolicyEnabledSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        policy = trust.trust_policy_set_enabled(
            policy=policy, enabled=form.validated_data["enabled"], actor=request.user
        )
        return Response(TrustPolicySerializer(policy, context={"view": self}).data)

    def perform_destroy(self, instance: TrustPolicy) -> None:
        trust.trust_policy_delete(policy=instance, actor=self.request.user)
