"""Management API for roles (/api/v1/orgs/<org_slug>/roles/…).

Reviewers read, admins and owners write (OrgAPIMixin). Writes go through
apps.policies.services, which validates every rule and audits the change.
Field errors use the shared shape, with keys such as "rules.0.connection"."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import generics, serializers, status
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from typing_extensions import override

from apps.core.api import APIError, from_form_errors
from apps.core.openapi import error_responses
from apps.core.parsers import JSONParser
from apps.organizations.models import OrgRole
from apps.organizations.tenancy import OrgAPIMixin
from apps.policies.forms import DryRunForm
from apps.policies.least_privilege import least_privilege_params, least_privilege_report
from apps.policies.models import Role, RuleKind
from apps.policies.selectors import role_document, role_dry_run
from apps.policies.services import (
    role_create,
    role_delete,
    role_narrow,
    role_update,
)
from apps.policies.simulation import DocumentError, clean_days, role_simulate, rules_from_document

RULE_EXAMPLES = [
    {
        "kind": "action",
        "provider_key": "sandbox",
        "action_pattern": "sandbox.*",
        "action_class": "read",
        "connection": None,
    },
    {
        "kind": "action",
        "provider_key": "sandbox",
        "action_pattern": "sandbox.create_task",
        "connection": 4,
        "constraints": [{"field": "priority", "op": "max", "value": 3}],
        "rate_limit_per_minute": 30,
    },
    {
        "kind": "proxy",
        "provider_key": "sandbox",
        "connection": 4,
        "methods": ["GET"],
        "path_glob": "/projects/*/tasks",
    },
    {
        "kind": "action",
        "provider_key": "sandbox",
        "action_pattern": "sandbox.delete_task",
        "connection": 4,
        "approval": {"required": True, "expires_in": 3600, "approvers": []},
    },
]
ROLE_REQUEST_EXAMPLE = {
    "name": "triage",
    "description": "Reads Sandbox tasks; may file low-priority ones.",
    "rules": RULE_EXAMPLES,
}
ROLE_RESPONSE_EXAMPLE = {
    "id": 3,
    "name": "triage",
    "description": "Reads Sandbox tasks; may file low-priority ones.",
    "created_at": "2026-11-28T10:00:00+00:00",
    "updated_at": "2026-11-28T10:00:00+00:00",
    "rules": [
        {
            "id": 11,
            "kind": "action",
            "provider_key": "sandbox",
            "action_pattern": "sandbox.*",
            "action_class": "read",
            "constraints": [],
            "connection": None,
            "connection_name": None,
            "rate_limit_per_minute": None,
            "approval": None,
            "schedule": {
                "days": ["mon", "tue", "wed", "thu", "fri"],
                "start": "09:00",
                "end": "18:00",
                "timezone": "Europe/Berlin",
            },
            "quota": {"limit": 200, "per": "day"},
        },
    ],
}
ERROR_EXAMPLE = {
    "error": {
        "code": "invalid_input",
        "message": "The role has invalid fields.",
        "details": {"fields": {"rules.0.connection": ["No such connection in this organization."]}},
        "request_id": "5f0c…",
    }
}


class ConstraintSerializer(serializers.Serializer[Any]):
    field = serializers.CharField()
    op = serializers.ChoiceField(choices=["equals", "one_of", "glob", "prefix", "max"])
    value = serializers.JSONField()


class ApprovalSettingSerializer(serializers.Serializer[Any]):
    required = serializers.BooleanField(default=True)  # type: ignore[assignment]
    expires_in = serializers.IntegerField(
        required=False, help_text="Seconds an approval request lives (60 to 604800, default 3600)."
    )
    approvers = serializers.ListField(
        child=serializers.EmailField(),
        required=False,
        help_text="Member emails who may approve; empty: the organization's admins and owners.",
    )


class ScheduleSerializer(serializers.Serializer[Any]):
    """Only inside this window: 403 with the reopening time outside it."""

    days = serializers.JSONField(help_text='"weekdays", "weekend", "daily" or ["mon", "tue", …]')
    start = serializers.CharField(help_text="09:00 (inclusive, local time)")
    end = serializers.CharField(help_text="18:00 (exclusive; before start = over midnight)")
    timezone = serializers.CharField(help_text="IANA name, e.g. Europe/Berlin")


class QuotaSerializer(serializers.Serializer[Any]):
    """Per worker; over it: 429 with Retry-After."""

    limit = serializers.IntegerField(min_value=1)
    per = serializers.ChoiceField(choices=["minute", "hour", "day"])


class RuleSerializer(serializers.Serializer[Any]):
    """Documentation of a rule's shape; the service validates the content."""

    id = serializers.IntegerField(read_only=True)
    kind = serializers.ChoiceField(choices=RuleKind.choices, default=RuleKind.ACTION)
    provider_key = serializers.CharField()
    action_pattern = serializers.CharField(
        required=False, help_text='Exact action ("sandbox.list_tasks") or "<provider>.*".'
    )
    action_class = serializers.ChoiceField(
        choices=["", "read", "write"], required=False, help_text="With a pattern: only these."
    )
    connection = serializers.JSONField(
        allow_null=True,
        required=False,
        help_text="Connection id (or name); null = any shared connection of the provider; "
        '"on_behalf_of" (action rules) = the personal connection of the member the calling '
        "worker acts for.",
    )
    connection_name = serializers.CharField(read_only=True, allow_null=True)
    methods = serializers.ListField(child=serializers.CharField(), required=False)
    path_glob = serializers.CharField(required=False)
    constraints = ConstraintSerializer(many=True, required=False)
    rate_limit_per_minute = serializers.IntegerField(allow_null=True, required=False)
    approval = ApprovalSettingSerializer(
        allow_null=True,
        required=False,
        help_text='null: a plain rule. Or "required" (shorthand) or an object: the call then '
        "answers 202 and runs only after a person approves that exact call.",
    )
    schedule = ScheduleSerializer(allow_null=True, required=False)
    quota = QuotaSerializer(allow_null=True, required=False)


class RoleSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(max_length=60)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)
    # Plain JSON in: nested validation with precise keys happens in the service.
    rules = serializers.ListField(child=serializers.JSONField(), required=False)

    def to_representation(self, instance: Role) -> dict[str, Any]:
        return role_document(instance)


class RoleWriteDocs(RoleSerializer):
    rules = RuleSerializer(many=True, required=False)  # type: ignore[assignment]


def _invalid(exc: DjangoValidationError) -> APIError:
    fields = exc.message_dict if hasattr(exc, "error_dict") else {"role": exc.messages}
    return APIError(
        "invalid_input",
        "The role has invalid fields.",
        status_code=status.HTTP_400_BAD_REQUEST,
        details={"fields": fields},
    )


class _RoleScope(OrgAPIMixin):
    model = Role

    def scope_queryset(self) -> QuerySet[Role]:
        return self.tenant_rows(Role).prefetch_related("rules")


_examples = [
    OpenApiExample("request", value=ROLE_REQUEST_EXAMPLE, request_only=True),
    OpenApiExample("role", value=ROLE_RESPONSE_EXAMPLE, response_only=True),
    OpenApiExample("invalid rule", value=ERROR_EXAMPLE, response_only=True, status_codes=["400"]),
]


@extend_schema_view(
    get=extend_schema(
        tags=["roles"],
        summary="List roles with their rules",
        responses=RoleWriteDocs,
        examples=_examples[1:2],
    ),
    post=extend_schema(
        tags=["roles"],
        summary="Create a role with its rules",
        request=RoleWriteDocs,
        responses={201: RoleWriteDocs},
        examples=_examples,
    ),
)
class RoleListCreateAPIView(_RoleScope, generics.ListCreateAPIView[Role]):
    serializer_class = RoleSerializer

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            role = role_create(
                organization=self.organization,
                name=data["name"],
                description=data.get("description", ""),
                rules=data.get("rules") or [],
                actor=request.user,
            )
        except DjangoValidationError as exc:
            raise _invalid(exc) from None
        return Response(role_document(role), status=status.HTTP_201_CREATED)


