"""Management API for the OpenAPI import (admins), a job that runs in the background:

* POST …/custom-providers/<slug>/openapi-import/ — give the document (`url`, or `document`
  as a JSON/YAML string or object) and, optionally, which operations to draft (`tags`,
  `path_prefix`, `methods`, `search`, `operations`). 202 with the job; poll its `url`.
  Without `dry_run` the chosen `operations` (keys, or {"key": …, <field>: …} to edit a
  draft) are saved once drafted, all or none.
* GET …/openapi-import/<id>/ — the job: status, progress, the operations found (with
  why any is refused), and once drafted the drafts (or, saved, the created actions).
* POST …/openapi-import/<id>/ — choose again from the same document (202).

The body is validated by the dashboard's own forms (OpenAPISourceForm for the source,
OpenAPISelectionForm for the choice) and written by the same services
(`import_services`). A document may be larger than Django's request-body cap for form
data, so this endpoint reads its JSON body itself, up to twice GRANTRY_OPENAPI_MAX_BYTES
(a document sent as a JSON string is escaped), and answers a larger one with the JSON
size error."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile, UploadedFile
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.datastructures import MultiValueDict
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import APIError, from_form_errors, from_service_error
from apps.core.json_input import HostileInput, loads
from apps.core.openapi import error_responses
from apps.core.parsers import MAX_DEPTH, MAX_NODES
from apps.organizations.tenancy import OrgAPIMixin
from apps.providers.forms import OpenAPISelectionForm, OpenAPISourceForm
from apps.providers.import_services import openapi_import_choose, openapi_import_start
from apps.providers.models import CustomProvider, ImportStatus, OpenAPIImport
from apps.providers.openapi.document import DocumentTooLarge, max_bytes, too_large
from apps.providers.services import IMPORT_FIELDS

EDITABLE = tuple(f for f in IMPORT_FIELDS if f != "method")
SELECTION_FIELDS = ("tags", "path_prefix", "methods", "search", "operations")


def _too_large(error: DocumentTooLarge) -> APIError:
    return APIError(
        "document_too_large", str(error), status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    )


class DocumentBodyParser(BaseParser):
    """JSON, read from the stream with this endpoint's own size cap (not Django's
    DATA_UPLOAD_MAX_MEMORY_SIZE, which would answer an HTML 400 past 2.5 MB)."""

    media_type = "application/json"

    def parse(
        self,
        stream: Any,
        media_type: Any = None,  # noqa: ARG002 - DRF's parser signature
        parser_context: Any = None,  # noqa: ARG002 - DRF's parser signature
    ) -> Any:
        cap = 2 * max_bytes() + 100_000
        raw = stream.read(cap + 1) if stream is not None else b""
        if len(raw) > cap:
            raise _too_large(too_large(len(raw)))
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise exceptions.ParseError("The request body is not valid utf-8.") from None
        # The management API's one JSON gate, with its limits (apps.core.parsers).
        try:
            return loads(text or "null", max_depth=MAX_DEPTH, max_nodes=MAX_NODES)
        except HostileInput as problem:
            raise exceptions.ParseError(problem.message) from None


class OpenAPIImportRequestSerializer(serializers.Serializer[Any]):
    url = serializers.URLField(required=False, help_text="Fetched through the egress guard.")
    document = serializers.JSONField(
        required=False, help_text="The document: a JSON/YAML string, or the parsed object."
    )
    dry_run = serializers.BooleanField(default=False, help_text="Draft, but save nothing.")
    tags = serializers.ListField(child=serializers.CharField(), required=False)
    path_prefix = serializers.CharField(required=False)
    methods = serializers.ListField(child=serializers.CharField(), required=False)
    search = serializers.CharField(required=False)
    operations = serializers.ListField(
        child=serializers.JSONField(),
        required=False,
        help_text='Keys such as "GET /pets/{id}", or objects {"key": …, <field>: …} that '
        f"override the draft's fields ({', '.join(EDITABLE)}).",
    )


class OpenAPIImportSerializer(serializers.ModelSerializer[OpenAPIImport]):
    url = serializers.SerializerMethodField(help_text="Poll this until the status is final.")
    stage = serializers.CharField(source="get_status_display")
    progress = serializers.SerializerMethodField()
    found = serializers.SerializerMethodField()

    class Meta:
        model = OpenAPIImport
        fields = (
            "id",
            "url",
            "status",
            "stage",
            "progress",
            "origin",
            "title",
            "version",
            "server_url",
            "sha256",
            "found",
            "operations",
            "selection",
            "chosen",
            "drafts",
            "created_actions",
            "error",
            "error_details",
            "created_at",
            "finished_at",
        )

    def get_url(self, job: OpenAPIImport) -> str:
        return reverse(
            "org_api:custom-provider-openapi-import-detail",
            kwargs={
                "org_slug": job.organization.slug,
                "provider_slug": job.provider.slug,
                "pk": job.pk,
            },
        )

    def get_progress(self, job: OpenAPIImport) -> dict[str, int]:
        return {"done": job.progress_done, "total": job.progress_total, "percent": job.percent}

    def get_found(self, job: OpenAPIImport) -> dict[str, Any]:
        """How many operations the document lists, and how many are refused, by reason:
        those the index refuses, and those of the current drafts that cannot be imported."""
        refused: dict[str, int] = {}
        for item in [*job.operations, *job.drafts]:
            if item["problem"]:
                refused[item["problem"]] = refused.get(item["problem"], 0) + 1
        return {"operations": len(job.operations), "refused": refused}


def _selection(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The choice in the body, and the edits given with `operations` objects."""
    edits: dict[str, dict[str, Any]] = {}
    keys: list[str] = []
    for item in data.get("operations") or []:
        spec = {"key": item} if isinstance(item, str) else item
        if not isinstance(spec, dict) or not isinstance(spec.get("key"), str):
            raise APIError(
                "invalid_operation", 'Each operation is a key such as "GET /pets", or an object.'
            )
        extra = sorted(set(spec) - {"key", *EDITABLE})
        if extra:
            raise APIError(
                "invalid_operation",
                f"These fields cannot be set: {', '.join(extra)}.",
                details={"operation": spec["key"]},
            )
        keys.append(spec["key"])
        if len(spec) > 1:
            edits[spec["key"]] = {k: v for k, v in spec.items() if k != "key"}
    selection = {k: data[k] for k in SELECTION_FIELDS if k in data and k != "operations"}
    if keys:
        selection["operations"] = keys
    return selection, edits


