"""Dashboard pages of the OpenAPI import: give a document (upload or URL), then choose
and edit the operations to save as actions of a custom provider. Plain forms only (no
script), so the pages work under a strict Content Security Policy."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core import signing
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views import View

from apps.providers.forms import ImportedActionFormSet, OpenAPISourceForm
from apps.providers.models import CustomProvider
from apps.providers.openapi import (
    OpenAPIImportError,
    ParsedDocument,
    fetch_document,
    max_bytes,
    max_operations,
    parse_document,
)
from apps.providers.services import ImportFailed, custom_actions_import
from apps.providers.views import _CustomProviderMixin

SOURCE_SALT = "grantry.providers.openapi-import"
SOURCE_MAX_AGE = 3600


def read_source(*, upload: Any = None, url: str = "") -> tuple[ParsedDocument, dict[str, Any]]:
    """Parse an uploaded file or a fetched URL; also the audit description of it."""
    if upload is not None:
        if upload.size is not None and upload.size > max_bytes():
            raise OpenAPIImportError(
                f"The file is {upload.size // 1000} kB; at most {max_bytes() // 1000} kB "
                "can be imported."
            )
        content = upload.read(max_bytes() + 1)
        origin = {"file": str(upload.name or "")[:200]}
    else:
        content = fetch_document(url)
        origin = {"url": url[:300]}
    parsed = parse_document(content)
    source = {
        **origin,
        "title": parsed.title,
        "version": parsed.version,
        "sha256": parsed.sha256,
    }
    return parsed, source


class OpenAPIImportView(_CustomProviderMixin, View):
    """GET: the source form. POST with a document: the review page. POST of the review
    page (it carries the formset): save the chosen operations, all or none."""

    def get(self, _request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self._source_page(OpenAPISourceForm())

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if "form-TOTAL_FORMS" in request.POST:
            return self._save()
        form = OpenAPISourceForm(request.POST, request.FILES)
        if not form.is_valid():
            return self._source_page(form)
        try:
            parsed, source = read_source(
                upload=form.cleaned_data.get("document"), url=form.cleaned_data.get("url") or ""
            )
        except OpenAPIImportError as exc:
            form.add_error(None, str(exc))
            return self._source_page(form)
        formset = ImportedActionFormSet(
            initial=[{**draft.as_dict(), "selected": not draft.problem} for draft in parsed.drafts]
        )
        problems = {draft.key: draft.problem for draft in parsed.drafts}
        return self._review_page(formset, source, problems, parsed.server_url)

    # --- pages -----------------------------------------------------------------------

    def _context(self, **extra: Any) -> dict[str, Any]:
        custom = self.get_custom()
        return {
            "organization": self.organization,
            "membership": self.membership,
            "custom": custom,
            "max_kb": max_bytes() // 1000,
            "max_operations": max_operations(),
            **extra,
        }

    def _source_page(self, form: OpenAPISourceForm) -> HttpResponse:
        return render(self.request, "providers/openapi_source.html", self._context(form=form))

    def _review_page(
        self,
        formset: Any,
        source: dict[str, Any],
        problems: dict[str, str],
        server_url: str = "",
        error: str = "",
    ) -> HttpResponse:
        rows = [(form, problems.get(str(form["key"].value()), "")) for form in formset]
        return render(
            self.request,
            "providers/openapi_review.html",
            self._context(
                formset=formset,
                rows=rows,
                source=source,
                signed_source=signing.dumps(source, salt=SOURCE_SALT),
                server_url=server_url,
                error=error,
            ),
        )

    def _save(self) -> HttpResponse:
        custom: CustomProvider = self.get_custom()
        formset = ImportedActionFormSet(self.request.POST)
        try:
            source = signing.loads(
                self.request.POST.get("source", ""), salt=SOURCE_SALT, max_age=SOURCE_MAX_AGE
            )
        except signing.BadSignature:
            messages.error(self.request, "The import expired or was altered. Start again.")
            return HttpResponseRedirect(self.request.path)
        if not formset.is_valid() and formset.non_form_errors():
            messages.error(self.request, " ".join(str(e) for e in formset.non_form_errors()))
            return HttpResponseRedirect(self.request.path)
        if len(formset.forms) > max_operations():
            messages.error(self.request, "Too many operations in one import. Start again.")
            return HttpResponseRedirect(self.request.path)
        chosen = [f for f in formset.forms if f.is_valid() and f.cleaned_data.get("selected")]
        # A checkbox's bound data is a bool even when the rest of its form is invalid.
        if any(not f.is_valid() and f["selected"].data for f in formset.forms):
            return self._review_page(
                formset, source, {}, error="Nothing was saved. Fix the marked operations."
            )
        try:
            created = custom_actions_import(
                provider=custom,
                actor=self.request.user,
                actions=[f.import_fields() for f in chosen],
                source=source,
            )
        except ImportFailed as failed:
            form = chosen[failed.index]
            if hasattr(failed.error, "error_dict"):
                for field, errors in failed.error.error_dict.items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                form.add_error(None, failed.error)
            return self._review_page(
                formset, source, {}, error="Nothing was saved. Fix the marked operation."
            )
        except ValidationError as error:
            return self._review_page(formset, source, {}, error=" ".join(error.messages))
        messages.success(
            self.request,
            f"Imported {len(created)} action(s) into {custom.display_name} from "
            f"{source.get('title') or 'the document'}.",
        )
        return HttpResponseRedirect(self.detail_url(custom))
