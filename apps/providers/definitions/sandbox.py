"""Sandbox: Grantry's offline demo SaaS (apps/sandbox), projects and tasks.

Its URLs depend on where Grantry runs, so the registry builds this provider at
lookup time from `settings.GRANTRY_SANDBOX_URL`."""

from __future__ import annotations

from apps.providers.catalog import AuthType, Placement, Provider
from apps.providers.definitions._build import (
    READ,
    WRITE,
    action_builder,
    boolean,
    integer,
    string,
)

A = action_builder("sandbox")

PROJECT_ID = integer("Numeric id of the project (from sandbox.list_projects).", minimum=1)
TASK_ID = integer("Numeric id of the task (from sandbox.list_tasks).", minimum=1)
PRIORITY = integer("Priority from 1 (highest) to 5 (lowest).", minimum=1, maximum=5)

ACTIONS = (
    A(
        "list_projects",
        "List the projects of the connected Sandbox account, with their ids, names and "
        "descriptions.",
        READ,
        "GET",
        "/projects",
        scopes=("read",),
    ),
    A(
        "create_project",
        "Create a new project in the Sandbox account. Returns the created project with its id.",
        WRITE,
        "POST",
        "/projects",
        params={
            "name": string("Project name, shown in lists.", minLength=1, maxLength=200),
            "description": string("Optional longer description of the project.", maxLength=2000),
        },
        required=("name",),
        scopes=("write",),
    ),
    A(
        "list_tasks",
        "List the tasks of one project. Optionally only open (done=false) or finished "
        "(done=true) tasks.",
        READ,
        "GET",
        "/projects/{project_id}/tasks",
        params={
            "project_id": PROJECT_ID,
            "done": boolean("Only tasks with this done state; leave out for all tasks."),
        },
        required=("project_id",),
        scopes=("read",),
    ),
    A(
        "get_task",
        "Get one task by id: title, done state, priority, notes and project.",
        READ,
        "GET",
        "/tasks/{task_id}",
        params={"task_id": TASK_ID},
        required=("task_id",),
        scopes=("read",),
    ),
    A(
        "create_task",
        "Create a task in a project. Returns the created task with its id.",
        WRITE,
        "POST",
        "/projects/{project_id}/tasks",
        params={
            "project_id": PROJECT_ID,
            "title": string("Short task title.", minLength=1, maxLength=200),
            "priority": PRIORITY,
            "notes": string("Optional free-text notes.", maxLength=5000),
        },
        required=("project_id", "title"),
        scopes=("write",),
    ),
    A(
        "update_task",
        "Change a task's title, done state or priority. Only the given fields change.",
        WRITE,
        "PATCH",
        "/tasks/{task_id}",
        params={
            "task_id": TASK_ID,
            "title": string("New title.", minLength=1, maxLength=200),
            "done": boolean("true marks the task finished, false reopens it."),
            "priority": PRIORITY,
        },
        required=("task_id",),
        scopes=("write",),
    ),
    A(
        "delete_task",
        "Delete a task permanently. This cannot be undone.",
        WRITE,
        "DELETE",
        "/tasks/{task_id}",
        params={"task_id": TASK_ID},
        required=("task_id",),
        scopes=("write",),
    ),
)


def sandbox_provider(base_url: str) -> Provider:
    """The Sandbox provider for a Sandbox mounted at `base_url` (no trailing slash)."""
    base = base_url.rstrip("/")
    return Provider(
        key="sandbox",
        display_name="Sandbox",
        icon="SB",
        description="Grantry's offline demo SaaS: projects and tasks.",
        auth_types=(AuthType.OAUTH2, AuthType.API_KEY),
        api_base_url=f"{base}/api/v1",
        placement=Placement.BEARER,
        authorize_url=f"{base}/o/authorize/",
        token_url=f"{base}/o/token/",
        revocation_url=f"{base}/o/revoke_token/",
        userinfo_url=f"{base}/api/v1/me",
        userinfo_account_field="username",
        default_scopes=("read", "write"),
        docs_url=f"{base}/",
        actions=ACTIONS,
    )