def _choice_form(selection: dict[str, Any], job: OpenAPIImport | None) -> dict[str, Any]:
    form = OpenAPISelectionForm(data=selection, index=None if job is None else list(job.operations))
    if not form.is_valid():
        raise from_form_errors(form)
    return form.selection()


class _ImportScope(OrgAPIMixin):
    model = CustomProvider
    kwargs: dict[str, Any]

    def get_custom(self) -> CustomProvider:
        return get_object_or_404(self.scope_queryset(), slug=self.kwargs["provider_slug"])


class OpenAPIImportAPIView(_ImportScope, APIView):
    parser_classes = (DocumentBodyParser,)

    @extend_schema(
        tags=["providers"],
        summary="Import actions from an OpenAPI document (a background job)",
        request=OpenAPIImportRequestSerializer,
        responses={
            202: OpenAPIImportSerializer,
            **error_responses(400, 403, 404, 413),
        },
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        custom = self.get_custom()
        params = OpenAPIImportRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        selection, edits = _selection(data)
        if not data["dry_run"] and not selection.get("operations"):
            raise APIError(
                "invalid_input",
                "Choose the operations to import (or set dry_run).",
                details={"fields": {"operations": ["Choose the operations to import."]}},
            )
        files: MultiValueDict[str, UploadedFile] = MultiValueDict()
        if "document" in data:
            document = data["document"]
            text = document if isinstance(document, str) else json.dumps(document)
            try:
                content = text.encode()
            except UnicodeEncodeError:
                raise APIError(
                    "invalid_document", "The document holds a lone UTF-16 surrogate (not text)."
                ) from None
            files["document"] = SimpleUploadedFile("(request body)", content)
        source = OpenAPISourceForm(data={"url": data.get("url", "")}, files=files)
        if not source.is_valid():
            raise from_form_errors(source)
        choice = _choice_form(selection, None) if selection else {}
        upload = source.cleaned_data.get("document")
        try:
            job = openapi_import_start(
                provider=custom,
                actor=request.user,
                content=upload.read() if upload else None,
                file_name="(request body)",
                url=source.cleaned_data.get("url") or "",
                selection=choice,
                auto_import=not data["dry_run"],
                edits=edits,
            )
        except DocumentTooLarge as exc:
            raise _too_large(exc) from None
        body = OpenAPIImportSerializer(job).data
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})


class OpenAPIImportDetailAPIView(OrgAPIMixin, APIView):
    model = OpenAPIImport
    kwargs: dict[str, Any]

    def get_job(self) -> OpenAPIImport:
        return get_object_or_404(
            self.scope_queryset().select_related("provider", "organization"),
            pk=self.kwargs["pk"],
            provider__slug=self.kwargs["provider_slug"],
        )

    @extend_schema(
        tags=["providers"],
        summary="An OpenAPI import: status, progress, operations found, drafts",
        responses={200: OpenAPIImportSerializer, **error_responses(403, 404)},
    )
    def get(self, _request: Request, **kwargs: Any) -> Response:
        return Response(OpenAPIImportSerializer(self.get_job()).data)

    @extend_schema(
        tags=["providers"],
        summary="Choose again which operations of the document to draft (or import)",
        operation_id="v1_orgs_custom_providers_openapi_import_choose",
        request=OpenAPIImportRequestSerializer,
        responses={202: OpenAPIImportSerializer, **error_responses(400, 403, 404, 409)},
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        job = self.get_job()
        params = OpenAPIImportRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        if "url" in data or "document" in data:
            raise APIError("invalid_input", "Start another import for another document.")
        selection, edits = _selection(data)
        if job.status not in (ImportStatus.CHOOSING, ImportStatus.READY):
            raise APIError(
                "conflict",
                "The document is still being read."
                if job.is_working
                else "This import is over: start another.",
                status_code=status.HTTP_409_CONFLICT,
            )
        choice = _choice_form(selection, job)
        try:
            job = openapi_import_choose(
                job=job, selection=choice, auto_import=not data["dry_run"], edits=edits
            )
        except ValidationError as exc:
            raise from_service_error(exc) from None
        body = OpenAPIImportSerializer(job).data
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})
