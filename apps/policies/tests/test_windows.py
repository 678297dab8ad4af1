"""Time windows and per-worker quotas of rules: evaluation, reasons, validation, the
shared-cache counter, and Hypothesis properties next to test_evaluate_properties."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.test import Client
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.organizations.models import Organization
from apps.policies.evaluate import Call, RuleSpec, evaluate, rule_spec_from_values
from apps.policies.ratelimit import quota_check
from apps.policies.validation import clean_rules
from apps.policies.windows import DAY_NAMES, Quota, schedule_from

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = {"days": "weekdays", "start": "09:00", "end": "18:00", "timezone": "Europe/Berlin"}


def office_rule(**extra: Any) -> RuleSpec:
    return rule_spec_from_values(
        rule_id=7,
        kind="action",
        provider_key="sandbox",
        action_pattern="sandbox.*",
        schedule=extra.pop("schedule", OFFICE),
        **extra,
    )


def call_at(at: Any, action: str = "sandbox.create_task") -> Call:
    return Call(
        kind="action",
        provider_key="sandbox",
        connection_id=1,
        action_name=action,
        action_class="write",
        input={},
        at=at,
    )


def test_inside_the_window_the_rule_allows() -> None:
    decision = evaluate([office_rule()], call_at(datetime(2026, 12, 2, 9, 0, tzinfo=BERLIN)))
    assert decision.allowed
    assert decision.rule_id == 7
    assert "only weekdays 09:00–18:00 Europe/Berlin" in decision.reason


@pytest.mark.parametrize(
    ("at", "reopens"),
    [
        # Wednesday 18:00 Berlin (end is exclusive) -> Thursday 09:00.
        (datetime(2026, 12, 2, 18, 0, tzinfo=BERLIN), "Thu 2026-12-03 09:00 CET (in 15 h)"),
        # Saturday noon -> Monday 09:00.
        (datetime(2026, 12, 5, 12, 0, tzinfo=BERLIN), "Mon 2026-12-07 09:00 CET (in 1 d 21 h)"),
        # 07:30 UTC on a Wednesday is 08:30 in Berlin: half an hour early.
        (datetime(2026, 12, 2, 7, 30, tzinfo=UTC), "Wed 2026-12-02 09:00 CET (in 30 min)"),
    ],
)
def test_outside_the_window_the_reason_says_when_it_reopens(at: Any, reopens: str) -> None:
    decision = evaluate([office_rule()], call_at(at))
    assert not decision.allowed
    assert "under rule #7 only weekdays 09:00–18:00 Europe/Berlin" in decision.reason
    assert f"it reopens at {reopens}" in decision.reason


def test_another_rule_without_a_window_still_allows() -> None:
    always = rule_spec_from_values(
        rule_id=8, kind="action", provider_key="sandbox", action_pattern="sandbox.create_task"
    )
    at = datetime(2026, 12, 5, 12, 0, tzinfo=BERLIN)
    assert evaluate([office_rule(), always], call_at(at)).rule_id == 8


def test_windows_over_midnight_and_dst() -> None:
    night = schedule_from({"days": ["fri"], "start": "22:00", "end": "06:00", "timezone": "UTC"})
    assert night.is_open(datetime(2026, 12, 4, 23, 0, tzinfo=UTC))  # Friday night
    assert night.is_open(datetime(2026, 12, 5, 5, 59, tzinfo=UTC))  # Saturday morning
    assert not night.is_open(datetime(2026, 12, 5, 22, 0, tzinfo=UTC))  # Saturday night
    assert not night.is_open(datetime(2026, 12, 4, 5, 0, tzinfo=UTC))  # Friday morning
    # Berlin summer time: 09:00 local is 07:00 UTC.
    office = schedule_from(OFFICE)
    assert office.is_open(datetime(2026, 7, 1, 7, 0, tzinfo=UTC))
    assert not office.is_open(datetime(2026, 7, 1, 6, 59, tzinfo=UTC))


def test_proxy_rules_have_windows_too() -> None:
    rule = rule_spec_from_values(
        rule_id=3,
        kind="proxy",
        provider_key="github",
        connection_id=1,
        methods=["GET"],
        path_glob="/repos/**",
        schedule={"days": ["mon"], "start": "00:00", "end": "24:00", "timezone": "UTC"},
    )
    monday = Call.for_proxy(provider_key="github", method="GET", path="/repos/a", connection_id=1)
    assert evaluate(
        [rule], Call(**{**monday.__dict__, "at": datetime(2026, 12, 7, tzinfo=UTC)})
    ).allowed
    tuesday = evaluate([rule], Call(**{**monday.__dict__, "at": datetime(2026, 12, 8, tzinfo=UTC)}))
    assert not tuesday.allowed
    assert "reopens at Mon 2026-12-14 00:00 UTC" in tuesday.reason


def test_a_rule_with_a_broken_stored_schedule_allows_nothing() -> None:
    rule = office_rule(schedule={"days": "weekdays", "start": "9am", "timezone": "Mars/Base"})
    decision = evaluate([rule], call_at(datetime(2026, 12, 2, 10, 0, tzinfo=BERLIN)))
    assert not decision.allowed
    assert "invalid" in decision.reason


def test_the_allowing_rules_quota_is_in_the_decision() -> None:
    rule = office_rule(schedule=None, quota={"limit": 20, "per": "day"})
    decision = evaluate([rule], call_at(datetime(2026, 12, 2, 10, 0, tzinfo=BERLIN)))
    assert decision.allowed
    assert decision.quota == Quota(limit=20, per="day")
    assert "at most 20 calls per day per worker" in decision.reason


def test_quota_counts_per_worker_and_rule_in_the_shared_cache() -> None:
    rule_id = uuid.uuid4().int % 10**9
    now = datetime(2026, 12, 2, 23, 0, tzinfo=UTC).timestamp()
    quota = Quota(limit=3, per="day")
    got = [quota_check(rule_id=rule_id, worker_id=1, quota=quota, now=now) for _ in range(4)]
    assert got[:3] == [None, None, None]
    refused = got[3]
    assert refused.retry_after == 3600
    assert "at most 3 calls per day per worker" in refused.reason
    assert "reopens at 2026-12-03 00:00 UTC (retry after 3600 s)" in refused.reason
    # Another worker, another rule and the next day have their own buckets.
    assert quota_check(rule_id=rule_id, worker_id=2, quota=quota, now=now) is None
    assert quota_check(rule_id=rule_id + 1, worker_id=1, quota=quota, now=now) is None
    assert quota_check(rule_id=rule_id, worker_id=1, quota=quota, now=now + 3600) is None


@pytest.mark.django_db
def test_validation_normalises_and_explains(org: Organization) -> None:
    [rule] = clean_rules(
        organization=org,
        rules=[
            {
                "provider_key": "sandbox",
                "action_pattern": "sandbox.*",
                "schedule": {**OFFICE, "days": ["Monday", "tue"]},
                "quota": {"limit": 20, "per": "day"},
            }
        ],
    )
    assert rule["schedule"] == {
        "days": ["mon", "tue"],
        "start": "09:00",
        "end": "18:00",
        "timezone": "Europe/Berlin",
    }
    assert rule["quota"] == {"limit": 20, "per": "day"}
    bad: list[tuple[dict[str, Any], str, str]] = [
        ({"schedule": {**OFFICE, "timezone": "Europe/Atlantis"}}, "schedule", "Unknown time zone"),
        ({"schedule": {**OFFICE, "start": "25:00"}}, "schedule", "not a time of day"),
        ({"schedule": {**OFFICE, "end": "09:00"}}, "schedule", "empty"),
        ({"schedule": {**OFFICE, "days": []}}, "schedule", "at least one day"),
        ({"quota": {"limit": 0, "per": "day"}}, "quota", "whole number"),
        ({"quota": {"limit": 5, "per": "week"}}, "quota", "'minute', 'hour' or 'day'"),
        ({"quota": {"limit": True, "per": "day"}}, "quota", "whole number"),
    ]
    for extra, key, message in bad:
        with pytest.raises(ValidationError) as info:
            clean_rules(
                organization=org,
                rules=[{"provider_key": "sandbox", "action_pattern": "sandbox.*", **extra}],
            )
        assert message in " ".join(info.value.message_dict[f"rules.0.{key}"]), extra


# --- Hypothesis properties ------------------------------------------------------------

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Sydney"]
# Window starts outside 01:00-04:00, where DST moves some wall-clock times.
START_MINUTES = st.integers(0, 59) | st.integers(240, 1439)


@st.composite
def schedules(draw: Any) -> Any:
    days = draw(st.lists(st.sampled_from(DAY_NAMES), min_size=1, max_size=7, unique=True))
    start = draw(START_MINUTES)
    end = draw(st.integers(0, 1440).filter(lambda e: e % 1440 != start or e == 1440))
    return {
        "days": days,
        "start": f"{start // 60:02d}:{start % 60:02d}",
        "end": f"{end // 60:02d}:{end % 60:02d}",
        "timezone": draw(st.sampled_from(ZONES)),
    }


instants = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
)


def _oracle_open(doc: Any, at: Any) -> Any:
    """Naive restatement: the local minute lies in a window that began on an allowed day."""
    local = at.astimezone(ZoneInfo(doc["timezone"]))
    h, m = map(int, doc["start"].split(":"))
    start = h * 60 + m
    h, m = map(int, doc["end"].split(":"))
    end = h * 60 + m
    minute = local.hour * 60 + local.minute
    day = DAY_NAMES[local.weekday()]
    before = DAY_NAMES[(local.weekday() - 1) % 7]
    if end > start:
        return day in doc["days"] and start <= minute < end
    return (day in doc["days"] and minute >= start) or (before in doc["days"] and minute < end)


@settings(max_examples=400, deadline=None)
@given(schedules(), instants)
def test_a_window_is_open_exactly_when_the_oracle_says(doc: Any, at: Any) -> None:
    assert schedule_from(doc).is_open(at) is _oracle_open(doc, at)


@settings(max_examples=300, deadline=None)
@given(schedules(), instants)
def test_a_closed_window_reopens_within_a_week_and_is_open_then(doc: Any, at: Any) -> None:
    schedule = schedule_from(doc)
    opening = schedule.next_open(at)
    assert at < opening <= at + timedelta(days=8)
    assert schedule.is_open(opening)


@settings(max_examples=300, deadline=None)
@given(schedules(), instants, st.booleans())
def test_a_window_only_narrows_a_rule(doc: Any, at: Any, with_quota: Any) -> None:
    plain = office_rule(schedule=None)
    windowed = office_rule(schedule=doc, quota={"limit": 5, "per": "hour"} if with_quota else None)
    call = call_at(at)
    assert evaluate([plain], call).allowed
    narrowed = evaluate([windowed], call)
    assert narrowed.allowed is schedule_from(doc).is_open(at)
    if not narrowed.allowed:
        assert "reopens at" in narrowed.reason
    # Adding the windowed rule to a role never removes what the plain rule allowed.
    assert evaluate([windowed, plain], call).allowed


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.sampled_from(["minute", "hour", "day"]), st.integers(0, 10**6))
def test_a_quota_admits_exactly_its_limit_per_window(limit: Any, per: Any, offset: Any) -> None:
    rule_id = uuid.uuid4().int % 10**12
    quota = Quota(limit=limit, per=per)
    now = 1_800_000_000 + offset
    results = [
        quota_check(rule_id=rule_id, worker_id=9, quota=quota, now=now) for _ in range(limit + 2)
    ]
    assert results[:limit] == [None] * limit
    for refused in results[limit:]:
        assert 1 <= refused.retry_after <= quota.seconds
        assert (now + refused.retry_after) % quota.seconds < 1 or refused.retry_after == 1


@pytest.mark.django_db
@pytest.mark.usefixtures("org")
def test_the_management_api_stores_and_returns_windows_and_quotas(admin: User) -> None:
    from django.urls import reverse
    from rest_framework.test import APIClient

    from apps.policies.selectors import role_rules

    client = APIClient()
    client.force_authenticate(admin)
    url = reverse("org_api:role-list", kwargs={"org_slug": "acme"})
    rule = {
        "provider_key": "sandbox",
        "action_pattern": "sandbox.*",
        "action_class": "write",
        "schedule": {**OFFICE, "days": "weekdays"},
        "quota": {"limit": 20, "per": "day"},
    }
    created = client.post(url, {"name": "office-writer", "rules": [rule]}, format="json")
    assert created.status_code == 201, created.json()
    stored = created.json()["rules"][0]
    assert stored["schedule"]["days"] == ["mon", "tue", "wed", "thu", "fri"]
    assert stored["quota"] == {"limit": 20, "per": "day"}
    [spec] = role_rules(created.json()["id"])
    assert spec.quota == Quota(limit=20, per="day")
    assert spec.schedule is not None
    bad = client.post(
        url,
        {"name": "x", "rules": [{**rule, "quota": {"limit": 20, "per": "fortnight"}}]},
        format="json",
    )
    assert bad.status_code == 400
    assert "rules.0.quota" in bad.json()["error"]["details"]["fields"]


@pytest.mark.django_db
def test_the_broker_answers_403_with_the_reopening_outside_a_window(
    client: Client, org: Organization
) -> None:
    import json

    from apps.broker.tests.conftest import make_agent
    from apps.broker.tests.upstream import RecordingUpstream

    other_day = DAY_NAMES[(datetime.now(UTC).weekday() + 3) % 7]
    agent = make_agent(
        org,
        rules=[
            {
                "kind": "action",
                "provider_key": "sandbox",
                "action_pattern": "sandbox.list_projects",
                "schedule": {
                    "days": [other_day],
                    "start": "00:00",
                    "end": "24:00",
                    "timezone": "UTC",
                },
            }
        ],
    )
    with RecordingUpstream() as upstream:
        from django.test import override_settings

        with override_settings(GRANTRY_PROVIDER_URLS={"sandbox": upstream.url}):
            response = client.post(
                "/api/v1/actions/sandbox.list_projects/execute",
                json.dumps({"input": {}}),
                content_type="application/json",
                **agent.headers,
            )
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "denied"
    assert f"only {other_day.capitalize()} 00:00–24:00 UTC; it reopens at" in error["message"]
    assert upstream.requests == []


@pytest.mark.django_db
def test_the_rule_editor_sets_a_window_and_a_quota(
    client: Client, admin: User, org: Organization
) -> None:
    from django.urls import reverse

    from apps.policies.services import role_create

    role = role_create(organization=org, name="office", rules=[])
    add = reverse("policies:rule_add", kwargs={"org_slug": "acme", "role_id": role.pk})
    client.force_login(admin)
    page = client.get(add + "?provider=sandbox").content.decode()
    assert "Only on these days" in page
    assert "Quota (calls per worker)" in page
    base = {"provider": "sandbox", "actions": "write:sandbox", "connection": ""}
    bad = client.post(
        add,
        {**base, "window_days": ["mon"], "window_start": "9", "window_end": "18:00"},
    )
    assert bad.status_code == 400
    assert "Times look like 09:00" in bad.content.decode()
    ok = client.post(
        add,
        {
            **base,
            "window_days": ["mon", "tue", "wed", "thu", "fri"],
            "window_start": "09:00",
            "window_end": "18:00",
            "window_timezone": "Europe/Berlin",
            "quota_limit": "20",
            "quota_per": "day",
        },
    )
    assert ok.status_code == 302, ok.content.decode()[:2000]
    rule = role.rules.get()
    assert rule.schedule == OFFICE | {"days": ["mon", "tue", "wed", "thu", "fri"]}
    assert rule.quota == {"limit": 20, "per": "day"}
    detail = client.get(reverse("policies:detail", kwargs={"org_slug": "acme", "role_id": role.pk}))
    text = detail.content.decode()
    assert "only weekdays 09:00–18:00 Europe/Berlin" in text
    assert "at most 20 calls per day per worker" in text


# --- with approvals (issue 14): a rule may need a person and have a window and quota --


def test_an_approval_rule_offers_approval_only_inside_its_window_and_carries_its_quota() -> None:
    rule = office_rule(
        approval={"required": True, "expires_in": 600, "approvers": []},
        quota={"limit": 3, "per": "day"},
    )
    inside = evaluate([rule], call_at(datetime(2026, 12, 2, 10, 0, tzinfo=BERLIN)))
    assert not inside.allowed
    assert inside.approval_required
    assert inside.rule_id == 7
    assert inside.approval_expires_in == 600
    # The approved call is admitted under the same per-worker quota.
    assert inside.quota == Quota(limit=3, per="day")
    assert "after approval by an admin" in inside.reason
    assert "only weekdays 09:00–18:00 Europe/Berlin" in inside.reason
    assert "at most 3 calls per day per worker" in inside.reason

    outside = evaluate([rule], call_at(datetime(2026, 12, 5, 12, 0, tzinfo=BERLIN)))
    assert not outside.allowed
    assert not outside.approval_required
    assert "Mon 2026-12-07 09:00 CET" in outside.reason


def test_a_plain_allowance_keeps_its_quota_next_to_an_approval_rule() -> None:
    plain = office_rule(schedule=None, quota={"limit": 5, "per": "hour"})
    needs_person = office_rule(schedule=None, approval={"required": True})
    decision = evaluate([needs_person, plain], call_at(datetime(2026, 12, 2, 10, 0, tzinfo=UTC)))
    assert decision.allowed
    assert not decision.approval_required
    assert decision.quota == Quota(limit=5, per="hour")
