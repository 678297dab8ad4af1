"""Management API for the OpenAPI import:
POST /api/v1/orgs/<org_slug>/custom-providers/<provider_slug>/openapi-import/ (admins).

`dry_run` answers the drafts (one per operation); otherwise the chosen operations are
saved as actions, all or none, each optionally edited by giving its fields."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import APIError
from apps.core.openapi import error_responses
from apps.organizations.tenancy import OrgAPIMixin
from apps.providers.models import CustomProvider
from apps.providers.openapi import OpenAPIImportError, fetch_document, parse_document
from apps.providers.services import IMPORT_FIELDS, ImportFailed, custom_actions_import

EDITABLE = tuple(f for f in IMPORT_FIELDS if f != "method")


class OpenAPIImportRequestSerializer(serializers.Serializer[Any]):
    url = serializers.URLField(required=False, help_text="Fetched through the egress guard.")
    document = serializers.JSONField(
        required=False, help_text="The document: a JSON/YAML string, or the parsed object."
    )
    dry_run = serializers.BooleanField(default=False)
    operations = serializers.ListField(
        child=serializers.JSONField(),
        required=False,
        help_text='Keys such as "GET /pets/{id}", or objects {"key": …, <field>: …} that '
        f"override the draft's fields ({', '.join(EDITABLE)}).",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("url" in attrs) == ("document" in attrs):
            raise serializers.ValidationError("Give either 'url' or 'document'.")
        if not attrs["dry_run"] and not attrs.get("operations"):
            raise serializers.ValidationError(
                {"operations": "Choose the operations to import (or set dry_run)."}
            )
        return attrs


class DraftSerializer(serializers.Serializer[Any]):
    key = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    action_class = serializers.CharField()
    method = serializers.CharField()
    path = serializers.CharField()
    input_schema = serializers.JSONField()
    query_params = serializers.ListField(child=serializers.CharField())
    scopes = serializers.ListField(child=serializers.CharField())
    problem = serializers.CharField()


class OpenAPIImportResponseSerializer(serializers.Serializer[Any]):
    title = serializers.CharField()
    version = serializers.CharField()
    server_url = serializers.CharField()
    sha256 = serializers.CharField()
    operations = DraftSerializer(many=True, required=False)
    created = serializers.ListField(child=serializers.CharField(), required=False)


def _text(document: Any) -> str | bytes:
    if isinstance(document, str):
        return document
    import json

    return json.dumps(document)


class OpenAPIImportAPIView(OrgAPIMixin, APIView):
    model = CustomProvider

    @extend_schema(
        tags=["providers"],
        summary="Import actions from an OpenAPI document",
        request=OpenAPIImportRequestSerializer,
        responses={
            200: OpenAPIImportResponseSerializer,
            201: OpenAPIImportResponseSerializer,
            **error_responses(400, 403, 404),
        },
    )
    def post(self, request: Request, org_slug: str, provider_slug: str) -> Response:  # noqa: ARG002 - a URL kwarg, passed by name
        custom = get_object_or_404(self.scope_queryset(), slug=provider_slug)
        params = OpenAPIImportRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        try:
            if "url" in data:
                content: str | bytes = fetch_document(data["url"])
                origin = {"url": data["url"][:300]}
            else:
                content = _text(data["document"])
                origin = {"file": "(request body)"}
            parsed = parse_document(content)
        except OpenAPIImportError as exc:
            raise APIError("invalid_document", str(exc)) from None
        summary = {
            "title": parsed.title,
            "version": parsed.version,
            "server_url": parsed.server_url,
            "sha256": parsed.sha256,
        }
        if data["dry_run"]:
            return Response({**summary, "operations": [d.as_dict() for d in parsed.drafts]})
        drafts = {d.key: d for d in parsed.drafts}
        chosen: list[dict[str, Any]] = []
        keys: list[str] = []
        for item in data["operations"]:
            spec = {"key": item} if isinstance(item, str) else item
            if not isinstance(spec, dict) or spec.get("key") not in drafts:
                raise APIError(
                    "unknown_operation",
                    "Each operation is a key of the document, e.g. 'GET /pets'.",
                    details={"operation": str(spec.get("key") if isinstance(spec, dict) else spec)},
                )
            extra = sorted(set(spec) - {"key", *EDITABLE})
            if extra:
                raise APIError(
                    "invalid_operation",
                    f"These fields cannot be set: {', '.join(extra)}.",
                    details={"operation": spec["key"]},
                )
            draft = drafts[spec["key"]].as_dict()
            chosen.append({f: spec.get(f, draft[f]) for f in IMPORT_FIELDS})
            keys.append(spec["key"])
        try:
            created = custom_actions_import(
                provider=custom,
                actor=request.user,
                actions=chosen,
                source={**origin, **summary},
            )
        except ImportFailed as failed:
            error = failed.error
            details = (
                {
                    k: [str(m) for m in v.messages] if hasattr(v, "messages") else v
                    for k, v in error.message_dict.items()
                }
                if hasattr(error, "error_dict")
                else {"": error.messages}
            )
            problem = drafts[keys[failed.index]].problem
            raise APIError(
                "invalid_action",
                f"'{keys[failed.index]}' cannot be imported" + (f": {problem}" if problem else "."),
                details={"operation": keys[failed.index], "errors": details},
            ) from None
        except ValidationError as error:
            raise APIError("invalid_action", " ".join(error.messages)) from None
        return Response(
            {**summary, "created": [f"{custom.key}.{a.name}" for a in created]},
            status=status.HTTP_201_CREATED,
        )
