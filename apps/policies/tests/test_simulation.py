"""Policy simulation against a hand-built history of recorded broker calls."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import yaml
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from apps.broker.results import input_digest
from apps.organizations.models import Organization
from apps.policies import evaluate as evaluate_module
from apps.policies import simulation
from apps.policies.services import role_create
from apps.policies.simulation import SimulationResult, proposed_specs, role_simulate, simulate
from apps.policies.tests.conftest import make_connection
from apps.policies.validation import clean_rules
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


def call(
    org: Organization,
    role: Any,
    conn: Any,
    name: Any = None,
    *,
    verb: str = "broker.execute",
    rule_id: Any = None,
    worker: int = 7,
    **meta: Any,
) -> AuditEvent | None:
    """One recorded call as apps.broker writes it (the final event of the call)."""
    metadata = {"role_id": role.pk, "surface": "api", **meta}
    if name is not None:
        metadata["action"] = name
    if "input" in meta:
        metadata["input_sha256"] = input_digest(meta["input"])
    elif "input_sha256" not in meta and verb != "broker.proxy":
        metadata["input_sha256"] = input_digest({})
    if rule_id is not None:
        metadata["rule_id"] = rule_id
    return audit_record(
        action=verb,
        organization=org,
        actor_type="worker",
        actor_id=worker,
        worker_id=worker,
        target_type="connection",
        target_id=conn.pk,
        target_label=conn.name,
        connection_id=conn.pk,
        provider=conn.provider_key,
        decision="allowed" if rule_id is not None else "denied",
        outcome="success" if rule_id is not None else "denied",
        metadata=metadata,
    )


@pytest.fixture
def history(org: Organization) -> Any:
    c1 = make_connection(org, name="sandbox-one")
    c2 = make_connection(org, name="sandbox-two")
    role = role_create(
        organization=org,
        name="triage",
        rules=[
            {"provider_key": "sandbox", "action_pattern": "sandbox.*", "action_class": "read"},
            {
                "provider_key": "sandbox",
                "action_pattern": "sandbox.create_task",
                "connection": c1.pk,
                "constraints": [{"field": "priority", "op": "max", "value": 3}],
            },
        ],
    )
    other_role = role_create(organization=org, name="other")
    r_read, r_create = role.rules.order_by("position").values_list("pk", flat=True)
    old = call(org, role, c2, "sandbox.list_tasks", rule_id=r_read)
    cutoff = timezone.now()
    events = {
        "old": old,
        # No stored input, but no constraint decides a read: certain.
        "list_c1": call(org, role, c1, "sandbox.list_tasks", rule_id=r_read),
        "list_c2": call(org, role, c2, "sandbox.list_tasks", rule_id=r_read, input={}),
        "create_p2": call(
            org,
            role,
            c1,
            "sandbox.create_task",
            rule_id=r_create,
            input={"project_id": 1, "title": "a", "priority": 2},
        ),
        "create_p5": call(
            org,
            role,
            c1,
            "sandbox.create_task",
            input={"project_id": 1, "title": "b", "priority": 5},
        ),
        "create_blind": call(
            org, role, c1, "sandbox.create_task", rule_id=r_create, input_sha256="0" * 64
        ),
        "delete_c2": call(org, role, c2, "sandbox.delete_task", input={"task_id": 9}),
        "proxy": call(org, role, c1, verb="broker.proxy", method="GET", path="projects/1/tasks"),
        "gone": call(org, role, c1, "sandbox.retired", rule_id=r_read, input={}),
    }
    # Not calls of this role's rules: an attempt event, another role, a dry check
    # of another role, a refusal before any connection was resolved.
    call(org, role, c1, "sandbox.list_tasks", verb="broker.execute.attempt", rule_id=r_read)
    call(org, other_role, c1, "sandbox.list_tasks", input={})
    audit_record(
        action="broker.execute",
        organization=org,
        decision="denied",
        metadata={"role_id": role.pk, "action": "nope.x"},
    )
    return {"org": org, "role": role, "c1": c1, "c2": c2, "events": events, "cutoff": cutoff}


def proposed(h: Any) -> Any:
    return [
        {
            "provider_key": "sandbox",
            "action_pattern": "sandbox.*",
            "action_class": "read",
            "connection": h["c1"].pk,
        },
        {
            "provider_key": "sandbox",
            "action_pattern": "sandbox.create_task",
            "connection": h["c1"].pk,
            "constraints": [{"field": "priority", "op": "max", "value": 5}],
        },
        {
            "kind": "proxy",
            "provider_key": "sandbox",
            "connection": h["c1"].pk,
            "methods": ["GET"],
            "path_glob": "/projects/*/tasks",
        },
        {
            "provider_key": "sandbox",
            "action_pattern": "sandbox.delete_task",
            "connection": h["c2"].pk,
        },
    ]


def run(h: Any, rules: Any, days: int = 1, now: Any = None) -> SimulationResult:
    """Replay from the cutoff (so "old" is out of the window) unless `now` is given."""
    specs = proposed_specs(clean_rules(organization=h["org"], rules=rules))
    return simulate(
        organization=h["org"],
        role=h["role"],
        rules=specs,
        days=days,
        now=now or h["cutoff"] + timedelta(days=days),
    )


def ids(result: Any, kind: Any) -> Any:
    return [e.event_id for e in result.examples[kind]]


def test_flips_in_both_directions_against_the_hand_built_history(history: Any) -> None:
    h, e = history, history["events"]
    result = run(h, proposed(h))
    assert result.calls == 8  # "old" is outside the window; the rest are not this role's calls
    assert ids(result, "allowed_to_denied") == [e["list_c2"].pk]
    assert ids(result, "denied_to_allowed") == [e["create_p5"].pk, e["delete_c2"].pk, e["proxy"].pk]
    assert ids(result, "undetermined") == [e["create_blind"].pk]
    assert (result.unchanged, result.skipped) == (2, 1)  # list_c1, create_p2; retired action
    flip = result.examples["allowed_to_denied"][0]
    assert (flip.before, flip.after) == ("allowed", "denied")
    assert "only on connection 'sandbox-one'" in flip.reason
    blind = result.examples["undetermined"][0]
    assert blind.after == "unknown"
    assert "store_broker_input" in blind.reason
    assert "GET /projects/1/tasks" in result.examples["denied_to_allowed"][2].call


def test_the_current_rules_reproduce_every_recorded_decision(history: Any) -> None:
    h = history
    current = [
        {k: v for k, v in rule.items() if k not in ("id", "connection_name")}
        for rule in simulation_rules(h["role"])
    ]
    result = run(h, current, days=1, now=timezone.now())
    assert result.allowed_to_denied == result.denied_to_allowed == 0
    assert result.calls == 9
    assert result.undetermined == 1
    assert result.skipped == 1


def simulation_rules(role: Any) -> Any:
    from apps.policies.selectors import role_document

    return role_document(role)["rules"]


def test_it_decides_with_the_brokers_own_evaluate() -> None:
    assert simulation.evaluate is evaluate_module.evaluate


def login(client: Any, user: Any) -> None:
    assert client.login(username=user.username, password=PASSWORD)


def api_url(h: Any) -> Any:
    return reverse(
        "org_api:role-simulate", kwargs={"org_slug": h["org"].slug, "role_id": h["role"].pk}
    )


def test_api_takes_json_or_a_yaml_document(client: Client, history: Any, reviewer: User) -> None:
    h, e = history, history["events"]
    login(client, reviewer)
    response = client.post(
        api_url(h), {"rules": proposed(h), "days": 30}, content_type="application/json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    # 30 days reach back to "old" too: like list_c2, a read on the other connection.
    assert (body["allowed_to_denied"], body["denied_to_allowed"], body["undetermined"]) == (2, 3, 1)
    assert [x["event_id"] for x in body["examples"]["allowed_to_denied"]] == [
        e["old"].pk,
        e["list_c2"].pk,
    ]
    document = yaml.safe_dump({"name": "triage", "rules": proposed(h)})
    response = client.post(api_url(h) + "?days=30", document, content_type="application/yaml")
    assert response.status_code == 200
    assert response.json()["denied_to_allowed"] == 3
    assert not AuditEvent.objects.filter(action="role.changed").exists()  # nothing saved


def test_api_errors_use_the_error_shape(
    client: Client, history: Any, reviewer: User, member: User, outsider: User
) -> None:
    h = history
    login(client, reviewer)
    bad_rule = client.post(
        api_url(h),
        {"rules": [{"provider_key": "sandbox", "action_pattern": "sandbox.nope"}]},
        content_type="application/json",
    )
    assert bad_rule.status_code == 400
    assert "rules.0.action_pattern" in bad_rule.json()["error"]["details"]["fields"]
    bad_days = client.post(api_url(h), {"rules": [], "days": 0}, content_type="application/json")
    assert bad_days.status_code == 400
    assert "days" in bad_days.json()["error"]["message"]
    bad_yaml = client.post(api_url(h), "rules: [", content_type="application/yaml")
    assert bad_yaml.status_code == 400
    assert bad_yaml.json()["error"]["code"] == "invalid_input"
    login(client, member)
    assert (
        client.post(api_url(h), {"rules": []}, content_type="application/json").status_code == 403
    )
    login(client, outsider)
    assert (
        client.post(api_url(h), {"rules": []}, content_type="application/json").status_code == 404
    )


def test_dashboard_simulates_before_saving_and_admins_save(
    client: Client, history: Any, reviewer: User, admin: User
) -> None:
    h = history
    url = reverse("policies:simulate", kwargs={"org_slug": h["org"].slug, "role_id": h["role"].pk})
    login(client, reviewer)
    page = client.get(url)
    assert page.status_code == 200
    assert "sandbox.create_task" in page.context["document"]
    document = yaml.safe_dump(proposed(h))
    shown = client.post(url, {"document": document, "days": "30"})
    assert shown.status_code == 200
    assert shown.context["result"].denied_to_allowed == 3
    assert "denied → allowed" in shown.content.decode()
    assert client.post(url, {"document": document, "save": "1"}).status_code == 403
    login(client, admin)
    saved = client.post(url, {"document": document, "days": "30", "save": "1"})
    assert saved.status_code == 302
    assert h["role"].rules.count() == 4
    assert AuditEvent.objects.filter(action="role.changed", target_id=str(h["role"].pk)).exists()
    invalid = client.post(url, {"document": "- provider_key: nope", "days": "30"})
    assert invalid.status_code == 400
    assert "rules.0.provider_key" in invalid.content.decode()


def test_role_simulate_validates_like_saving(history: Any) -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        role_simulate(role=history["role"], rules=[{"kind": "proxy", "provider_key": "sandbox"}])


def test_the_rule_editor_simulates_a_new_rule_before_saving_it(
    client: Client, history: Any, admin: User
) -> None:
    h = history
    login(client, admin)
    add = reverse("policies:rule_add", kwargs={"org_slug": h["org"].slug, "role_id": h["role"].pk})
    form = {
        "kind": "proxy",
        "connection": str(h["c1"].pk),
        "methods": ["GET"],
        "path_glob": "/projects/*/tasks",
    }
    shown = client.post(add, {**form, "simulate": "1"})
    assert shown.status_code == 200
    result = shown.context["simulation"]
    assert result.denied_to_allowed == 1
    assert result.allowed_to_denied == 0
    assert ids(result, "denied_to_allowed") == [h["events"]["proxy"].pk]
    assert "denied → allowed" in shown.content.decode()
    assert not h["role"].rules.filter(kind="proxy").exists()  # nothing saved
    assert client.post(add, form).status_code == 302
    assert h["role"].rules.filter(kind="proxy").exists()


def test_windows_decide_at_the_call_time_and_approved_calls_stay_allowed(
    org: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rule's schedule is judged at the recorded call's time, not the replay's; a call
    an approval rule allowed (after a person approved it) is still allowed by it."""
    from datetime import UTC, datetime

    conn = make_connection(org, name="sandbox-one")
    rules: list[dict[str, Any]] = [
        {
            "provider_key": "sandbox",
            "action_pattern": "sandbox.list_tasks",
            "schedule": {"days": "daily", "start": "09:00", "end": "10:00", "timezone": "UTC"},
        },
        {"provider_key": "sandbox", "action_pattern": "sandbox.create_task", "approval": True},
    ]
    role = role_create(organization=org, name="office-hours", rules=rules)
    r_window, r_approval = role.rules.order_by("position").values_list("pk", flat=True)
    inside = call(org, role, conn, "sandbox.list_tasks", rule_id=r_window)
    outside = call(org, role, conn, "sandbox.list_tasks")  # denied: the window was closed
    approved = call(org, role, conn, "sandbox.create_task", rule_id=r_approval, input={})
    day = timezone.now().date() - timedelta(days=1)
    times = {
        inside.pk: datetime(day.year, day.month, day.day, 9, 30, tzinfo=UTC),
        outside.pk: datetime(day.year, day.month, day.day, 12, 0, tzinfo=UTC),
        approved.pk: datetime(day.year, day.month, day.day, 12, 0, tzinfo=UTC),
    }
    recorded = simulation.recorded_calls

    def at_recorded_times(**kwargs: Any) -> Iterator[Any]:
        # The rows are the database's; only their times are moved to yesterday's.
        for row in recorded(**kwargs):
            yield (*row[:-1], times[row[0]])

    monkeypatch.setattr(simulation, "recorded_calls", at_recorded_times)
    current = [{k: v for k, v in r.items() if k != "id"} for r in simulation_rules(role)]
    specs = proposed_specs(clean_rules(organization=org, rules=current))
    result = simulate(organization=org, role=role, rules=specs, days=2)
    assert result.calls == 3
    assert (result.allowed_to_denied, result.denied_to_allowed, result.unchanged) == (0, 0, 3)
    closed = [{**rules[0], "schedule": {**rules[0]["schedule"], "start": "13:00", "end": "14:00"}}]
    result = simulate(
        organization=org,
        role=role,
        rules=proposed_specs(clean_rules(organization=org, rules=[*closed, rules[1]])),
        days=2,
    )
    assert ids(result, "allowed_to_denied") == [inside.pk]
    assert result.denied_to_allowed == 0


