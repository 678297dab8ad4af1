"""The reviewers' filters: one form shared by the dashboard, the API and export jobs.

Filters live in the URL (GET), so a view can be bookmarked and shared; an
export job stores `AuditFilterForm.as_params()` and rebuilds the same form."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models import F, Q, QuerySet, TextField, Value
from django.db.models.fields.json import KT
from django.db.models.functions import Coalesce, Concat, NullIf
from django.utils import timezone

from apps.audit.models import AuditEvent, Decision, Outcome

FILTER_FIELDS = (
    "start",
    "end",
    "member",
    "worker",
    "token",
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


class AuditFilterForm(forms.Form):
    start = forms.DateTimeField(
        required=False,
        label="From (UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format=_LOCAL_INPUT),
    )
    end = forms.DateTimeField(
        required=False,
        label="To (UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format=_LOCAL_INPUT),
    )
    member = forms.CharField(
        required=False, max_length=254, label="Member", help_text="Email or user id."
    )
    worker = forms.IntegerField(required=False, min_value=1, label="Worker id")
    token = forms.CharField(required=False, max_length=32, label="Token id")
    action = forms.CharField(
        required=False,
        max_length=100,
        label="Action",
        help_text='Exact ("broker.execute") or a prefix ending in "." or "*" ("token.").',
    )
    call = forms.CharField(
        required=False,
        max_length=200,
        label="Tried",
        help_text='What the agent tried: a SaaS action ("sandbox.list_tasks") or '
        '"GET github (proxy)".',
    )
    decision = forms.ChoiceField(
        required=False,
        label="Decision",
        choices=[("", "Any"), (Decision.ALLOWED, "Allowed"), (Decision.DENIED, "Denied")],
    )
    connection = forms.IntegerField(required=False, min_value=1, label="Connection id")
    provider = forms.CharField(required=False, max_length=60, label="Provider")
    outcome = forms.ChoiceField(
        required=False, label="Outcome", choices=[("", "Any"), *Outcome.choices]
    )
    status = forms.CharField(
        required=False,
        max_length=3,
        label="Upstream status",
        help_text='A code ("404") or a class ("5xx").',
    )
    q = forms.CharField(
        required=False, max_length=200, label="Text", help_text="Searches target and reason."
    )

    def clean_status(self) -> str:
        value = self.cleaned_data["status"].strip()
        if value and not (
            _STATUS_CLASS.match(value) or (value.isdigit() and 100 <= int(value) <= 599)
        ):
            raise ValidationError("Enter an HTTP status such as 404, or a class such as 5xx.")
        return value.lower()

    def clean_action(self) -> str:
        value = self.cleaned_data["action"].strip()
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

    def as_params(self) -> dict[str, str]:
        """The non-empty filters as URL parameters (the shareable form of this view)."""
        if not self.is_bound:
            return {}
        return {
            name: str(self.data.get(name, "")).strip()
            for name in FILTER_FIELDS
            if str(self.data.get(name, "")).strip()
        }

    def filter(self, events: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        """Apply the (valid) filters; call only after is_valid()."""
        return apply_filters(events, self.cleaned_data)


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


def apply_filters(events: QuerySet[AuditEvent], data: Mapping[str, Any]) -> QuerySet[AuditEvent]:
    if data.get("start") or data.get("end"):
        events = _id_bounds(events, data.get("start"), data.get("end"))
    if data.get("start"):
        events = events.filter(created_at__gte=data["start"])
    if data.get("end"):
        events = events.filter(created_at__lte=data["end"])
    member = (data.get("member") or "").strip()
    if member:
        events = events.filter(actor_type="user", **_member_lookup(member))
    if data.get("worker"):
        events = events.filter(worker_id=data["worker"])
    if data.get("token"):
        events = events.filter(token_id=data["token"].strip())
    action = (data.get("action") or "").strip()
    if action.endswith("*"):
        events = events.filter(action__startswith=action.rstrip("*"))
    elif action.endswith("."):
        events = events.filter(action__startswith=action)
    elif action:
        events = events.filter(action=action)
    call = (data.get("call") or "").strip()
    if call:
        events = events.alias(tried=tried_expression()).filter(tried=call)
    if data.get("decision"):
        events = events.filter(decision=data["decision"])
    if data.get("connection"):
        events = events.filter(connection_id=data["connection"])
    if data.get("provider"):
        events = events.filter(provider=data["provider"].strip())
    if data.get("outcome"):
        events = events.filter(outcome=data["outcome"])
    status = data.get("status") or ""
    if status:
        match = _STATUS_CLASS.match(status)
        if match:
            low = int(match.group(1)) * 100
            events = events.filter(upstream_status__gte=low, upstream_status__lt=low + 100)
        else:
            events = events.filter(upstream_status=int(status))
    text = (data.get("q") or "").strip()
    if text:
        events = events.filter(Q(target_label__icontains=text) | Q(reason__icontains=text))
    return events


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


def chart_window(data: Mapping[str, Any]) -> tuple[Any, Any]:
    """The charts' bounded window: the filter's range, at most 31 days, default 7."""
    end = data.get("end") or timezone.now()
    start = data.get("start") or end - timedelta(days=7)
    if end - start > timedelta(days=31):
        start = end - timedelta(days=31)
    return start, end
