"""The Sandbox API: credentials, per-user data, validation and the response contract."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_application_model

from apps.sandbox.models import Project, SandboxApiKey, Task
from apps.sandbox.services import (
    sandbox_api_key_create,
    sandbox_api_key_revoke,
    sandbox_client_register,
    sandbox_seed_user_data,
)
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
API = "/sandbox/api/v1"


class Api:
    def __init__(self, credential: str) -> None:
        self.client = Client()
        self.auth: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {credential}"}

    def get(self, path: Any, **kw: Any) -> Any:
        return self.client.get(f"{API}{path}", **self.auth, **kw)

    def send(self, method: Any, path: Any, body: Any = None, raw: Any = None) -> Any:
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        return getattr(self.client, method)(
            f"{API}{path}", data=data, content_type="application/json", **self.auth
        )


@pytest.fixture
def alice() -> User:
    return UserFactory(email="alice@sandbox.test")


@pytest.fixture
def bob() -> User:
    return UserFactory(email="bob@sandbox.test")


@pytest.fixture
def alice_api(alice: User) -> Api:
    return Api(sandbox_api_key_create(user=alice, name="laptop"))


def _access_token(user: Any, *, scope: str = "read write", expires_in: int = 3600) -> Any:
    client_id, _ = sandbox_client_register(name="t", redirect_uris=["http://127.0.0.1:9/cb"])
    token = f"tok-{user.pk}-{scope.replace(' ', '-')}-{expires_in}"
    get_access_token_model().objects.create(
        user=user,
        application=get_application_model().objects.get(client_id=client_id),
        token=token,
        scope=scope,
        expires=timezone.now() + timedelta(seconds=expires_in),
    )
    return token


def test_api_key_is_stored_as_digest_only(alice: User) -> None:
    key = sandbox_api_key_create(user=alice, name="ci")
    assert key.startswith("sbx_")
    assert len(key) > 40
    row = SandboxApiKey.objects.get(user=alice)
    assert key not in row.key_digest
    assert row.last4 == key[-4:]
    assert key not in repr(row)
    assert key not in str(row)


def test_api_key_authenticates_with_both_scopes(alice_api: Api) -> None:
    me = alice_api.get("/me")
    assert me.status_code == 200
    assert me.json()["username"] == "alice@sandbox.test"
    assert me["X-Sandbox-Auth"] == "api_key"
    assert me["X-RateLimit-Remaining"] == "999"
    assert alice_api.send("post", "/projects", {"name": "Keyed"}).status_code == 201


def test_revoked_api_key_fails(alice: User) -> None:
    key = sandbox_api_key_create(user=alice, name="old")
    assert Api(key).get("/me").status_code == 200
    sandbox_api_key_revoke(user=alice, key_id=SandboxApiKey.objects.get(user=alice).pk)
    response = Api(key).get("/me")
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "X-Sandbox-Auth" not in response


@pytest.mark.parametrize(
    "header",
    [None, "Basic dXNlcjpwYXNz", "Bearer", "Bearer sbx_not-a-real-key", "Bearer not-a-token"],
)
def test_missing_or_bad_credentials_get_401_with_challenge(header: Any) -> None:
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = Client().get(f"{API}/projects", **extra)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    body = response.json()
    assert set(body) == {"error", "message"}
    assert body["message"]
    assert response["X-RateLimit-Remaining"] == "999"


def test_expired_access_token_is_rejected(alice: User) -> None:
    token = _access_token(alice, expires_in=-10)
    response = Api(token).get("/me")
    assert response.status_code == 401


def test_read_scoped_token_cannot_patch_or_delete(alice: User) -> None:
    sandbox_seed_user_data(user=alice)
    task = Task.objects.filter(project__owner=alice).first()
    api = Api(_access_token(alice, scope="read"))
    assert api.get(f"/tasks/{task.pk}").status_code == 200
    assert api.get(f"/tasks/{task.pk}")["X-Sandbox-Auth"] == "oauth"
    assert api.send("patch", f"/tasks/{task.pk}", {"done": True}).status_code == 403
    assert api.send("delete", f"/tasks/{task.pk}").status_code == 403
    task.refresh_from_db()
    assert task.done is False


def test_projects_and_tasks_round_trip(alice_api: Api) -> None:
    created = alice_api.send("post", "/projects", {"name": "  Launch  ", "description": "Q3"})
    assert created.status_code == 201
    project = created.json()
    assert set(project) == {"id", "name", "description", "created_at"}
    assert project["name"] == "Launch"

    first = alice_api.send(
        "post", f"/projects/{project['id']}/tasks", {"title": "Plan", "priority": 2}
    )
    second = alice_api.send("post", f"/projects/{project['id']}/tasks", {"title": "Do"})
    assert first.status_code == second.status_code == 201
    task = first.json()
    assert set(task) == {"id", "project_id", "title", "done", "priority", "notes", "created_at"}
    assert task["project_id"] == project["id"]
    assert task["done"] is False
    assert second.json()["priority"] == 3

    patched = alice_api.send("patch", f"/tasks/{task['id']}", {"done": True, "title": "Planned"})
    assert patched.status_code == 200
    assert patched.json()["done"] is True
    assert patched.json()["title"] == "Planned"
    assert alice_api.get(f"/tasks/{task['id']}").json()["title"] == "Planned"

    done = alice_api.get(f"/projects/{project['id']}/tasks?done=true").json()["tasks"]
    open_ = alice_api.get(f"/projects/{project['id']}/tasks?done=false").json()["tasks"]
    every = alice_api.get(f"/projects/{project['id']}/tasks").json()["tasks"]
    assert [t["title"] for t in done] == ["Planned"]
    assert [t["title"] for t in open_] == ["Do"]
    assert len(every) == 2

    deleted = alice_api.send("delete", f"/tasks/{task['id']}")
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert alice_api.get(f"/tasks/{task['id']}").status_code == 404


@pytest.mark.usefixtures("alice")
def test_another_users_data_is_not_found(bob: User, alice_api: Api) -> None:
    sandbox_seed_user_data(user=bob)
    bobs_project = Project.objects.filter(owner=bob).first()
    bobs_task = Task.objects.filter(project__owner=bob).first()

    assert alice_api.get("/projects").json() == {"projects": []}
    assert alice_api.get(f"/projects/{bobs_project.pk}/tasks").status_code == 404
    create = alice_api.send("post", f"/projects/{bobs_project.pk}/tasks", {"title": "sneaky"})
    assert create.status_code == 404
    assert alice_api.get(f"/tasks/{bobs_task.pk}").status_code == 404
    assert alice_api.send("patch", f"/tasks/{bobs_task.pk}", {"done": True}).status_code == 404
    assert alice_api.send("delete", f"/tasks/{bobs_task.pk}").status_code == 404
    body = alice_api.get(f"/tasks/{bobs_task.pk}").json()
    assert body["error"] == "not_found"

    bobs_task.refresh_from_db()
    assert bobs_task.done is False
    assert Task.objects.filter(project__owner=bob, title="sneaky").count() == 0

    # An OAuth token of Bob's sees exactly Bob's data.
    bob_api = Api(_access_token(bob))
    names = [p["name"] for p in bob_api.get("/projects").json()["projects"]]
    assert names == ["Website relaunch", "Customer onboarding"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/projects", {}, "name"),
        ("/projects", {"name": "   "}, "name"),
        ("/projects", {"name": 5}, "name"),
        ("/projects", {"name": "x" * 201}, "name"),
        ("/projects", {"name": "ok", "owner": 2}, "owner"),
        ("/projects/{pid}/tasks", {"title": "t", "priority": 0}, "priority"),
        ("/projects/{pid}/tasks", {"title": "t", "priority": 6}, "priority"),
        ("/projects/{pid}/tasks", {"title": "t", "priority": "2"}, "priority"),
        ("/projects/{pid}/tasks", {"title": "t", "priority": True}, "priority"),
        ("/projects/{pid}/tasks", {"priority": 2}, "title"),
        ("/projects/{pid}/tasks", {"title": "t", "notes": ["x"]}, "notes"),
    ],
)
def test_create_validation_errors_name_the_field(
    alice: User, alice_api: Api, path: str, body: Any, field: str
) -> None:
    project = Project.objects.create(owner=alice, name="P")
    response = alice_api.send("post", path.format(pid=project.pk), body)
    assert response.status_code == 400
    payload = response.json()
    assert payload["error"] == "invalid_request"
    assert field in payload["fields"]
    assert Project.objects.filter(owner=alice).count() == 1
    assert Task.objects.filter(project=project).count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"done": "yes"}, "done"),
        ({"title": ""}, "title"),
        ({"priority": 9}, "priority"),
        ({"project_id": 3}, "project_id"),
    ],
)
def test_patch_validation_errors(alice: User, alice_api: Api, body: Any, field: str) -> None:
    task = Task.objects.create(project=Project.objects.create(owner=alice, name="P"), title="t")
    response = alice_api.send("patch", f"/tasks/{task.pk}", body)
    assert response.status_code == 400
    assert field in response.json()["fields"]
    task.refresh_from_db()
    assert (task.title, task.done, task.priority) == ("t", False, 3)


def test_empty_patch_and_bad_json_and_bad_filter_are_400(alice: User, alice_api: Api) -> None:
    task = Task.objects.create(project=Project.objects.create(owner=alice, name="P"), title="t")
    empty = alice_api.send("patch", f"/tasks/{task.pk}", {})
    assert empty.status_code == 400
    assert "at least one" in empty.json()["message"]
    bad_json = alice_api.send("post", "/projects", raw="{not json")
    assert bad_json.status_code == 400
    assert bad_json.json()["error"] == "invalid_json"
    not_object = alice_api.send("post", "/projects", raw="[1, 2]")
    assert not_object.status_code == 400
    assert not_object.json()["error"] == "invalid_json"
    bad_filter = alice_api.get(f"/projects/{task.project_id}/tasks?done=maybe")
    assert bad_filter.status_code == 400
    assert "done" in bad_filter.json()["fields"]


def test_unknown_endpoint_and_wrong_method_answer_json(alice_api: Api) -> None:
    missing = alice_api.get("/nope")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    wrong = alice_api.send("put", "/projects", {"name": "x"})
    assert wrong.status_code == 405
    assert wrong.json()["error"] == "method_not_allowed"
    assert "POST" in wrong["Allow"]


def test_api_needs_no_csrf_token(alice: User) -> None:
    key = sandbox_api_key_create(user=alice, name="k")
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        f"{API}/projects",
        data=json.dumps({"name": "no csrf"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )
    assert response.status_code == 201


def test_session_login_alone_does_not_authenticate_the_api(alice: User) -> None:
    client = Client()
    client.force_login(alice)
    assert client.get(f"{API}/me").status_code == 401


def test_seed_is_idempotent(alice: User) -> None:
    sandbox_seed_user_data(user=alice)
    sandbox_seed_user_data(user=alice)
    assert Project.objects.filter(owner=alice).count() == 2
    assert Task.objects.filter(project__owner=alice).count() == 5
