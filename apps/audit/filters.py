"""The reviewers' filters: one django-filter FilterSet shared by the dashboard,
the management API and export jobs.

Filters live in the URL (GET), so a view can be bookmarked and shared; an
export job stores `AuditFilterForm.as_params()` and rebuilds the same filter.
Given the organization, the worker, connection, provider and member filters
are pickers by name, and "Event" and "Tried" suggest values as you type. The
URL keeps accepting what it always did: `worker=7` and `connection=3` (ids),
`member=<email or user id>`; names work too (`worker=triage-bot`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import django_filters
from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models import F, Q, QuerySet, TextField, Value
from django.db.models.fields.json import KT
from django.db.models.functions import Coalesce, Concat, NullIf
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from apps.audit import actions as audit_actions
from apps.audit.models import AuditEvent, Decision, Outcome
from apps.core.ports import Port

FILTER_FIELDS = (
    "start",
    "end",
    "member",
    "on_behalf_of",
    "worker",
    "token",
    "role",
    "action",
    "call",
    "decision",
    "connection",
    "provider",
    "outcome",
    "status",
    "q",
)
# What <input type="datetime-local"> accepts back as its value.
_LOCAL_INPUT = "%Y-%m-%dT%H:%M"
_STATUS_CLASS = re.compile(r"^([1-5])xx$", re.IGNORECASE)
# Above this many workers or connections, the picker is a text box (name or id).
PICKER_MAX = 300
# Event types offered as suggestions ("token." matches every token event): the registry's.
EVENT_SUGGESTIONS = tuple(audit_actions.suggestions())


# Worker and connection names are theirs to resolve (apps above the trail): each plugs its
# answer in when it is ready (apps.core.ports). (name, organization or None) -> up to 50 ids.
IDS_NAMED: dict[str, Port[[str, Any], list[int]]] = {
    "worker": Port("worker_ids_named", answered_by="apps.workers.selectors.worker_ids_named"),
    "connection": Port(
        "connection_ids_named", answered_by="apps.connections.selectors.connection_ids_named"
    ),
    "role": Port("role_ids_named", answered_by="apps.policies.selectors.role_ids_named"),
}


class DatalistInput(forms.TextInput):
    """A text box with suggestions (<datalist>): any value is allowed, so old URLs work."""

    def __init__(self, options: list[tuple[str, str]], attrs: dict[str, Any] | None = None):
        super().__init__(attrs)
        self.options = options

    def render(self, name: str, value: Any, attrs: Any = None, renderer: Any = None) -> SafeString:
        list_id = f"{(attrs or {}).get('id', name)}-options"
        box = super().render(name, value, {**(attrs or {}), "list": list_id}, renderer)
        options = format_html_join(
            "", '<option value="{}">{}</option>', ((v, label) for v, label in self.options)
        )
        return format_html('{}<datalist id="{}">{}</datalist>', box, list_id, options)


def tried_expression() -> Any:
    """What an agent tried: the SaaS action of a broker event, "GET github (proxy)"
    for a proxied request, else the event's own action."""
    return Coalesce(
        NullIf(KT("metadata__action"), Value("")),
        Concat(
            KT("metadata__method"),
            Value(" "),
            F("provider"),
            Value(" (proxy)"),
            output_field=TextField(),
        ),
        F("action"),
        output_field=TextField(),
    )


class _AuditFilterFormBase(forms.Form):
    """Checks across fields; django-filter adds the fields themselves."""

    organization: Any = None  # set by AuditEventFilter: names are checked against it

    def _named(self, field: str) -> str:
        value = (self.cleaned_data.get(field) or "").strip()
        if not value or value.isdigit() or self.organization is None:
            return value
        if not IDS_NAMED[field](value, self.organization):
            raise ValidationError(f"No {field} named “{value}” in this organization.")
        return value

    def clean_worker(self) -> str:
        return self._named("worker")

    def clean_connection(self) -> str:
        return self._named("connection")

    def clean_status(self) -> str:
        value = (self.cleaned_data.get("status") or "").strip()
        if value and not (
            _STATUS_CLASS.match(value) or (value.isdigit() and 100 <= int(value) <= 599)
        ):
            raise ValidationError("Enter an HTTP status such as 404, or a class such as 5xx.")
        return value.lower()

    def clean_action(self) -> str:
        value = (self.cleaned_data.get("action") or "").strip()
        if value.rstrip("*") == "" and value:
            raise ValidationError("Enter at least one character before the *.")
        return value

    def clean(self) -> dict[str, Any]:
        # With USE_TZ and TIME_ZONE="UTC" the fields already return aware UTC times.
        data = super().clean() or {}
        start, end = data.get("start"), data.get("end")
        if start and end and start > end:
            raise ValidationError("“From” must be before “To”.")
        return data


def _datetime_filter(label: str) -> django_filters.DateTimeFilter:
    # The range is applied once, in AuditEventFilter.filter_queryset.
    return django_filters.DateTimeFilter(
        method="filter_nothing",
        label=label,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format=_LOCAL_INPUT),
    )


