"""Asana API 1.0 (https://developers.asana.com/reference). OAuth or a personal access
token. Asana wraps request bodies in {"data": …}."""

from __future__ import annotations

from apps.providers.catalog import AuthType, Provider
from apps.providers.definitions._build import (
    READ,
    WRITE,
    action_builder,
    array,
    boolean,
    integer,
    string,
)

A = action_builder("asana")

GID = r"^[0-9]+$"
TASK_GID = string("Task gid (numeric string).", pattern=GID)
WORKSPACE = string("Workspace gid (from asana.list_workspaces).", pattern=GID)
LIMIT = integer("How many results per page (1-100).", minimum=1, maximum=100)
OFFSET = string("next_page.offset from the previous page.")
OPT_FIELDS = string("Comma-separated extra fields, e.g. 'name,completed,due_on,assignee.name'.")
DATA = {"data": "$input"}

ACTIONS = (
    A(
        "list_workspaces",
        "List the workspaces and organizations the user belongs to.",
        READ,
        "GET",
        "/workspaces",
        params={"limit": LIMIT, "offset": OFFSET},
        scopes=("workspaces:read",),
    ),
    A(
        "list_projects",
        "List projects in a workspace.",
        READ,
        "GET",
        "/projects",
        params={
            "workspace": WORKSPACE,
            "archived": boolean("Only archived (true) or active (false) projects."),
            "limit": LIMIT,
            "offset": OFFSET,
        },
        required=("workspace",),
        scopes=("projects:read",),
    ),
    A(
        "list_tasks",
        "List tasks of a project, or tasks assigned to a user in a workspace (give "
        "either project, or assignee together with workspace).",
        READ,
        "GET",
        "/tasks",
        params={
            "project": string("Project gid.", pattern=GID),
            "assignee": string("User gid or 'me' (needs workspace)."),
            "workspace": WORKSPACE,
            "completed_since": string(
                "Only tasks incomplete or completed after this time; 'now' for incomplete only."
            ),
            "opt_fields": OPT_FIELDS,
            "limit": LIMIT,
            "offset": OFFSET,
        },
        scopes=("tasks:read",),
    ),
    A(
        "get_task",
        "Get one task: name, notes, assignee, due date, completion, projects.",
        READ,
        "GET",
        "/tasks/{task_gid}",
        params={"task_gid": TASK_GID, "opt_fields": OPT_FIELDS},
        required=("task_gid",),
        scopes=("tasks:read",),
    ),
    A(
        "create_task",
        "Create a task in a project (or in a workspace's My Tasks).",
        WRITE,
        "POST",
        "/tasks",
        params={
            "name": string("Task name.", minLength=1),
            "notes": string("Plain-text description."),
            "projects": array(
                "Project gids to add the task to.", string("A project gid.", pattern=GID)
            ),
            "workspace": WORKSPACE,
            "assignee": string("User gid, email or 'me'."),
            "due_on": string("Due date, YYYY-MM-DD.", format="date"),
        },
        required=("name",),
        body_template=DATA,
        scopes=("tasks:write",),
    ),
    A(
        "update_task",
        "Change a task: rename, edit notes, reassign, set due date or complete it.",
        WRITE,
        "PUT",
        "/tasks/{task_gid}",
        params={
            "task_gid": TASK_GID,
            "name": string("New name."),
            "notes": string("New description (replaces the old one)."),
            "completed": boolean("true completes the task, false reopens it."),
            "assignee": string("User gid, email or 'me'."),
            "due_on": string("Due date, YYYY-MM-DD.", format="date"),
        },
        required=("task_gid",),
        body_template=DATA,
        scopes=("tasks:write",),
    ),
    A(
        "add_comment",
        "Add a comment to a task.",
        WRITE,
        "POST",
        "/tasks/{task_gid}/stories",
        params={"task_gid": TASK_GID, "text": string("Comment text.", minLength=1)},
        required=("task_gid", "text"),
        body_template=DATA,
        scopes=("stories:write",),
    ),
)

PROVIDER = Provider(
    key="asana",
    display_name="Asana",
    icon="AS",
    description="Asana workspaces, projects and tasks.",
    auth_types=(AuthType.OAUTH2, AuthType.API_KEY),
    api_base_url="https://app.asana.com/api/1.0",
    authorize_url="https://app.asana.com/-/oauth_authorize",
    token_url="https://app.asana.com/-/oauth_token",
    revocation_url="https://app.asana.com/-/oauth_revoke",
    userinfo_url="/users/me",
    userinfo_account_field="data.email",
    default_scopes=(
        "workspaces:read",
        "projects:read",
        "tasks:read",
        "tasks:write",
        "stories:write",
        "users:read",
    ),
    token_endpoint_auth_method="client_secret_post",
    docs_url="https://developers.asana.com/reference",
    actions=ACTIONS,
)
