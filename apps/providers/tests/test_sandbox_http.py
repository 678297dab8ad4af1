"""The Sandbox definition against the real Sandbox over HTTP.

Every sandbox action is built with build_request() and sent to the running
Sandbox (live_server) exactly as prepared; the credential is placed the way the
provider definition says (custody does this in production)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.test import override_settings
from pytest_django.live_server_helper import LiveServer

from apps.providers.catalog import Provider
from apps.providers.registry import build_request, get_action, get_provider
from apps.sandbox.services import sandbox_api_key_create
from tests.factories import UserFactory


@pytest.fixture
def sandbox(live_server: LiveServer) -> Iterator[Provider]:
    with override_settings(
        GRANTRY_SANDBOX_URL=f"{live_server.url}/sandbox", GRANTRY_SANDBOX_ENABLED=True
    ):
        yield get_provider("sandbox")


def send(http: Any, provider: Any, name: Any, data: Any) -> Any:
    prepared = build_request(provider, get_action(name), data)
    return http.request(
        prepared.method,
        prepared.url,
        params=prepared.query,
        json=prepared.json_body,
        headers=prepared.headers,
    )


@pytest.mark.usefixtures("transactional_db")
def test_every_sandbox_action_works_against_the_sandbox(sandbox: Provider) -> None:
    user = UserFactory(email="agent-owner@acme.test")
    key = sandbox_api_key_create(user=user, name="catalog test")
    assert sandbox.placement == "bearer"
    headers = {"Authorization": f"{sandbox.header_prefix}{key}"}
    with httpx.Client(headers=headers, timeout=10, follow_redirects=False) as http:
        me = http.get(sandbox.userinfo_url)
        assert me.status_code == 200
        assert me.json()[sandbox.userinfo_account_field] == user.username

        project = send(
            http, sandbox, "sandbox.create_project", {"name": "Launch", "description": "Q3"}
        )
        assert project.status_code == 201, project.text
        project_id = project.json()["id"]
        listed = send(http, sandbox, "sandbox.list_projects", {}).json()["projects"]
        assert project_id in [p["id"] for p in listed]

        task = send(
            http,
            sandbox,
            "sandbox.create_task",
            {"project_id": project_id, "title": "Write copy", "priority": 2},
        )
        assert task.status_code == 201, task.text
        task_id = task.json()["id"]
        assert task.json()["priority"] == 2

        open_tasks = send(
            http, sandbox, "sandbox.list_tasks", {"project_id": project_id, "done": False}
        ).json()["tasks"]
        assert [t["id"] for t in open_tasks] == [task_id]

        updated = send(http, sandbox, "sandbox.update_task", {"task_id": task_id, "done": True})
        assert updated.status_code == 200
        assert updated.json()["done"] is True
        done = send(
            http, sandbox, "sandbox.list_tasks", {"project_id": project_id, "done": True}
        ).json()["tasks"]
        assert [t["id"] for t in done] == [task_id]
        assert (
            send(
                http, sandbox, "sandbox.list_tasks", {"project_id": project_id, "done": False}
            ).json()["tasks"]
            == []
        )

        fetched = send(http, sandbox, "sandbox.get_task", {"task_id": task_id})
        assert fetched.json()["title"] == "Write copy"
        assert send(http, sandbox, "sandbox.delete_task", {"task_id": task_id}).status_code == 204
        assert send(http, sandbox, "sandbox.get_task", {"task_id": task_id}).status_code == 404
