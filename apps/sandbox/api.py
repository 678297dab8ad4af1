"""The Sandbox's JSON API (/sandbox/api/v1): projects and tasks per sandbox user.

Errors answer {"error": "<code>", "message": "<what to do>"} (plus "fields" for
validation errors), the shape of the outside SaaS the Sandbox stands in for.
Every response carries X-Sandbox-Auth (which credential was used, once known)
and X-RateLimit-Remaining."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from apps.sandbox import services
from apps.sandbox.auth import Caller, SandboxAuthError, authenticate
from apps.sandbox.models import Project, Task

RATE_LIMIT_REMAINING = "999"


class SandboxAPIError(Exception):
    def __init__(
        self, status: int, code: str, message: str, fields: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or {}


def _error(
    status: int, code: str, message: str, fields: dict[str, str] | None = None
) -> JsonResponse:
    body: dict[str, Any] = {"error": code, "message": message}
    if fields:
        body["fields"] = fields
    return JsonResponse(body, status=status)


@method_decorator(csrf_exempt, name="dispatch")
class SandboxAPIView(View):
    """Authenticates the bearer credential, checks the scope (read for GET,
    write otherwise) and turns errors into the Sandbox's JSON shape."""

    caller: Caller

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = self._dispatch(request, *args, **kwargs)
        response["X-RateLimit-Remaining"] = RATE_LIMIT_REMAINING
        response["Cache-Control"] = "no-store"
        caller = getattr(self, "caller", None)
        if caller is not None:
            response["X-Sandbox-Auth"] = caller.kind
        return response

    def _dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        method = request.method.lower() if request.method else ""
        handler: Callable[..., HttpResponse] | None = getattr(self, method, None)
        if method not in self.http_method_names or handler is None or method == "options":
            allowed = ", ".join(
                m.upper() for m in ("get", "post", "patch", "delete") if hasattr(self, m)
            )
            response = _error(
                405,
                "method_not_allowed",
                f"{request.method} is not allowed here. Allowed: {allowed}.",
            )
            response["Allow"] = allowed
            return response
        try:
            self.caller = authenticate(request)
            self.caller.require_scope("read" if method in ("get", "head") else "write")
            return handler(request, *args, **kwargs)
        except SandboxAuthError as exc:
            response = _error(exc.status, exc.code, exc.message)
            if exc.status == 401:
                response["WWW-Authenticate"] = (
                    f'Bearer realm="sandbox", error="{exc.code}"'
                    if exc.code == "invalid_token"
                    else 'Bearer realm="sandbox"'
                )
            elif exc.code == "insufficient_scope":
                needed = "read" if method in ("get", "head") else "write"
                response["WWW-Authenticate"] = (
                    f'Bearer realm="sandbox", error="insufficient_scope", scope="{needed}"'
                )
            return response
        except SandboxAPIError as exc:
            return _error(exc.status, exc.code, exc.message, exc.fields)

    # --- helpers for subclasses -------------------------------------------------

    def json_body(self, request: HttpRequest) -> dict[str, Any]:
        if not request.body:
            return {}
        try:
            body = json.loads(request.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SandboxAPIError(
                400, "invalid_json", "The request body is not valid JSON."
            ) from exc
        if not isinstance(body, dict):
            raise SandboxAPIError(400, "invalid_json", "The request body must be a JSON object.")
        return body

    def own_project(self, project_id: int) -> Project:
        project = Project.objects.filter(owner=self.caller.user, pk=project_id).first()
        if project is None:
            raise SandboxAPIError(404, "not_found", f"Project {project_id} does not exist.")
        return project

    def own_task(self, task_id: int) -> Task:
        task = (
            Task.objects.select_related("project")
            .filter(project__owner=self.caller.user, pk=task_id)
            .first()
        )
        if task is None:
            raise SandboxAPIError(404, "not_found", f"Task {task_id} does not exist.")
        return task


class _Validator:
    """Collects field errors so one 400 names every problem at once."""

    def __init__(self, body: dict[str, Any], allowed: set[str]) -> None:
        self.body = body
        self.errors: dict[str, str] = {
            name: f"Unknown field. Allowed fields: {', '.join(sorted(allowed))}."
            for name in body
            if name not in allowed
        }
        self.values: dict[str, Any] = {}

    def text(self, name: str, *, required: bool, max_length: int) -> None:
        if name not in self.body:
            if required:
                self.errors[name] = "This field is required."
            return
        value = self.body[name]
        if not isinstance(value, str):
            self.errors[name] = "Must be a string."
        elif required and not value.strip():
            self.errors[name] = "Must not be empty."
        elif len(value) > max_length:
            self.errors[name] = f"Must be at most {max_length} characters."
        else:
            self.values[name] = value.strip() if required else value

    def priority(self) -> None:
        if "priority" not in self.body:
            return
        value = self.body["priority"]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
            self.errors["priority"] = "Must be an integer from 1 (highest) to 5 (lowest)."
        else:
            self.values["priority"] = value

    def boolean(self, name: str) -> None:
        if name not in self.body:
            return
        if not isinstance(self.body[name], bool):
            self.errors[name] = "Must be true or false."
        else:
            self.values[name] = self.body[name]

    def result(self) -> dict[str, Any]:
        if self.errors:
            raise SandboxAPIError(400, "invalid_request", "Some fields are not valid.", self.errors)
        return self.values


class MeView(SandboxAPIView):
    def get(self, _request: HttpRequest) -> HttpResponse:
        user = self.caller.user
        return JsonResponse(
            {"id": user.pk, "username": user.get_username(), "email": getattr(user, "email", "")}
        )


class ProjectListView(SandboxAPIView):
    def get(self, _request: HttpRequest) -> HttpResponse:
        projects = Project.objects.filter(owner=self.caller.user)
        return JsonResponse({"projects": [p.as_json() for p in projects]})

    def post(self, request: HttpRequest) -> HttpResponse:
        check = _Validator(self.json_body(request), {"name", "description"})
        check.text("name", required=True, max_length=200)
        check.text("description", required=False, max_length=5000)
        values = check.result()
        project = services.sandbox_project_create(owner=self.caller.user, **values)
        return JsonResponse(project.as_json(), status=201)


class TaskListView(SandboxAPIView):
    def get(self, request: HttpRequest, project_id: int) -> HttpResponse:
        project = self.own_project(project_id)
        tasks = project.tasks.all()
        done = request.GET.get("done")
        if done is not None:
            if done.lower() not in ("true", "false"):
                raise SandboxAPIError(
                    400,
                    "invalid_request",
                    "The 'done' filter must be true or false.",
                    {"done": "Must be true or false."},
                )
            tasks = tasks.filter(done=done.lower() == "true")
        return JsonResponse({"tasks": [t.as_json() for t in tasks]})

    def post(self, request: HttpRequest, project_id: int) -> HttpResponse:
        project = self.own_project(project_id)
        check = _Validator(self.json_body(request), {"title", "priority", "notes"})
        check.text("title", required=True, max_length=300)
        check.priority()
        check.text("notes", required=False, max_length=5000)
        task = services.sandbox_task_create(project=project, **check.result())
        return JsonResponse(task.as_json(), status=201)


class TaskDetailView(SandboxAPIView):
    def get(self, _request: HttpRequest, task_id: int) -> HttpResponse:
        return JsonResponse(self.own_task(task_id).as_json())

    def patch(self, request: HttpRequest, task_id: int) -> HttpResponse:
        task = self.own_task(task_id)
        check = _Validator(self.json_body(request), {"title", "done", "priority"})
        check.text("title", required=False, max_length=300)
        if "title" in check.values and not check.values["title"].strip():
            check.errors["title"] = "Must not be empty."
        check.boolean("done")
        check.priority()
        changes = check.result()
        if not changes:
            raise SandboxAPIError(
                400, "invalid_request", "Send at least one of: title, done, priority."
            )
        task = services.sandbox_task_update(task=task, changes=changes)
        return JsonResponse(task.as_json())

    def delete(self, _request: HttpRequest, task_id: int) -> HttpResponse:
        services.sandbox_task_delete(task=self.own_task(task_id))
        return HttpResponse(status=204)


class NotFoundView(SandboxAPIView):
    """Unknown API paths still answer in the Sandbox's JSON shape."""

    def get(self, _request: HttpRequest, rest: str) -> HttpResponse:
        raise SandboxAPIError(404, "not_found", f"No API endpoint at /{rest}.")

    post = patch = delete = get
