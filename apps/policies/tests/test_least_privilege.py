"""Least-privilege report and narrowed role, against a hand-built history."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.organizations.models import Organization
from apps.policies.least_privilege import least_privilege_report
from apps.policies.services import role_create
from apps.policies.tests.conftest import make_connection
from apps.policies.tests.test_simulation import call, login
from apps.workers.models import Worker

pytestmark = pytest.mark.django_db


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
                "constraints": [
                    {"field": "priority", "op": "max", "value": 3},
                    {"field": "title", "op": "prefix", "value": "bot:"},
                ],
            },
            {
                "provider_key": "sandbox",
                "action_pattern": "sandbox.delete_task",
                "connection": c2.pk,
            },
            {
                "kind": "proxy",
                "provider_key": "sandbox",
                "connection": c1.pk,
                "methods": ["GET"],
                "path_glob": "/projects/*",
            },
        ],
    )
    bot = Worker.objects.create(organization=org, name="bot", default_role=role)
    other = Worker.objects.create(organization=org, name="other", default_role=role)
    r1, r2, r3, _r4 = role.rules.order_by("position").values_list("pk", flat=True)
    for _ in range(3):
        call(org, role, c1, "sandbox.list_tasks", rule_id=r1, worker=bot.pk, input={})
    call(org, role, c1, "sandbox.get_task", rule_id=r1, worker=bot.pk, input={"task_id": 1})
    good = {"project_id": 1, "title": "bot: a", "priority": 2}
    call(org, role, c1, "sandbox.create_task", rule_id=r2, worker=bot.pk, input=good)
    for n in range(3):
        too_high = {"project_id": 1, "title": f"bot: {n}", "priority": 5}
        call(org, role, c1, "sandbox.create_task", worker=bot.pk, input=too_high)
    call(org, role, c2, "sandbox.delete_task", rule_id=r3, worker=other.pk, input={"task_id": 2})
    return {"org": org, "role": role, "c1": c1, "c2": c2, "bot": bot, "other": other}


def test_report_for_one_worker(history: Any) -> None:
    h = history
    report = least_privilege_report(role=h["role"], worker_id=h["bot"].pk)
    assert (report.calls, report.allowed, report.denied) == (8, 5, 3)
    used = {u.position: (u.matched, dict(u.actions)) for u in report.matched_rules}
    assert used == {
        1: (4, {"sandbox.list_tasks": 3, "sandbox.get_task": 1}),
        2: (1, {"sandbox.create_task": 1}),
    }
    assert [u.position for u in report.unused_rules] == [3, 4]
    assert [(c["constraint"], c["calls_judged"]) for c in report.idle_constraints] == [
        ("input.title must start with 'bot:'", 4)
    ]
    [denial] = report.repeated_denials
    assert (denial["call"], denial["connection"], denial["count"]) == (
        "sandbox.create_task",
        "sandbox-one",
        3,
    )
    assert "priority" in denial["reason"]
    c1 = h["c1"].pk
    assert [(r["action_pattern"], r["connection"]) for r in report.proposal] == [
        ("sandbox.get_task", c1),
        ("sandbox.list_tasks", c1),
        ("sandbox.create_task", c1),
    ]
    assert report.proposal[2]["constraints"] == report.current[1]["constraints"]
    # The role is shared: narrowed for "bot", it would deny "other"'s delete_task.
    assert report.proposal_flips == {
        "allowed_to_denied": 1,
        "denied_to_allowed": 0,
        "undetermined": 0,
    }
    assert "-  action_pattern: sandbox.delete_task\n" in report.diff()


def test_without_a_worker_every_worker_counts(history: Any) -> None:
    report = least_privilege_report(role=history["role"])
    assert report.calls == 9
    assert [u.position for u in report.unused_rules] == [4]
    assert any(r["action_pattern"] == "sandbox.delete_task" for r in report.proposal)


def url(h: Any, **query: Any) -> Any:
    base = reverse(
        "policies:least_privilege", kwargs={"org_slug": h["org"].slug, "role_id": h["role"].pk}
    )
    return base + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def test_admin_applies_the_proposal_in_one_click_and_it_is_audited(
    client: Client, history: Any, admin: User
) -> None:
    h = history
    login(client, admin)
    page = client.get(url(h, worker=h["bot"].pk))
    assert page.status_code == 200
    report = page.context["report"]
    assert "sandbox.delete_task" in page.content.decode()
    stale = client.post(url(h), {"digest": "0" * 32, "days": 30, "worker": h["bot"].pk})
    assert stale.status_code == 302
    assert h["role"].rules.count() == 4
    applied = client.post(
        url(h), {"digest": report.proposal_digest(), "days": 30, "worker": h["bot"].pk}
    )
    assert applied.status_code == 302
    rules = list(h["role"].rules.order_by("position").values_list("action_pattern", flat=True))
    assert rules == ["sandbox.get_task", "sandbox.list_tasks", "sandbox.create_task"]
    narrowed = AuditEvent.objects.get(action="role.narrowed")
    assert narrowed.metadata["worker_id"] == h["bot"].pk
    assert narrowed.actor_id == str(admin.pk)
    assert AuditEvent.objects.filter(action="role.changed", target_id=str(h["role"].pk)).exists()


def test_yaml_export_and_access(
    client: Client, history: Any, reviewer: User, member: User, outsider: User
) -> None:
    h = history
    login(client, reviewer)
    exported = client.get(url(h, worker=h["bot"].pk, format="yaml"))
    assert exported.status_code == 200
    document = yaml.safe_load(exported.content)
    assert document["name"] == "triage"
    assert len(document["rules"]) == 3
    page = client.get(url(h, worker=h["bot"].pk))
    assert (
        client.post(url(h), {"digest": page.context["report"].proposal_digest()}).status_code == 403
    )
    assert client.get(url(h, worker=999999)).status_code == 400
    login(client, member)
    assert client.get(url(h)).status_code == 403
    login(client, outsider)
    assert client.get(url(h)).status_code == 404


def test_worker_page_links_to_its_roles_reports(
    client: Client, history: Any, reviewer: User
) -> None:
    h = history
    login(client, reviewer)
    page = client.get(
        reverse("workers:detail", kwargs={"org_slug": h["org"].slug, "worker_id": h["bot"].pk})
    )
    assert page.status_code == 200
    assert url(h) + f"?worker={h['bot'].pk}" in page.content.decode()


def test_api_report_and_apply(
    client: Client, history: Any, reviewer: User, admin: User, outsider: User
) -> None:
    h = history
    api = reverse(
        "org_api:role-least-privilege", kwargs={"org_slug": h["org"].slug, "role_id": h["role"].pk}
    )
    login(client, reviewer)
    body = client.get(api, {"worker": h["bot"].pk, "days": 30}).json()
    assert body["unused_rules"] == list(
        h["role"].rules.order_by("position").values_list("pk", flat=True)[2:]
    )
    assert body["repeated_denials"][0]["count"] == 3
    digest = body["proposal"]["digest"]
    payload = {"proposal_digest": digest, "worker": h["bot"].pk}
    assert client.post(api, payload, content_type="application/json").status_code == 403
    login(client, admin)
    bad = client.post(api, {**payload, "proposal_digest": "x"}, content_type="application/json")
    assert bad.status_code == 409
    assert bad.json()["error"]["code"] == "conflict"
    done = client.post(api, payload, content_type="application/json")
    assert done.status_code == 200
    assert len(done.json()["rules"]) == 3
    login(client, outsider)
    assert client.get(api).status_code == 404


def test_apply_names_the_missing_or_misplaced_field(
    client: Client, history: Any, admin: User
) -> None:
    """Issue 22 item 6: not a bare 409 "The proposal changed" when the digest came under
    another name or the worker in the query string."""
    h = history
    api = reverse(
        "org_api:role-least-privilege", kwargs={"org_slug": h["org"].slug, "role_id": h["role"].pk}
    )
    login(client, admin)
    digest = client.get(api, {"worker": h["bot"].pk}).json()["proposal"]["digest"]

    renamed = client.post(
        api, {"digest": digest, "worker": h["bot"].pk}, content_type="application/json"
    )
    assert renamed.status_code == 400, renamed.content
    error = renamed.json()["error"]
    assert error["code"] == "invalid_input"
    assert "'digest'" in error["message"]
    assert "'proposal_digest'" in error["message"]
    assert {f["path"] for f in error["details"]["fields"]} == {"/digest", "/proposal_digest"}

    in_query = client.post(
        f"{api}?worker={h['bot'].pk}", {"proposal_digest": digest}, content_type="application/json"
    )
    assert in_query.status_code == 400, in_query.content
    error = in_query.json()["error"]
    assert "query string" in error["message"]
    assert "'worker'" in error["message"]

    stale = client.post(
        api, {"proposal_digest": "0" * 32, "worker": h["bot"].pk}, content_type="application/json"
    )
    assert stale.status_code == 409
    assert f"worker {h['bot'].pk}" in stale.json()["error"]["message"]
    assert stale.json()["error"]["details"]["proposal_digest"] == digest
    done = client.post(
        api, {"proposal_digest": digest, "worker": h["bot"].pk}, content_type="application/json"
    )
    assert done.status_code == 200, done.content
