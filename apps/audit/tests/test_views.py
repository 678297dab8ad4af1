"""Reviewer dashboard: access, filters, keyset pages, detail links, exports."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from apps.audit.tests.helpers import broker_event
from apps.organizations.models import Organization
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


def url(org: Organization, name: str = "audit:list", **kwargs: Any) -> Any:
    return reverse(name, kwargs={"org_slug": org.slug, **kwargs})


def login(client: Any, user: Any) -> Any:
    assert client.login(username=user.username, password=PASSWORD)
    return client


def listed_ids(response: Any) -> Any:
    return [e.pk for e in response.context["page"].events]


# --- access ------------------------------------------------------------------


@pytest.mark.parametrize("role_fixture", ["reviewer", "admin", "owner"])
def test_reviewers_admins_and_owners_browse(
    client: Client, org: Organization, request: pytest.FixtureRequest, role_fixture: str
) -> None:
    event = audit_record(action="org.created", organization=org)
    login(client, request.getfixturevalue(role_fixture))
    response = client.get(url(org))
    assert response.status_code == 200
    assert listed_ids(response) == [event.pk]
    assert client.get(url(org, "audit:detail", pk=event.pk)).status_code == 200
    assert client.get(url(org, "audit:charts")).status_code == 200


def test_members_get_403_and_non_members_404_everywhere(
    client: Client, org: Organization, member: User, outsider: User
) -> None:
    event = audit_record(action="org.created", organization=org)
    pages = [url(org), url(org, "audit:detail", pk=event.pk), url(org, "audit:charts")]
    login(client, member)
    for page in pages:
        assert client.get(page).status_code == 403
    assert client.post(url(org, "audit:export"), {"format": "csv"}).status_code == 403
    client.logout()
    login(client, outsider)
    for page in pages:
        assert client.get(page).status_code == 404
    assert client.post(url(org, "audit:export"), {"format": "csv"}).status_code == 404


def test_another_orgs_event_is_404_even_for_its_own_reviewer(
    client: Client, org: Organization, other_org: Organization, reviewer: User
) -> None:
    foreign = audit_record(action="org.created", organization=other_org)
    login(client, reviewer)
    assert client.get(url(org, "audit:detail", pk=foreign.pk)).status_code == 404
    assert foreign.pk not in listed_ids(client.get(url(org)))


def test_chain_head_is_on_the_page(client: Client, org: Organization, reviewer: User) -> None:
    audit_record(action="worker.created", organization=org)
    last = audit_record(action="worker.changed", organization=org)
    login(client, reviewer)
    body = client.get(url(org)).content.decode()
    assert last.hash in body
    assert f'id="chain-seq">{last.seq}<' in body


# --- filters -----------------------------------------------------------------


@pytest.fixture
def mixed(org: Organization, other_org: Organization, reviewer: User) -> dict[str, Any]:
    """A spread of events; returns them by name."""
    from datetime import timedelta

    from django.utils import timezone

    events: dict[str, Any] = {
        "created": audit_record(
            action="org.created",
            organization=org,
            actor_type="user",
            actor_id=reviewer.pk,
            actor_label=reviewer.username,
        ),
        "minted": audit_record(
            action="token.minted", organization=org, target_label="ci-token", token_id="tok_a"
        ),
        "revoked": audit_record(
            action="token.revoked", organization=org, token_id="tok_a", reason="leaked in a log"
        ),
        "allowed": broker_event(org),
        "denied": broker_event(
            org,
            decision="denied",
            outcome="denied",
            upstream_status=None,
            reason="No rule allows issues.delete",
            worker_id=8,
            token_id="tok_b",
            connection_id=4,
            provider="linear",
            action="broker.proxy",
        ),
        "upstream_500": broker_event(org, outcome="error", upstream_status=503),
        "elsewhere": broker_event(other_org, decision="denied"),
    }
    # created_at is set by audit_record; "now" minus a day leaves all inside.
    events["_since"] = timezone.now() - timedelta(days=1)
    return events


def _filter_ids(client: Any, org: Organization, **params: Any) -> Any:
    response = client.get(url(org), params)
    assert response.status_code == 200
    assert response.context["page"] is not None, response.context["form"].errors
    return set(listed_ids(response))


def test_each_filter(
    client: Client, org: Organization, reviewer: User, mixed: dict[str, Any]
) -> None:
    login(client, reviewer)
    m = {k: v.pk for k, v in mixed.items() if not k.startswith("_")}
    assert _filter_ids(client, org, member=reviewer.username) == {m["created"]}
    assert _filter_ids(client, org, member=str(reviewer.pk)) == {m["created"]}
    assert _filter_ids(client, org, worker=8) == {m["denied"]}
    assert _filter_ids(client, org, token="tok_a") == {m["minted"], m["revoked"]}
    assert _filter_ids(client, org, action="token.minted") == {m["minted"]}
    assert _filter_ids(client, org, action="token.") == {m["minted"], m["revoked"]}
    assert _filter_ids(client, org, action="broker.*") == {
        m["allowed"],
        m["denied"],
        m["upstream_500"],
    }
    assert _filter_ids(client, org, decision="denied") == {m["denied"]}
    assert _filter_ids(client, org, decision="allowed") == {m["allowed"], m["upstream_500"]}
    assert _filter_ids(client, org, connection=4) == {m["denied"]}
    assert _filter_ids(client, org, provider="linear") == {m["denied"]}
    assert _filter_ids(client, org, outcome="error") == {m["upstream_500"]}
    assert _filter_ids(client, org, status="503") == {m["upstream_500"]}
    assert _filter_ids(client, org, status="5xx") == {m["upstream_500"]}
    assert _filter_ids(client, org, status="2xx") == {m["allowed"]}
    assert _filter_ids(client, org, q="LEAKED") == {m["revoked"]}
    assert _filter_ids(client, org, q="ci-tok") == {m["minted"]}
    since = mixed["_since"].strftime("%Y-%m-%dT%H:%M")
    everything = {v for k, v in m.items() if k != "elsewhere"}
    assert _filter_ids(client, org, start=since) == everything
    assert _filter_ids(client, org, end=since) == set()
    assert _filter_ids(client, org, worker=8, decision="allowed") == set()


def test_member_filter_by_email_finds_the_account_and_deleted_accounts_by_label(
    client: Client, org: Organization, reviewer: User
) -> None:
    from tests.factories import UserFactory

    gone = UserFactory(email="gone@acme.test")
    theirs = audit_record(
        action="token.minted",
        organization=org,
        actor_type="user",
        actor_id=gone.pk,
        actor_label=gone.username,
    )
    mine = audit_record(
        action="token.minted",
        organization=org,
        actor_type="user",
        actor_id=reviewer.pk,
        actor_label=reviewer.username,
    )
    login(client, reviewer)
    assert _filter_ids(client, org, member="REVIEWER@acme.test") == {mine.pk}
    gone.delete()
    assert _filter_ids(client, org, member="gone@acme.test") == {theirs.pk}
    assert _filter_ids(client, org, member="nobody@acme.test") == set()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": "yesterday-ish"}, "start"),
        ({"worker": "abc"}, "worker"),
        ({"status": "99"}, "status"),
        ({"status": "6xx"}, "status"),
        ({"decision": "maybe"}, "decision"),
        ({"connection": "-4"}, "connection"),
        ({"action": "*"}, "action"),
    ],
)
def test_invalid_filters_get_a_clear_message_not_a_500(
    client: Client, org: Organization, reviewer: User, params: Any, field: str
) -> None:
    login(client, reviewer)
    response = client.get(url(org), params)
    assert response.status_code == 200
    assert response.context["page"] is None
    assert field in response.context["form"].errors
    assert "The filter is not valid" in response.content.decode()


def test_from_after_to_is_refused(client: Client, org: Organization, reviewer: User) -> None:
    login(client, reviewer)
    response = client.get(url(org), {"start": "2026-02-01T00:00", "end": "2026-01-01T00:00"})
    assert response.context["page"] is None
    assert "before" in str(response.context["form"].non_field_errors())


def test_filters_are_carried_into_the_page_links(
    client: Client, org: Organization, reviewer: User
) -> None:
    for _ in range(55):
        audit_record(action="token.minted", organization=org)
    login(client, reviewer)
    body = client.get(url(org), {"action": "token."}).content.decode()
    assert "action=token.&amp;before=" in body


# --- keyset pagination -------------------------------------------------------


def test_keyset_pages_walk_back_and_forth_without_overlap(
    client: Client, org: Organization, reviewer: User
) -> None:
    ids = [audit_record(action="org.updated", organization=org).pk for _ in range(120)]
    newest_first = list(reversed(ids))
    login(client, reviewer)
    first = client.get(url(org))
    page1 = first.context["page"]
    assert listed_ids(first) == newest_first[:50]
    assert page1.newer_than is None
    assert page1.older_than == newest_first[49]

    second = client.get(url(org), {"before": page1.older_than})
    assert listed_ids(second) == newest_first[50:100]
    third = client.get(url(org), {"before": second.context["page"].older_than})
    assert listed_ids(third) == newest_first[100:]
    assert third.context["page"].older_than is None

    back = client.get(url(org), {"after": third.context["page"].newer_than})
    assert listed_ids(back) == newest_first[50:100]
    top = client.get(url(org), {"after": back.context["page"].newer_than})
    assert listed_ids(top) == newest_first[:50]
    assert top.context["page"].newer_than is None


@pytest.mark.usefixtures("django_assert_max_num_queries")
def test_pagination_never_uses_offset(client: Client, org: Organization, reviewer: User) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    ids = [audit_record(action="org.updated", organization=org).pk for _ in range(60)]
    login(client, reviewer)
    with CaptureQueriesContext(connection) as queries:
        client.get(url(org), {"before": ids[-1]})
    event_queries = [q["sql"] for q in queries if 'FROM "audit_auditevent"' in q["sql"]]
    assert event_queries
    assert not any("OFFSET" in sql for sql in event_queries)


# --- detail ------------------------------------------------------------------


def test_detail_shows_every_field_and_why_it_was_denied(
    client: Client, org: Organization, reviewer: User
) -> None:
    event = broker_event(
        org,
        decision="denied",
        outcome="denied",
        reason="No rule allows issues.delete",
        metadata={"role_id": 999, "action": "issues.list"},
    )
    login(client, reviewer)
    body = client.get(url(org, "audit:detail", pk=event.pk)).content.decode()
    assert "No rule allows issues.delete" in body
    for value in (
        event.hash,
        event.prev_hash,
        event.token_id,
        "github-main",
        "issues.list",
        event.created_at.isoformat(),
    ):
        assert value in body


def test_detail_links_show_deleted_and_revoked_objects(
    client: Client, org: Organization, reviewer: User
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from apps.connections.models import Connection
    from apps.policies.models import Role
    from apps.workers.models import Worker, WorkerToken

    role = Role.objects.create(organization=org, name="triage")
    worker = Worker.objects.create(organization=org, name="triage-bot", default_role=role)
    token = WorkerToken.objects.create(
        organization=org,
        worker=worker,
        role=role,
        public_id="tok_revoked",
        digest="d" * 64,
        last4="abcd",
        expires_at=timezone.now() + timedelta(days=1),
        revoked_at=timezone.now(),
    )
    conn = Connection.objects.create(
        organization=org, provider_key="github", name="gh", auth_type="oauth2"
    )
    live = broker_event(
        org,
        worker_id=worker.pk,
        token_id=token.public_id,
        connection_id=conn.pk,
        metadata={"role_id": role.pk},
    )
    gone = broker_event(
        org,
        worker_id=987654,
        token_id="tok_gone",
        connection_id=876543,
        metadata={"role_id": 765432},
    )
    login(client, reviewer)

    links = {
        link.kind: link
        for link in client.get(url(org, "audit:detail", pk=live.pk)).context["links"]
    }
    assert links["Worker"].label == "triage-bot"
    assert links["Worker"].state == ""
    assert links["Token"].state == "revoked"
    assert links["Role"].label == "triage"
    assert links["Connection"].label == "gh (github)"
    assert links["Worker"].url == reverse(
        "workers:detail", kwargs={"org_slug": org.slug, "worker_id": worker.pk}
    )
    assert links["Token"].url == links["Worker"].url
    assert links["Role"].url == reverse(
        "policies:detail", kwargs={"org_slug": org.slug, "role_id": role.pk}
    )

    response = client.get(url(org, "audit:detail", pk=gone.pk))
    links = {link.kind: link for link in response.context["links"]}
    assert {k: v.state for k, v in links.items()} == {
        "Worker": "deleted",
        "Token": "deleted",
        "Role": "deleted",
        "Connection": "deleted",
    }
    assert response.content.decode().count(">deleted<") == 4


def test_detail_links_never_reach_into_another_org(
    client: Client, org: Organization, other_org: Organization, reviewer: User
) -> None:
    from apps.policies.models import Role
    from apps.workers.models import Worker

    role = Role.objects.create(organization=other_org, name="theirs")
    worker = Worker.objects.create(organization=other_org, name="their-bot", default_role=role)
    event = broker_event(org, worker_id=worker.pk, metadata={"role_id": role.pk})
    login(client, reviewer)
    response = client.get(url(org, "audit:detail", pk=event.pk))
    assert "their-bot" not in response.content.decode()
    assert {link.kind: link.state for link in response.context["links"]}["Worker"] == "deleted"


# --- charts ------------------------------------------------------------------


def test_the_window_summary_counts_calls_and_stops_at_the_newest_it_counts(
    client: Client, org: Organization, reviewer: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    from apps.review import views

    broker_event(org, decision="denied", metadata={"action": "sandbox.delete_task"})
    broker_event(org)
    broker_event(org)
    broker_event(org)
    audit_record(action="org.created", organization=org)  # not a call
    login(client, reviewer)
    since = {"start": (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")}

    whole = client.get(url(org), since)
    assert whole.context["counts"]["calls"] == 4
    assert whole.context["counts"]["denied"] == 1
    assert not whole.context["counts_capped"]
    assert "4</strong> agent calls in this window" in whole.content.decode()
    assert "charts page" not in whole.content.decode()

    # A busy window: only the newest calls are counted, and the page says so. The
    # denied call is the oldest, so it is outside the three counted.
    monkeypatch.setattr(views, "COUNTED_CALLS", 3)
    capped = client.get(url(org), since)
    assert capped.context["counts"]["calls"] == 3
    assert capped.context["counts"]["denied"] == 0
    assert capped.context["counts_capped"]
    body = capped.content.decode()
    assert "At least <strong>3</strong> agent calls in this window; of the newest 3" in body
    assert "Count the whole window on the charts page" in body


def test_charts_count_calls_denials_and_top_denied_actions(
    client: Client, org: Organization, reviewer: User
) -> None:
    broker_event(org)
    broker_event(org, action="broker.execute.attempt")  # the same call, not a second one
    broker_event(org, worker_id=8)
    broker_event(org, decision="denied", metadata={"action": "sandbox.delete_task"}, reason="r1")
    broker_event(
        org,
        decision="denied",
        worker_id=8,
        metadata={"action": "sandbox.delete_task"},
        reason="r1",
    )
    broker_event(
        org,
        action="broker.proxy",
        decision="denied",
        provider="github",
        metadata={"method": "DELETE", "path": "/repos/x"},
        reason="r2",
    )
    broker_event(org, action="broker.check", decision="denied", reason="dry")  # a dry run
    audit_record(action="org.created", organization=org)  # not a call
    login(client, reviewer)
    response = client.get(url(org, "audit:charts"))
    charts = response.context["charts"]
    assert (charts["total_calls"], charts["total_denied"], charts["total_dry_runs"]) == (5, 3, 1)
    assert [(r["label"], r["n"]) for r in charts["top_denied"]] == [
        ("sandbox.delete_task", 2),
        ("DELETE github (proxy)", 1),
    ]
    assert [(r["label"], r["n"]) for r in charts["top_reasons"]] == [("r1", 2), ("r2", 1)]
    assert {w["worker_id"]: (w["calls"], w["denied"]) for w in charts["per_worker"]} == {
        7: (3, 2),
        8: (2, 1),
    }
    body = response.content.decode()
    # Line charts are SVG; bar charts are HTML lists (labels as page text).
    charts = body.count('<svg class="chart"') + body.count('<ul class="bar-chart"')
    assert charts + body.count('class="bar-chart-empty"') == 7
    assert "<script" not in body.split("<main", 1)[1]

    filtered = client.get(url(org, "audit:charts"), {"worker": 8}).context["charts"]
    assert (filtered["total_calls"], filtered["total_denied"]) == (2, 1)


def test_charts_name_workers_and_bars_link_to_the_filtered_list(
    client: Client, org: Organization, reviewer: User
) -> None:
    from apps.policies.models import Role
    from apps.workers.models import Worker

    role = Role.objects.create(organization=org, name="r")
    bot = Worker.objects.create(organization=org, name="triage-bot", default_role=role)
    for _ in range(2):
        broker_event(
            org, worker_id=bot.pk, decision="denied", metadata={"action": "sandbox.delete_task"}
        )
    broker_event(org, worker_id=bot.pk, metadata={"action": "sandbox.list_tasks"})
    login(client, reviewer)
    charts = client.get(url(org, "audit:charts")).context["charts"]
    assert [(r["label"], r["n"]) for r in charts["top_denied_workers"]] == [("triage-bot", 2)]
    assert charts["per_worker"][0]["name"] == "triage-bot"
    assert "Worker " + str(bot.pk) not in client.get(url(org, "audit:charts")).content.decode()

    # The "sandbox.delete_task" bar opens the audit list with exactly those events.
    bar = charts["top_denied"][0]
    assert bar["label"] == "sandbox.delete_task"
    listed = client.get(bar["url"])
    assert listed.status_code == 200
    events = listed.context["page"].events
    assert len(events) == 2
    assert {e.metadata["action"] for e in events} == {"sandbox.delete_task"}
    # And the worker bar: that worker's denials.
    listed = client.get(charts["top_denied_workers"][0]["url"])
    assert len(listed.context["page"].events) == 2


def test_chart_buckets_fit_the_window(client: Client, org: Organization, reviewer: User) -> None:
    from apps.review.charts import bucket_step

    login(client, reviewer)
    broker_event(org)
    # Without a start, a window that holds one recent call is an hour in minutes.
    charts = client.get(url(org, "audit:charts")).context["charts"]
    assert charts["step"] == "minute"
    assert charts["end"] - charts["start"] <= timedelta(hours=1, minutes=1)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert bucket_step(start, start + timedelta(hours=6))[1] == "5 minutes"
    assert bucket_step(start, start + timedelta(days=1))[1] == "15 minutes"
    assert bucket_step(start, start + timedelta(days=3))[1] == "hour"
    assert bucket_step(start, start + timedelta(days=7))[1] == "6 hours"
    assert bucket_step(start, start + timedelta(days=31))[1] == "day"
    # An explicit range is kept as given.
    params = {"start": "2026-01-01T00:00", "end": "2026-01-01T06:00"}
    charts = client.get(url(org, "audit:charts"), params).context["charts"]
    assert charts["step"] == "5 minutes"


def test_charts_are_responsive_svg(client: Client, org: Organization, reviewer: User) -> None:
    broker_event(org)
    login(client, reviewer)
    body = client.get(url(org, "audit:charts")).content.decode()
    assert 'width="640"' not in body
    assert 'viewBox="0 0 640' in body


def test_chart_labels_are_escaped(client: Client, org: Organization, reviewer: User) -> None:
    broker_event(
        org,
        decision="denied",
        metadata={"action": "<script>alert(1)</script>"},
        reason='<img src=x onerror="alert(2)">',
    )
    login(client, reviewer)
    body = client.get(url(org, "audit:charts")).content.decode()
    assert "<script>alert(1)" not in body
    assert "<img src=x" not in body
    assert "&lt;script&gt;alert(1)" in body
    assert "&lt;img src=x" in body


# --- exports -----------------------------------------------------------------

NASTY = [
    '=HYPERLINK("http://evil.test","x")',
    "+1+2",
    "-2+3",
    "@SUM(A1)",
    "\tleading tab",
    "\rleading cr",
    'line one\nline two, with "quotes", commas;and;semicolons',
]


def _export(client: Any, org: Organization, fmt: Any, **params: Any) -> Any:
    from urllib.parse import urlencode

    target = url(org, "audit:export") + ("?" + urlencode(params) if params else "")
    return client.post(target, {"format": fmt})


def _body(response: Any) -> Any:
    assert isinstance(response, StreamingHttpResponse)
    return response.getvalue().decode()


def test_csv_export_neutralises_formulas_and_round_trips(
    client: Client, org: Organization, reviewer: User
) -> None:
    for text in NASTY:
        audit_record(action="role.changed", organization=org, target_label=text, reason=text)
    audit_record(action="role.created", organization=org)
    login(client, reviewer)
    response = _export(client, org, "csv", action="role.changed")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    records = list(csv.DictReader(io.StringIO(_body(response), newline="")))
    assert len(records) == len(NASTY)
    for record, text in zip(records, NASTY, strict=True):
        expected = "'" + text if text.startswith(("=", "+", "-", "@", "\t", "\r")) else text
        assert record["target_label"] == expected
        assert record["reason"] == expected
        assert record["action"] == "role.changed"
        assert not record["target_label"].startswith(("=", "+", "-", "@", "\t", "\r"))


def test_jsonl_export_is_one_event_a_line_and_round_trips(
    client: Client, org: Organization, reviewer: User
) -> None:
    for text in NASTY:
        audit_record(
            action="role.changed", organization=org, target_label=text, metadata={"note": text}
        )
    login(client, reviewer)
    response = _export(client, org, "jsonl", action="role.changed")
    assert response["Content-Type"].startswith("application/x-ndjson")
    lines = _body(response).splitlines()
    assert len(lines) == len(NASTY)
    decoded = [json.loads(line) for line in lines]
    assert [d["target_label"] for d in decoded] == NASTY
    assert [d["metadata"]["note"] for d in decoded] == NASTY
    stored = AuditEvent.objects.filter(action="role.changed").order_by("id")
    assert [d["hash"] for d in decoded] == [e.hash for e in stored]


def test_export_streams_in_keyset_chunks(
    client: Client, org: Organization, reviewer: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    from apps.audit import exports

    monkeypatch.setattr(exports, "CHUNK_SIZE", 7)
    ids = [audit_record(action="org.updated", organization=org).pk for _ in range(30)]
    login(client, reviewer)
    response = _export(client, org, "jsonl")
    assert isinstance(response, StreamingHttpResponse)
    exported = [json.loads(line)["id"] for line in _body(response).splitlines()]
    # The export event itself is written before streaming starts, so it is included.
    assert exported[:30] == ids
    assert len(exported) == 31


def test_exports_are_audited_with_filter_and_format(
    client: Client, org: Organization, reviewer: User
) -> None:
    login(client, reviewer)
    _body(_export(client, org, "csv", decision="denied", worker="7"))
    event = AuditEvent.objects.get(action="audit.exported")
    assert event.actor_type == "user"
    assert event.actor_id == str(reviewer.pk)
    assert event.metadata["filter"] == {"decision": "denied", "worker": "7"}
    assert event.metadata["format"] == "csv"
    assert event.metadata["mode"] == "direct"


def test_export_with_invalid_filter_or_format_is_refused(
    client: Client, org: Organization, reviewer: User
) -> None:
    login(client, reviewer)
    assert _export(client, org, "xlsx").status_code == 302
    assert _export(client, org, "csv", worker="nope").status_code == 302
    assert not AuditEvent.objects.filter(action="audit.exported").exists()


def test_jsonl_built_by_postgres_matches_python_json(org: Organization) -> None:
    """The database-built JSON lines decode to exactly the values the ORM reads."""
    from datetime import datetime

    from apps.audit import exports

    for text in NASTY:
        audit_record(
            action="role.changed",
            organization=org,
            target_label=text,
            ip="10.1.2.3",
            metadata={"note": text, "n": [1, 2.5, None]},
            upstream_status=503,
        )
    events = AuditEvent.objects.filter(organization=org)
    from_db = [json.loads(line) for line in exports.jsonl_lines(events)]
    for doc in from_db:
        doc["created_at"] = datetime.fromisoformat(doc["created_at"])
    from_orm = [dict(zip(exports.COLUMNS, row, strict=True)) for row in exports.rows(events)]
    assert from_db == from_orm
    assert len(from_db) == len(NASTY)


def test_time_ranges_are_exact_with_the_id_bounds(
    client: Client,
    org: Organization,
    other_org: Organization,
    reviewer: User,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Events spread over days: every range returns exactly the events inside it."""
    from datetime import UTC, datetime, timedelta
    from types import SimpleNamespace

    from apps.audit import partitions, writer

    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    partitions.ensure(t0)  # the table is partitioned by month: March 2026 must exist
    created = {}
    for i in range(40):
        at = t0 + timedelta(minutes=47 * i)
        monkeypatch.setattr(writer, "timezone", SimpleNamespace(now=lambda at=at: at))
        created[audit_record(action="org.updated", organization=org).pk] = at
        audit_record(action="org.updated", organization=other_org)
    login(client, reviewer)
    fmt = "%Y-%m-%dT%H:%M"
    for start_min, end_min in [(0, 300), (120, 121), (600, 1500), (1000, 5000), (-60, 0)]:
        start, end = t0 + timedelta(minutes=start_min), t0 + timedelta(minutes=end_min)
        expected = {pk for pk, at in created.items() if start <= at <= end}
        got = _filter_ids(client, org, start=start.strftime(fmt), end=end.strftime(fmt))
        assert got == expected, (start_min, end_min)
        assert _filter_ids(client, org, start=start.strftime(fmt)) == {
            pk for pk, at in created.items() if at >= start
        }