def test_the_simulation_page_shows_the_rules_in_words_and_names_not_internal_ids(
    client: Client, history: Any, reviewer: User
) -> None:
    h = history
    url = reverse("policies:simulate", kwargs={"org_slug": h["org"].slug, "role_id": h["role"].pk})
    login(client, reviewer)
    page = client.get(url)
    html = page.content.decode()
    r_read, r_create = h["role"].rules.order_by("position").values_list("pk", flat=True)
    # The rules now, as the role page words them, each by its number.
    assert f'data-testid="rule-{r_read}"' in html
    assert f'data-testid="rule-{r_create}"' in html
    document = page.context["document"]
    assert f"# Rule #{r_create} allows " in document
    rules = yaml.safe_load(document)
    assert [r.get("connection") for r in rules] == [None, "sandbox-one"]  # by name
    assert all("id" not in r and "connection_name" not in r for r in rules)
    assert "schedule" not in rules[0]
    assert "approval" not in rules[0]
    # The document as shown reproduces every recorded decision: nothing lost on the way.
    shown = client.post(url, {"document": document, "days": "1"})
    assert shown.status_code == 200
    result = shown.context["result"]
    assert result.allowed_to_denied == result.denied_to_allowed == 0
    assert result.calls == 9


def test_a_rule_names_its_connection_by_id_or_by_name_of_this_organization_only(
    history: Any, other_org: Organization
) -> None:
    from django.core.exceptions import ValidationError

    h = history
    make_connection(other_org, name="elsewhere")
    by = {"provider_key": "sandbox", "action_pattern": "sandbox.list_tasks"}
    by_name = role_simulate(role=h["role"], rules=[{**by, "connection": "sandbox-two"}])
    by_id = role_simulate(role=h["role"], rules=[{**by, "connection": h["c2"].pk}])
    figures = ("calls", "allowed_to_denied", "denied_to_allowed", "unchanged", "undetermined")
    assert [getattr(by_name, f) for f in figures] == [getattr(by_id, f) for f in figures]
    assert by_name.calls > 0
    for unknown in ("elsewhere", "no-such-connection", "x" * 61):
        with pytest.raises(ValidationError) as refused:
            role_simulate(role=h["role"], rules=[{**by, "connection": unknown}])
        assert refused.value.message_dict["rules.0.connection"] == [
            "No such connection in this organization."
        ]