@extend_schema_view(
    get=extend_schema(
        tags=["roles"], summary="One role", responses=RoleWriteDocs, examples=_examples[1:2]
    ),
    put=extend_schema(
        tags=["roles"],
        summary="Replace a role: name, description and the whole rule set",
        request=RoleWriteDocs,
        responses=RoleWriteDocs,
        examples=_examples,
    ),
    patch=extend_schema(
        tags=["roles"],
        summary="Change some of name, description, rules (rules given = replaced as a whole)",
        request=RoleWriteDocs,
        responses=RoleWriteDocs,
        examples=_examples,
    ),
    delete=extend_schema(tags=["roles"], summary="Delete a role and its rules"),
)
class RoleDetailAPIView(_RoleScope, generics.RetrieveUpdateDestroyAPIView[Role]):
    serializer_class = RoleSerializer

    def get_object(self) -> Role:
        return get_object_or_404(self.get_queryset(), pk=self.kwargs["role_id"])

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        partial = kwargs.pop("partial", False)
        role = self.get_object()
        serializer = self.get_serializer(role, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        rules = data.get("rules")
        if not partial and rules is None:
            rules = []  # PUT replaces everything: no rules given means none
        try:
            role = role_update(
                role=role,
                name=data.get("name"),
                # PUT replaces the whole role; PATCH changes only what it names.
                description=(
                    data.get("description", "")
                    if not partial or "description" in request.data
                    else None
                ),
                rules=rules,
                actor=request.user,
            )
        except DjangoValidationError as exc:
            raise _invalid(exc) from None
        return Response(role_document(role))

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            role_delete(role=self.get_object(), actor=request.user)
        except DjangoValidationError as exc:
            raise APIError(
                "conflict",
                " ".join(m for msgs in exc.message_dict.values() for m in msgs),
                status_code=status.HTTP_409_CONFLICT,
            ) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Dry run (“Test a call” of the role editor) -----------------------------------------


class DryRunRequestSerializer(serializers.Serializer[Any]):
    """Documentation of the body; the dashboard's DryRunForm validates it."""

    kind = serializers.ChoiceField(choices=RuleKind.choices, default=RuleKind.ACTION)
    action = serializers.CharField(required=False, help_text='For actions: "sandbox.list_tasks".')
    connection = serializers.IntegerField(
        required=False, allow_null=True, help_text="Connection id (required for proxy calls)."
    )
    input = serializers.JSONField(required=False, help_text="For actions: the input object.")
    method = serializers.CharField(required=False, help_text="For proxy calls: GET, POST, …")
    path = serializers.CharField(required=False, help_text="For proxy calls: /projects/1/tasks")


class InputErrorSerializer(serializers.Serializer[Any]):
    path = serializers.CharField()
    message = serializers.CharField()


class DryRunResultSerializer(serializers.Serializer[Any]):
    allowed = serializers.BooleanField()
    reason = serializers.CharField()
    rule_id = serializers.IntegerField(allow_null=True)
    rate_limit_per_minute = serializers.IntegerField(allow_null=True)
    input_errors = InputErrorSerializer(
        many=True, help_text="Input the broker would refuse before sending anything."
    )


class RoleDryRunAPIView(_RoleScope, APIView):
    """What would this role decide for a call? Nothing is sent and nothing changes."""

    # A read: reviewers may test roles as they may read them.
    write_role = OrgRole.REVIEWER

    @extend_schema(
        tags=["roles"],
        summary="Test a call against a role (dry run: nothing is sent, nothing changes)",
        request=DryRunRequestSerializer,
        responses={200: DryRunResultSerializer, **error_responses(400, 403, 404)},
        examples=[
            OpenApiExample(
                "action",
                value={
                    "kind": "action",
                    "action": "sandbox.list_tasks",
                    "input": {"project_id": 1},
                },
                request_only=True,
            ),
            OpenApiExample(
                "proxy",
                value={"kind": "proxy", "connection": 4, "method": "GET", "path": "/projects"},
                request_only=True,
            ),
        ],
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        role = get_object_or_404(self.get_queryset(), pk=kwargs["role_id"])
        body = request.data if isinstance(request.data, dict) else {}
        data = {
            key: "" if body.get(key) is None else str(body[key])
            for key in ("kind", "action", "connection", "method", "path")
        }
        data["kind"] = data["kind"] or "action"
        data["method"] = (data["method"] or "GET").upper()
        data["input"] = json.dumps(body.get("input", {}))
        form = DryRunForm.for_organization(self.organization, data)
        if not form.is_valid():
            raise from_form_errors(form)
        decision, input_errors = role_dry_run(role=role, cleaned=form.cleaned_data)
        return Response(
            {
                "allowed": decision.allowed,
                "reason": decision.reason,
                "rule_id": decision.rule_id,
                "rate_limit_per_minute": decision.rate_limit_per_minute,
                "input_errors": [{"path": e.path, "message": e.message} for e in input_errors],
            }
        )


class YAMLParser(BaseParser):
    media_type = "application/yaml"

    @override
    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        return {"document": stream.read().decode("utf-8", "replace")}


class TextYAMLParser(YAMLParser):
    media_type = "text/yaml"


@extend_schema(
    tags=["roles"],
    summary="Simulate proposed rules against the role's recorded calls",
    description=(
        "Replays the last `days` (default 30) of this role's recorded broker calls "
        "against the proposed rules with the broker's own evaluate(), and reports the "
        "calls that would flip allowed→denied and denied→allowed, with examples. Calls "
        "whose input was not stored (store_broker_input off) are reported as "
        "undetermined when a constraint would decide them. Send JSON "
        '`{"rules": [...], "days": 30}` or a YAML/JSON document (Content-Type '
        "application/yaml) that is a rule list or a role document; `?days=` works for "
        "both. Nothing is saved."
    ),
    request=RoleWriteDocs,
    responses={200: OpenApiTypes.OBJECT},
)
class RoleSimulateAPIView(_RoleScope, APIView):
    write_role = OrgRole.REVIEWER  # a simulation changes nothing
    parser_classes = (JSONParser, YAMLParser, TextYAMLParser)

    def post(self, request: Request, org_slug: str, role_id: int) -> Response:  # noqa: ARG002 - a URL kwarg, passed by name
        role = get_object_or_404(self.scope_queryset(), pk=role_id)
        data = request.data
        try:
            if isinstance(data, dict) and "document" in data and len(data) == 1:
                rules = rules_from_document(data["document"])
                days = clean_days(request.query_params.get("days"))
            elif isinstance(data, dict) and isinstance(data.get("rules"), list):
                rules = data["rules"]
                days = clean_days(data.get("days", request.query_params.get("days")))
            elif isinstance(data, list):
                rules, days = data, clean_days(request.query_params.get("days"))
            else:
                raise DocumentError('Send the proposed rules as {"rules": [...]} or a rule list.')
        except DocumentError as exc:
            raise APIError("invalid_input", str(exc)) from None
        try:
            result = role_simulate(role=role, rules=rules, days=days)
        except DjangoValidationError as exc:
            raise _invalid(exc) from None
        return Response({"role": role.pk, "days": days, **result.as_dict()})


@extend_schema_view(
    get=extend_schema(
        tags=["roles"],
        summary="Least-privilege report of a role (optionally for one worker)",
        description=(
            "Over the last `days` (default 30) of recorded calls, optionally of `worker`: "
            "the rules that matched and how often, rules never matched, constraints that "
            "never decided anything, repeating denials, and a narrower role as rules, a "
            "YAML diff and a digest. `?format=yaml` answers the proposed role as YAML."
        ),
        responses={200: OpenApiTypes.OBJECT},
    ),
    post=extend_schema(
        tags=["roles"],
        summary="Apply the least-privilege proposal (admins; audited)",
        description=(
            'Body `{"proposal_digest": "...", "days": 30, "worker": 7}` (a missing, unknown '
            "or query-string field is a 400 that names it): the proposal is "
            "computed again and applied only if it is still the one with this digest."
        ),
        request=OpenApiTypes.OBJECT,
        responses={200: RoleWriteDocs},
    ),
)
class RoleLeastPrivilegeAPIView(_RoleScope, APIView):
    def _params(self, data: Any) -> tuple[int, Any]:
        try:
            return least_privilege_params(self.organization, data)
        except DocumentError as exc:
            raise APIError("invalid_input", str(exc)) from None

    def get(self, request: Request, org_slug: str, role_id: int) -> Any:  # noqa: ARG002 - a URL kwarg, passed by name
        role = get_object_or_404(self.scope_queryset(), pk=role_id)
        days, worker = self._params(request.query_params)
        report = least_privilege_report(
            role=role, worker_id=worker.pk if worker else None, days=days
        )
        if request.query_params.get("format") == "yaml":
            return HttpResponse(report.proposal_yaml(), content_type="text/yaml; charset=utf-8")
        return Response(report.as_dict())

    def post(self, request: Request, org_slug: str, role_id: int) -> Response:  # noqa: ARG002 - a URL kwarg, passed by name
        role = get_object_or_404(self.scope_queryset(), pk=role_id)
        data = _apply_body(request)
        days, worker = self._params(data)
        try:
            role = role_narrow(
                role=role,
                days=days,
                worker_id=worker.pk if worker else None,
                proposal_digest=data["proposal_digest"],
                actor=request.user,
            )
        except DjangoValidationError as exc:
            errors = exc.error_dict.get("proposal", []) if hasattr(exc, "error_dict") else []
            current = next((e.params or {} for e in errors if e.code == "proposal_changed"), {})
            raise APIError(
                "conflict",
                " ".join(m for msgs in exc.message_dict.values() for m in msgs),
                status_code=status.HTTP_409_CONFLICT,
                details=dict(current),
            ) from None
        return Response(role_document(role))


APPLY_FIELDS = ("proposal_digest", "days", "worker")


def _apply_body(request: Request) -> dict[str, Any]:
    """The apply body, or a 400 that names each missing, unknown or misplaced field
    (a digest under another name, or the worker in the query string, would otherwise
    compute another proposal and read as "the proposal changed")."""
    data = request.data
    if not isinstance(data, dict):
        raise APIError(
            "invalid_input",
            'Send a JSON object: {"proposal_digest": "…", "days": 30, "worker": 7}.',
        )
    problems: list[tuple[str, str]] = []
    for key in sorted(set(data) - set(APPLY_FIELDS)):
        hint = (
            " The report's proposal.digest goes in 'proposal_digest'."
            if "digest" in str(key) or key == "proposal"
            else ""
        )
        problems.append((f"/{key}", f"Unknown field '{key}'.{hint}"))
    for key in ("worker", "days"):
        if key in request.query_params:
            problems.append(
                (
                    f"/{key}",
                    f"'{key}' goes in the JSON body when applying, not in the query string.",
                )
            )
    digest = data.get("proposal_digest")
    if not isinstance(digest, str) or not digest.strip():
        problems.append(
            (
                "/proposal_digest",
                "'proposal_digest' is required: the proposal.digest of the report you reviewed.",
            )
        )
    if problems:
        raise APIError(
            "invalid_input",
            " ".join(message for _, message in problems),
            details={"fields": [{"path": path, "message": m} for path, m in problems]},
        )
    return data
