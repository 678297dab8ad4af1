"""Reviewer pages: browse with filters, event detail, charts, exports."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db.models import QuerySet
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponseBase,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.views import View
from django.views.generic import DetailView, TemplateView

from apps.audit import exports
from apps.audit.filters import AuditFilterForm, chart_window
from apps.audit.models import (
    AuditEvent,
    AuditExport,
    AuditSink,
    ExportFormat,
    ExportStatus,
    SinkFormat,
    SinkKind,
)
from apps.audit.proof import ProofFilterError, chain_heads, check_proof_filter
from apps.audit.selectors import call_counts, chain_head, keyset_page, with_actor_names
from apps.audit.services import (
    audit_export_direct,
    audit_export_request,
    audit_sink_create,
    audit_sink_delete,
    audit_sink_lag,
    audit_sink_retry,
    audit_sink_send_test,
    audit_verify_export,
    audit_verify_trail,
    export_is_large,
)
from apps.audit.signing import public_key_by_id, public_key_document, public_key_row
from apps.core.confirm import Confirmation, confirmation_page, is_confirmed
from apps.organizations.models import OrgRole
from apps.organizations.tenancy import OrgViewMixin
from apps.review.charts import chart_data, fit_window
from apps.review.links import event_links
from apps.review.pickers import offer_pickers


def _shown(value: Any) -> Any:
    """Exact values for reviewers: full ISO 8601 UTC timestamps, not a locale format."""
    return value.isoformat() if isinstance(value, datetime) else value


def _int_param(request: HttpRequest, name: str) -> int | None:
    value = request.GET.get(name, "").strip()
    return int(value) if value.isdigit() else None


class AuditMixin(OrgViewMixin):
    """Reviewers, admins and owners read the trail; members do not."""

    required_role = OrgRole.REVIEWER
    model = AuditEvent
    request: HttpRequest

    def filter_form(self) -> AuditFilterForm:
        if not hasattr(self, "_form"):
            self._form = AuditFilterForm(data=self.request.GET, organization=self.organization)
            offer_pickers(self._form.filterset, self.organization)
        return self._form

    def filtered(self) -> QuerySet[AuditEvent] | None:
        """The events of the current filter, or None when the filter is invalid."""
        form = self.filter_form()
        if not form.is_valid():
            return None
        return form.filter(self.scope_queryset())

    def filter_context(self) -> dict[str, Any]:
        form = self.filter_form()
        params = form.as_params()
        return {
            "form": form.form,
            "filter_params": params,
            "filter_query": urlencode(params),
            "time_presets": time_presets(params),
            "active_filters": [
                (form.form.fields[name].label, _choice_label(form.form.fields[name], value))
                for name, value in params.items()
                if name not in ("start", "end")
            ],
        }


def _choice_label(field: Any, value: str) -> str:
    """What a picker shows for `value` (a worker's name for its id), else the value."""
    for choice, label in getattr(field.widget, "choices", ()):
        if str(choice) == value:
            return str(label)
    return value


def time_presets(params: dict[str, str]) -> list[dict[str, Any]]:
    """Last hour, today, yesterday, 7 days (UTC), each keeping the other filters: the
    query string of each, and whether it is the current window."""
    now = timezone.now().replace(second=0, microsecond=0)
    midnight = now.replace(hour=0, minute=0)
    windows = (
        ("Last hour", now - timedelta(hours=1), None),
        ("Today", midnight, None),
        ("Yesterday", midnight - timedelta(days=1), midnight),
        ("Last 7 days", now - timedelta(days=7), None),
    )
    presets = []
    for label, start, end in windows:
        window = {"start": start.strftime("%Y-%m-%dT%H:%M")}
        if end is not None:
            window["end"] = end.strftime("%Y-%m-%dT%H:%M")
        rest = {k: v for k, v in params.items() if k not in ("start", "end")}
        presets.append(
            {
                "label": label,
                "query": urlencode({**rest, **window}),
                "active": params.get("start") == window["start"]
                and params.get("end", "") == window.get("end", ""),
            }
        )
    return presets


# The list page counts at most this many calls of its window (the newest), so a week
# of a busy organization still renders within the browse goal (docs/audit-scale.md);
# the charts page counts the whole window.
COUNTED_CALLS = 1_000


class AuditListView(AuditMixin, TemplateView):
    template_name = "audit/list.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(self.filter_context())
        events = self.filtered()
        before, after = _int_param(self.request, "before"), _int_param(self.request, "after")
        context["page"] = (
            keyset_page(events, before=before, after=after) if events is not None else None
        )
        if context["page"] is not None:
            with_actor_names(context["page"].events)
        if events is not None and context["filter_params"].get("start"):
            # Within a time window (bounded, so the count stays cheap): the calls counted
            # as every page counts them, with a link to the denied ones.
            context["counts"] = counts = call_counts(events, newest=COUNTED_CALLS)
            context["counts_capped"] = counts["calls"] >= COUNTED_CALLS
            context["denied_query"] = urlencode({**context["filter_params"], "decision": "denied"})
        context["head"] = head = chain_head(self.organization)
        # A sharded trail: the other chains' heads are checkpoints too.
        context["shard_heads"] = [
            h for h in chain_heads(self.organization) if h.chain_key != head.chain_key
        ]
        # One reverse() for the page instead of one per row.
        context["events_url"] = reverse("audit:list", kwargs={"org_slug": self.organization.slug})
        context["detail_query"] = f"?{context['filter_query']}" if context["filter_query"] else ""
        context["exports"] = self.tenant_rows(AuditExport)[:5]
        context["formats"] = ExportFormat.choices
        return context


class AuditEventDetailView(AuditMixin, DetailView):
    template_name = "audit/detail.html"
    context_object_name = "event"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        event: AuditEvent = self.object
        context["links"] = event_links(event, self.organization)
        context["fields"] = [
            (field.verbose_name.capitalize(), _shown(getattr(event, field.attname)))
            for field in AuditEvent._meta.concrete_fields
            if field.name not in ("metadata", "organization")
        ]
        context["metadata_json"] = json.dumps(
            event.metadata, indent=2, sort_keys=True, ensure_ascii=False
        )
        context["back_query"] = self.request.GET.urlencode()
        return context


class AuditChartsView(AuditMixin, TemplateView):
    template_name = "audit/charts.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(self.filter_context())
        events = self.filtered()
        if events is not None:
            data = self.filter_form().cleaned_data
            start, end = fit_window(events, *chart_window(data), start_given=bool(data["start"]))
            params = {
                k: v for k, v in context["filter_params"].items() if k not in ("start", "end")
            }
            context["charts"] = chart_data(
                events,
                start,
                end,
                organization_id=self.organization.pk,
                list_url=reverse("audit:list", kwargs={"org_slug": self.organization.slug}),
                filter_params=params,
            )
        return context


class AuditExportView(AuditMixin, View):
    """POST with the filter in the query string: stream it, or queue a job when large."""

    http_method_names = ("post",)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        fmt = request.POST.get("format", "")
        if fmt not in ExportFormat.values:
            messages.error(request, "Choose CSV or JSON Lines.")
            return redirect(self._list_url())
        events = self.filtered()
        if events is None:
            messages.error(request, "Fix the filter before exporting.")
            return redirect(self._list_url())
        params = self.filter_form().as_params()
        user = request.user
        proof = request.POST.get("proof") == "1"
        if proof:
            try:
                check_proof_filter(params)
            except ProofFilterError as exc:
                messages.error(request, str(exc))
                return redirect(self._list_url())
        if export_is_large(events):
            export = audit_export_request(
                organization=self.organization,
                actor=user,
                params=params,
                fmt=fmt,
                proof=proof,
            )
            messages.info(request, "This export is large; it is being prepared.")
            return redirect("audit:export_detail", org_slug=self.organization.slug, pk=export.pk)
        stream = audit_export_direct(
            organization=self.organization,
            actor=user,
            events=events,
            params=params,
            fmt=fmt,
            proof=proof,
            start=self.filter_form().cleaned_data.get("start"),
            end=self.filter_form().cleaned_data.get("end"),
        )
        suffix = "-proof" if proof else ""
        return streaming_export(stream, fmt, exports.filename(self.organization, fmt, suffix))

    def _list_url(self) -> str:
        query = self.request.GET.urlencode()
        url = reverse("audit:list", kwargs={"org_slug": self.organization.slug})
        return f"{url}?{query}" if query else url


def streaming_export(stream: Any, fmt: str, name: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(stream, content_type=exports.CONTENT_TYPES[fmt])
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


class AuditExportDetailView(AuditMixin, DetailView):
    """Progress of an export job; htmx polls the fragment, without JS reload the page."""

    template_name = "audit/export_detail.html"
    context_object_name = "export"

    def scope_queryset(self) -> QuerySet[AuditExport]:
        return self.tenant_rows(AuditExport)

    def get_template_names(self) -> list[str]:
        if getattr(self.request, "htmx", False):
            return ["audit/_export_progress.html"]
        return [self.template_name]

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        export: AuditExport = self.object
        context["running"] = export.status in (ExportStatus.PENDING, ExportStatus.RUNNING)
        context["filter_query"] = urlencode(export.filter)
        return context


class AuditExportDownloadView(AuditMixin, View):
    def get(self, _request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        export = self.tenant_rows(AuditExport).filter(pk=kwargs["pk"]).first()
        if export is None:
            raise Http404("No such export.")
        if not export.is_downloadable() or (
            export.expires_at and export.expires_at <= timezone.now()
        ):
            raise Http404("This export is not available (still running or expired).")
        stamp = export.created_at.strftime("%Y%m%d-%H%M%S")
        return FileResponse(
            default_storage.open(export.file_path, "rb"),
            as_attachment=True,
            filename=exports.filename(self.organization, export.format, f"-{stamp}"),
            content_type=exports.CONTENT_TYPES[export.format],
        )


class AuditVerifyView(AuditMixin, TemplateView):
    """Verify the live trail, or an export with proof uploaded by a reviewer."""

    template_name = "audit/verify.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["signing_key"] = public_key_row(self.organization)
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        upload = request.FILES.get("file")
        context: dict[str, Any] = {}
        if upload is not None:
            context["file_report"] = audit_verify_export(
                organization=self.organization, actor=request.user, chunks=upload.chunks()
            )
            context["file_name"] = upload.name
        elif request.POST.get("trail") == "1":
            context["trail_reports"] = audit_verify_trail(
                organization=self.organization, actor=request.user
            )
        else:
            messages.error(request, "Choose an export file, or verify the trail.")
            return redirect("audit:verify", org_slug=self.organization.slug)
        return self.render_to_response(self.get_context_data(**context))


def audit_public_key(_request: HttpRequest, key_id: str) -> JsonResponse:
    """/.well-known/grantry-audit-keys/<key_id>: a signing key's public half, for anyone
    checking a checkpoint. Looked up by key id (from a checkpoint), never by slug,
    so the URL does not reveal which organizations exist."""
    key = public_key_by_id(key_id)
    if key is None:
        raise Http404("No such key.")
    response = JsonResponse(public_key_document(key))
    response["Access-Control-Allow-Origin"] = "*"
    response["Cache-Control"] = "public, max-age=3600"
    return response


class AuditSinkMixin(OrgViewMixin):
    """SIEM sinks: admins and owners (a sink decides where the trail goes)."""

    required_role = OrgRole.ADMIN
    model = AuditSink

    def scope_queryset(self) -> QuerySet[AuditSink]:
        return self.tenant_rows(AuditSink)


class AuditSinkListView(AuditSinkMixin, TemplateView):
    template_name = "audit/sinks.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        sinks = list(self.scope_queryset().select_related("organization"))
        context["sinks"] = [(sink, audit_sink_lag(sink)) for sink in sinks]
        context.setdefault("values", {"kind": "webhook", "format": "jsonl", "port": "6514"})
        context["kinds"], context["formats"] = SinkKind.choices, SinkFormat.choices
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        fields = ("name", "kind", "format", "url", "host", "port", "ca_pem", "start")
        values = {name: request.POST.get(name, "").strip() for name in fields}
        port = values["port"]
        try:
            sink = audit_sink_create(
                organization=self.organization,
                name=values["name"],
                kind=values["kind"],
                format=values["format"] or "jsonl",
                url=values["url"],
                host=values["host"],
                port=int(port) if port.isdigit() and len(port) < 6 else None,
                ca_pem=values["ca_pem"],
                secret=request.POST.get("secret", ""),
                start=values["start"] or "now",
                actor=request.user,
            )
        except ValidationError as exc:
            context = self.get_context_data(values=values, errors=exc.message_dict)
            return self.render_to_response(context, status=400)
        messages.success(request, f"Sink “{sink.name}” created; delivery starts within seconds.")
        return redirect("audit:sink", org_slug=self.organization.slug, pk=sink.pk)


class AuditSinkDetailView(AuditSinkMixin, DetailView):
    """Lag, last success, last error; send a test event, resume, delete."""

    template_name = "audit/sink_detail.html"
    context_object_name = "sink"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["lag"] = audit_sink_lag(self.object)
        return context

    def delete_confirmation(self, sink: AuditSink) -> Confirmation:
        lag = audit_sink_lag(sink)
        stops = [f"Events stop streaming to {sink.destination}."]
        if lag:
            stops.append(f"{lag} event{'' if lag == 1 else 's'} not delivered yet are never sent.")
        stops.append("What the SIEM already received stays there.")
        return Confirmation(
            title=f"Delete sink “{sink.name}”?",
            stops=stops,
            button="Delete sink",
            cancel_url=reverse(
                "audit:sink", kwargs={"org_slug": self.organization.slug, "pk": sink.pk}
            ),
        )

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        sink = self.object = self.get_object()
        action = request.POST.get("action")
        if action == "test":
            error = audit_sink_send_test(sink=sink, actor=request.user)
            if error:
                messages.error(request, f"The test event was not delivered: {error}")
            else:
                messages.success(request, "The test event was delivered.")
        elif action == "retry":
            audit_sink_retry(sink=sink, actor=request.user)
            messages.success(request, "Delivery resumes from where it stopped.")
        elif action == "delete":
            if not is_confirmed(request):
                return confirmation_page(
                    request, self.delete_confirmation(sink), self.get_context_data()
                )
            audit_sink_delete(sink=sink, actor=request.user)
            messages.success(request, "Sink deleted.")
            return redirect("audit:sinks", org_slug=self.organization.slug)
        return redirect("audit:sink", org_slug=self.organization.slug, pk=sink.pk)
