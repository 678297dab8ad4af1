"""The audit context (apps.core.audit_context): set once per request by the middleware
and the authenticators, read by the audit writer, gone when the request ends."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from apps.accounts.services import personal_token_mint
from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from apps.broker.tests.conftest import make_agent
from apps.core import audit_context
from apps.organizations.models import Organization
from apps.workers.tests.conftest import make_role

pytestmark = pytest.mark.django_db

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) ContextTest/1.0"


def test_a_dashboard_action_is_audited_with_the_signed_in_person(
    org: Organization, admin: User
) -> None:
    role = make_role(org)
    client = Client(HTTP_USER_AGENT=BROWSER, REMOTE_ADDR="198.51.100.7")
    client.force_login(admin)
    response = client.post(
        f"/o/{org.slug}/workers/new/",
        {"name": "triage-bot", "description": "", "owner": admin.pk, "default_role": role.pk},
    )
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="worker.created")
    assert (event.actor_type, event.actor_id, event.actor_label) == (
        "user",
        str(admin.pk),
        admin.get_username(),
    )
    assert (event.ip, event.user_agent) == ("198.51.100.7", BROWSER)
    assert event.request_id == response["X-Request-Id"]
    assert event.token_id == ""


def test_a_personal_token_call_is_audited_with_its_user_and_token(
    org: Organization, admin: User
) -> None:
    role = make_role(org)
    token, raw = personal_token_mint(user=admin, organization=org, name="ci")
    api = APIClient(
        HTTP_AUTHORIZATION=f"Bearer {raw}", HTTP_USER_AGENT="ci/2.1", REMOTE_ADDR="203.0.113.9"
    )
    response = api.post(
        f"/api/v1/orgs/{org.slug}/workers/",
        {"name": "ci-bot", "default_role": role.pk},
        format="json",
        HTTP_X_REQUEST_ID="build-77",
    )
    assert response.status_code == 201, response.content
    event = AuditEvent.objects.get(action="worker.created")
    assert (event.actor_type, event.actor_id) == ("user", str(admin.pk))
    assert (event.ip, event.user_agent) == ("203.0.113.9", "ci/2.1")
    assert event.request_id == response["X-Request-Id"] != "build-77"
    assert event.metadata["client_request_id"] == "build-77"
    assert event.token_id == token.public_id


def test_an_agent_call_is_audited_with_its_worker_and_token(org: Organization) -> None:
    agent = make_agent(org)
    response = APIClient().post(
        "/api/v1/actions/sandbox.list_projects/check",
        {"input": {}},
        format="json",
        HTTP_USER_AGENT="agent-sdk/0.3",
        REMOTE_ADDR="192.0.2.44",
        **agent.headers,
    )
    assert response.status_code == 200, response.content
    event = AuditEvent.objects.get(action="broker.check")
    assert (event.actor_type, event.actor_id, event.actor_label) == (
        "worker",
        str(agent.worker.pk),
        agent.worker.name,
    )
    assert (event.ip, event.user_agent) == ("192.0.2.44", "agent-sdk/0.3")
    assert event.request_id == response["X-Request-Id"]
    assert (event.worker_id, event.token_id) == (agent.worker.pk, agent.token.public_id)


def test_nothing_of_one_request_leaks_into_the_next_on_the_same_thread(
    org: Organization, admin: User
) -> None:
    role = make_role(org)
    _token, raw = personal_token_mint(user=admin, organization=org, name="ci")
    first = APIClient(
        HTTP_AUTHORIZATION=f"Bearer {raw}", HTTP_USER_AGENT="ci/2.1", REMOTE_ADDR="203.0.113.9"
    ).post(
        f"/api/v1/orgs/{org.slug}/workers/", {"name": "a", "default_role": role.pk}, format="json"
    )
    assert first.status_code == 201
    # Back to the test's own (system) context once the request is over.
    assert audit_context.current() is audit_context.SYSTEM_CONTEXT

    second = APIClient(REMOTE_ADDR="192.0.2.1").get(
        "/api/v1/whoami", HTTP_AUTHORIZATION="Bearer gry_" + "C" * 49
    )
    assert second.status_code == 401
    failed = AuditEvent.objects.get(action="auth.failed")
    assert (failed.actor_type, failed.actor_id, failed.token_id) == ("anonymous", "", "")
    assert (failed.ip, failed.user_agent) == ("192.0.2.1", "")
    assert failed.request_id == second["X-Request-Id"] != first["X-Request-Id"]
    assert "client_request_id" not in failed.metadata
    assert audit_context.current() is audit_context.SYSTEM_CONTEXT

    # Outside any request, an event is the system's.
    outside = audit_record(action="org.updated", organization=org)
    assert outside is not None
    assert (outside.actor_type, outside.ip, outside.request_id) == ("system", None, "")


def test_a_block_outside_requests_sets_its_own_context(org: Organization, admin: User) -> None:
    with audit_context.audit_context(
        audit_context.AuditContext(request_id="task-1"), **audit_context.user_actor(admin)
    ) as bound:
        assert audit_context.current() is bound
        inside = audit_record(action="role.created", organization=org)
        # A service that names the actor wins over the context.
        named = audit_record(action="role.changed", organization=org, actor_type="anonymous")
    assert inside is not None
    assert named is not None
    assert (named.actor_type, named.actor_id, named.request_id) == ("anonymous", "", "task-1")
    assert (inside.actor_type, inside.actor_id, inside.request_id) == (
        "user",
        str(admin.pk),
        "task-1",
    )
    assert audit_context.current() is audit_context.SYSTEM_CONTEXT


def test_a_request_made_inside_another_context_gives_that_context_back(
    org: Organization, admin: User
) -> None:
    """E.g. the demo-traffic seeder drives the agent API from a dashboard request."""
    agent = make_agent(org)
    with audit_context.audit_context(None, **audit_context.user_actor(admin)) as outer:
        response = APIClient().post(
            "/api/v1/actions/sandbox.list_projects/check",
            {"input": {}},
            format="json",
            **agent.headers,
        )
        assert response.status_code == 200
        assert audit_context.current() is outer
        after = audit_record(action="role.deleted", organization=org)
    assert after is not None
    assert (after.actor_type, after.actor_id, after.token_id) == ("user", str(admin.pk), "")


def _service_modules() -> Any:
    """Every app's services: apps/*/services.py, apps/*/services/*.py and the token services."""
    import importlib
    import pkgutil
    from pathlib import Path

    import apps

    root = Path(apps.__file__).parent
    names = ["apps.accounts.services"]
    for app in sorted(p for p in root.iterdir() if p.is_dir()):
        if (app / "services.py").exists():
            names.append(f"apps.{app.name}.services")
        elif (app / "services").is_dir():
            names.append(f"apps.{app.name}.services")
            names += [
                f"apps.{app.name}.services.{info.name}"
                for info in pkgutil.iter_modules([str(app / "services")])
            ]
    return [importlib.import_module(name) for name in names]


def test_no_service_takes_the_request() -> None:
    import inspect

    modules = _service_modules()
    assert {m.__name__ for m in modules} >= {
        "apps.audit.services",
        "apps.workers.services",
        "apps.connections.services.connect",
        "apps.approvals.services.decisions",
        "apps.accounts.services",
    }
    offenders, checked = [], 0
    for module in modules:
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if function.__module__ != module.__name__ or name.startswith("_"):
                continue
            checked += 1
            params = inspect.signature(inspect.unwrap(function)).parameters
            if "request" in params:
                offenders.append(f"{module.__name__}.{name}")
    assert checked > 60
    assert offenders == []


def test_one_name_for_the_acting_person() -> None:
    """`actor`, never `changed_by`, `disabled_by`, … (a model's own column may keep its name)."""
    import inspect

    retired = {"changed_by", "disabled_by", "enabled_by", "deleted_by", "revoked_by", "rolled_by"}
    offenders = []
    for module in _service_modules():
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if function.__module__ != module.__name__ or name.startswith("_"):
                continue
            params = set(inspect.signature(inspect.unwrap(function)).parameters)
            offenders += [f"{module.__name__}.{name}({p})" for p in sorted(params & retired)]
    assert offenders == []