class AuditEventFilter(django_filters.FilterSet):
    start = _datetime_filter("From (UTC)")
    end = _datetime_filter("To (UTC)")
    member = django_filters.CharFilter(
        method="filter_member", label="Member", max_length=254, help_text="Email or user id."
    )
    on_behalf_of = django_filters.CharFilter(
        method="filter_on_behalf_of",
        label="On behalf of",
        max_length=254,
        help_text="Email or user id: what workers did acting for this member.",
    )
    worker = django_filters.CharFilter(
        method="filter_worker", label="Worker", max_length=60, help_text="Name or id."
    )
    token = django_filters.CharFilter(
        field_name="token_id", label="Token id", max_length=32, help_text="e.g. tok_ab12…"
    )
    role = django_filters.CharFilter(
        method="filter_role",
        label="Role",
        max_length=100,
        help_text="Name or id: the calls made under this role.",
    )
    action = django_filters.CharFilter(
        method="filter_action",
        label="Event",
        max_length=100,
        help_text='Exact ("broker.execute") or a prefix ending in "." or "*" ("token.").',
    )
    call = django_filters.CharFilter(
        method="filter_call",
        label="Tried",
        max_length=200,
        help_text='What the agent tried: a SaaS action ("sandbox.list_tasks") or '
        '"GET github (proxy)".',
    )
    decision = django_filters.ChoiceFilter(
        label="Decision",
        empty_label="Any",
        choices=[c for c in Decision.choices if c[0]],
    )
    connection = django_filters.CharFilter(
        method="filter_connection", label="Connection", max_length=60, help_text="Name or id."
    )
    provider = django_filters.CharFilter(field_name="provider", label="Provider", max_length=60)
    outcome = django_filters.ChoiceFilter(
        label="Outcome", empty_label="Any", choices=Outcome.choices
    )
    status = django_filters.CharFilter(
        method="filter_status",
        label="Upstream status",
        max_length=3,
        help_text='A code ("404") or a class ("5xx").',
    )
    q = django_filters.CharFilter(
        method="filter_text", label="Text", max_length=200, help_text="Searches target and reason."
    )

    class Meta:
        model = AuditEvent
        fields: tuple[str, ...] = ()
        form = _AuditFilterFormBase

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        queryset: QuerySet[AuditEvent] | None = None,
        *,
        organization: Any = None,
        **kwargs: Any,
    ) -> None:
        if queryset is None:
            queryset = AuditEvent.objects.none()
        super().__init__(data, queryset, **kwargs)
        self.organization = organization
        self.form.organization = organization

    # --- pickers (the reviewer pages offer them: apps.review.pickers) --------

    def offer_choices(
        self,
        name: str,
        choices: list[tuple[str, str]],
        empty: str = "Any",
        aliases: dict[str, str] | None = None,
    ) -> None:
        """A <select> of `choices`; a value from an older URL that is not among
        them stays selectable, so applying the form again keeps it."""
        field = self.form.fields[name]
        current = str(self.form.data.get(name, "") or "").strip() if self.is_bound else ""
        values = {value for value, _ in choices}
        if current and current not in values:
            # A name where the picker has ids (?worker=triage-bot, from a link or an
            # older URL): select that option instead of listing the name a second time.
            named = (aliases or {}).get(current) or next(
                (value for value, label in choices if label == current), None
            )
            if named is not None:
                data = self.form.data.copy()
                data[name] = named
                self.form.data = data
            else:
                choices = [*choices, (current, current)]
        field.widget = forms.Select(choices=[("", empty), *choices])

    # --- filters ------------------------------------------------------------

    def filter_queryset(self, queryset: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        data = self.form.cleaned_data
        start, end = data.get("start"), data.get("end")
        if start or end:
            queryset = _id_bounds(queryset, start, end)
        if start:
            queryset = queryset.filter(created_at__gte=start)
        if end:
            queryset = queryset.filter(created_at__lte=end)
        return super().filter_queryset(queryset)

    def filter_nothing(self, queryset: QuerySet[AuditEvent], _name: str, _value: Any) -> Any:
        return queryset

    def filter_member(self, queryset: QuerySet[AuditEvent], _name: str, value: str) -> Any:
        return queryset.filter(actor_type="user", **_member_lookup(value.strip()))

    def filter_on_behalf_of(self, queryset: QuerySet[AuditEvent], _name: str, value: str) -> Any:
        return queryset.filter(**_on_behalf_of_lookup(value.strip()))

    def filter_worker(self, queryset: QuerySet[AuditEvent], _name: str, value: str) -> Any:
        return queryset.filter(worker_id__in=self._ids("worker", value))

    def filter_role(self, queryset: QuerySet[AuditEvent], _name: str, value: str) -> Any:
        # The broker records the role of every call as metadata.role_id.
        return queryset.filter(metadata__role_id__in=self._ids("role", value))

    def filter_connection(self, queryset: QuerySet[AuditEvent], _name: str, value: str) -> Any:
        return queryset.filter(connection_id__in=self._ids("connection", value))

    def _ids(self, field: str, value: str) -> list[int]:
        """An id as given, or the ids of what has that name. Events are scoped to
        one organization already; the name lookup is too when the filter knows it."""
        value = value.strip()
        if value.isdigit():
            return [int(value)]
        return IDS_NAMED[field](value, self.organization)

    def filter_action(self, queryset: QuerySet[AuditEvent], _name: str, value: str) -> Any:
        if value.endswith("*"):
            return queryset.filter(action__startswith=value.rstrip("*"))
        if value.endswith("."):
            return queryset.filter(action__startswith=value)
        return queryset.filter(action=value)

    def filter_call(self, queryset: QuerySet[AuditEvent], _name: str, value: str) -> Any:
        return queryset.alias(tried=tried_expression()).filter(tried=value.strip())

    def filter_status(self, queryset: QuerySet[AuditEvent], _name: str, value: str) -> Any:
        match = _STATUS_CLASS.match(value)
        if match:
            low = int(match.group(1)) * 100
            return queryset.filter(upstream_status__gte=low, upstream_status__lt=low + 100)
        return queryset.filter(upstream_status=int(value))

    def filter_text(self, queryset: QuerySet[AuditEvent], _name: str, value: str) -> Any:
        text = value.strip()
        return queryset.filter(Q(target_label__icontains=text) | Q(reason__icontains=text))


class AuditFilterForm:
    """The filter as views, the API and export jobs use it: validate, apply, share.

    A thin face on AuditEventFilter so every caller says the same three things:
    `is_valid()`, `filter(events)` and `as_params()`."""

    def __init__(self, data: Mapping[str, Any] | None = None, *, organization: Any = None):
        self.data = data if data is not None else {}
        self.filterset = AuditEventFilter(data=self.data, organization=organization)
        self.form = self.filterset.form

    def is_valid(self) -> bool:
        return self.filterset.is_valid()

    @property
    def errors(self) -> Any:
        return self.form.errors

    @property
    def cleaned_data(self) -> dict[str, Any]:
        return self.form.cleaned_data

    def as_params(self) -> dict[str, str]:
        """The non-empty filters as URL parameters (the shareable form of this view)."""
        return {
            name: str(self.data.get(name, "")).strip()
            for name in FILTER_FIELDS
            if str(self.data.get(name, "") or "").strip()
        }

    def filter(self, events: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        """Apply the (valid) filters; call only after is_valid()."""
        return self.filterset.filter_queryset(events)


# Within one organization, ids and created_at rise together (audit_record sets
# both while holding the chain's row lock), up to the app servers' clock skew.
CLOCK_SKEW_MARGIN = timedelta(hours=1)


def _id_bounds(events: QuerySet[AuditEvent], start: Any, end: Any) -> QuerySet[AuditEvent]:
    """Turn a time range into an id range as well, so pages walk the (org, -id)
    index from the right place instead of filtering every newer row.

    If skew never exceeds the margin, an event created after `end + margin`
    has a larger id than every event created up to `end` (and symmetrically
    for `start`), so these bounds drop nothing the created_at filters keep."""
    by_time = events.order_by()
    if end is not None:
        after = (
            by_time.filter(created_at__gt=end + CLOCK_SKEW_MARGIN)
            .order_by("created_at")
            .values_list("id", flat=True)
            .first()
        )
        if after is not None:
            events = events.filter(id__lt=after)
    if start is not None:
        before = (
            by_time.filter(created_at__lt=start - CLOCK_SKEW_MARGIN)
            .order_by("-created_at")
            .values_list("id", flat=True)
            .first()
        )
        if before is not None:
            events = events.filter(id__gt=before)
    return events


def _member_lookup(member: str) -> dict[str, Any]:
    """By user id (indexed: audit_org_user_id). An email names the account's id;
    an account that no longer exists is matched by the label its events kept."""
    if member.isdigit():
        return {"actor_id": member}
    ids = [
        str(pk)
        for pk in get_user_model()
        .objects.filter(email__iexact=member)
        .values_list("pk", flat=True)[:5]
    ]
    return {"actor_id__in": ids} if ids else {"actor_label__iexact": member}


def _on_behalf_of_lookup(member: str) -> dict[str, Any]:
    """By user id (indexed: audit_org_on_behalf_of_id); an email names the account's id,
    and an account that no longer exists is matched by the email its events kept."""
    if member.isdigit():
        return {"on_behalf_of_id": int(member)}
    ids = list(
        get_user_model().objects.filter(email__iexact=member).values_list("pk", flat=True)[:5]
    )
    if ids:
        return {"on_behalf_of_id__in": ids}
    return {"on_behalf_of_id__isnull": False, "on_behalf_of_label__iexact": member}


def chart_window(data: Mapping[str, Any]) -> tuple[Any, Any]:
    """The charts' bounded window: the filter's range, at most 31 days, default 7."""
    end = data.get("end") or timezone.now()
    start = data.get("start") or end - timedelta(days=7)
    if end - start > timedelta(days=31):
        start = end - timedelta(days=31)
    return start, end
