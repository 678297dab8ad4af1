"""Dashboard pages of the OpenAPI import: give a document (upload or URL); follow its
reading in the background; choose the operations (by tag, path prefix, method, search or
one by one); then review and edit their drafts and save the chosen ones. Plain forms
only (no script of ours): the progress fragment is polled by htmx, and without
JavaScript the page says to reload it, so the pages work under a strict Content Security
Policy."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views import View

from apps.organizations.models import OrgRole
from apps.organizations.tenancy import OrgViewMixin
from apps.providers.forms import ImportedActionFormSet, OpenAPISelectionForm, OpenAPISourceForm
from apps.providers.import_services import (
    openapi_import_choose,
    openapi_import_save,
    openapi_import_start,
)
from apps.providers.models import CustomProvider, ImportStatus, OpenAPIImport
from apps.providers.openapi.document import (
    OpenAPIImportError,
    max_bytes,
    max_operations,
    too_large,
)
from apps.providers.openapi.reading import select
from apps.providers.services import ImportFailed
from apps.providers.views.catalog import _CustomProviderMixin

# The choose page lists at most this many matching operations (the count is always shown).
LISTED = 300


class _ImportMixin(OrgViewMixin):
    """Admin pages of the import."""

    required_role = OrgRole.ADMIN
    kwargs: dict[str, Any]

    def _context(self, custom: CustomProvider, **extra: Any) -> dict[str, Any]:
        return {
            "organization": self.organization,
            "membership": self.membership,
            "custom": custom,
            "max_kb": max_bytes() // 1000,
            "max_operations": max_operations(),
            **extra,
        }


class OpenAPIImportView(_ImportMixin, _CustomProviderMixin, View):
    """GET: the source form. POST: store the document and go to its job page."""

    def get(self, _request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self._page(OpenAPISourceForm())

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = OpenAPISourceForm(request.POST, request.FILES)
        if not form.is_valid():
            return self._page(form)
        custom = self.get_custom()
        upload = form.cleaned_data.get("document")
        try:
            if upload is not None and upload.size is not None and upload.size > max_bytes():
                raise too_large(upload.size)
            job = openapi_import_start(
                provider=custom,
                actor=request.user,
                content=upload.read(max_bytes() + 1) if upload is not None else None,
                file_name=str(upload.name or "") if upload is not None else "",
                url=form.cleaned_data.get("url") or "",
            )
        except OpenAPIImportError as exc:
            form.add_error(None, str(exc))
            return self._page(form)
        return HttpResponseRedirect(job_url(job))

    def _page(self, form: OpenAPISourceForm) -> HttpResponse:
        custom = self.get_custom()
        return render(
            self.request, "providers/openapi_source.html", self._context(custom, form=form)
        )


def job_url(job: OpenAPIImport) -> str:
    return reverse(
        "providers:custom_openapi_import_job",
        kwargs={"org_slug": job.organization.slug, "slug": job.provider.slug, "pk": job.pk},
    )


class OpenAPIImportJobView(_ImportMixin, View):
    """One import: its progress while the document is read, then the choice of
    operations, then the review of their drafts (POST of either form)."""

    model = OpenAPIImport

    def get_job(self) -> OpenAPIImport:
        return get_object_or_404(
            self.scope_queryset().select_related("provider", "organization"),
            pk=self.kwargs["pk"],
            provider__slug=self.kwargs["slug"],
        )

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        job = self.get_job()
        if getattr(request, "htmx", False):
            response = render(request, "providers/_openapi_progress.html", {"job": job})
            if not job.is_working:
                response["HX-Refresh"] = "true"  # the next step is a whole page
            return response
        choice = OpenAPISelectionForm(request.GET or None, index=job.operations)
        if request.GET:
            choice.is_valid()
        return self._page(job, choice=choice)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        job = self.get_job()
        if "form-TOTAL_FORMS" in request.POST:
            return self._save(job)
        choice = OpenAPISelectionForm(request.POST, index=job.operations)
        if not choice.is_valid():
            return self._page(job, choice=choice)
        try:
            openapi_import_choose(job=job, selection=choice.selection())
        except ValidationError as error:
            choice.add_error(None, error)
            return self._page(job, choice=choice)
        return HttpResponseRedirect(job_url(job))

    def _page(
        self,
        job: OpenAPIImport,
        *,
        choice: OpenAPISelectionForm | None = None,
        formset: Any = None,
        error: str = "",
    ) -> HttpResponse:
        matched: list[dict[str, Any]] = []
        if choice is not None and job.status in (ImportStatus.CHOOSING, ImportStatus.READY):
            # What validated of a refused choice still narrows the list shown with the error.
            criteria = getattr(choice, "cleaned_data", {}) if choice.is_bound else {}
            matched = select(
                job.operations,
                tags=criteria.get("tags"),
                path_prefix=criteria.get("path_prefix") or "",
                methods=criteria.get("methods"),
                search=criteria.get("search") or "",
            )
        if formset is None and job.status == ImportStatus.READY:
            formset = ImportedActionFormSet(
                initial=[{**d, "selected": not d["problem"]} for d in job.drafts]
            )
        problems = {d["key"]: d["problem"] for d in job.drafts}
        rows = [(f, problems.get(str(f["key"].value()), "")) for f in formset or []]
        return render(
            self.request,
            "providers/openapi_job.html",
            self._context(
                job.provider,
                job=job,
                choice=choice,
                matched=matched[:LISTED],
                # Drafted already: those; otherwise every match, to narrow by unchecking.
                preselected=set(job.chosen)
                if job.status == ImportStatus.READY and not (choice and choice.is_bound)
                else {op["key"] for op in matched},
                matched_count=len(matched),
                importable_count=sum(1 for op in matched if not op["problem"]),
                formset=formset,
                rows=rows,
                error=error,
            ),
        )

    def _save(self, job: OpenAPIImport) -> HttpResponse:
        formset = ImportedActionFormSet(self.request.POST)
        if not formset.is_valid() and formset.non_form_errors():
            messages.error(self.request, " ".join(str(e) for e in formset.non_form_errors()))
            return HttpResponseRedirect(job_url(job))
        if len(formset.forms) > max_operations():
            messages.error(self.request, "Too many operations in one import.")
            return HttpResponseRedirect(job_url(job))
        chosen = [f for f in formset.forms if f.is_valid() and f.cleaned_data.get("selected")]
        # A checkbox's bound data is a bool even when the rest of its form is invalid.
        if any(not f.is_valid() and f["selected"].data for f in formset.forms):
            return self._page(
                job, formset=formset, error="Nothing was saved. Fix the marked operations."
            )
        try:
            created = openapi_import_save(
                job=job, actor=self.request.user, actions=[f.import_fields() for f in chosen]
            )
        except ImportFailed as failed:
            form = chosen[failed.index]
            if hasattr(failed.error, "error_dict"):
                for field, errors in failed.error.error_dict.items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                form.add_error(None, failed.error)
            return self._page(
                job, formset=formset, error="Nothing was saved. Fix the marked operation."
            )
        except ValidationError as error:
            return self._page(job, formset=formset, error=" ".join(error.messages))
        messages.success(
            self.request,
            f"Imported {len(created)} action(s) into {job.provider.display_name} from "
            f"{job.title or 'the document'}.",
        )
        return HttpResponseRedirect(
            reverse(
                "providers:detail",
                kwargs={"org_slug": self.organization.slug, "key": job.provider.key},
            )
        )
