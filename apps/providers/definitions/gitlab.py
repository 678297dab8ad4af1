"""GitLab REST API v4 (https://docs.gitlab.com/ee/api/rest/). OAuth or personal access token.

A project is named by its numeric id or its full path ("group/project"); the path
is sent percent-encoded as one segment, as GitLab expects."""

from __future__ import annotations

from apps.providers.catalog import AuthType, Provider
from apps.providers.definitions._build import (
    READ,
    WRITE,
    action_builder,
    array,
    boolean,
    enum,
    integer,
    page_size,
    string,
)

A = action_builder("gitlab")

PROJECT = string("Numeric project id or full path such as 'my-group/my-project'.", minLength=1)
ISSUE_IID = integer("The issue number within the project (the '#' number, 'iid').", minimum=1)
PAGE = integer("Page number of the results (starts at 1).", minimum=1)
READ_API = ("read_api",)
API = ("api",)

ACTIONS = (
    A(
        "list_projects",
        "List projects visible to the connected user.",
        READ,
        "GET",
        "/projects",
        params={
            "membership": boolean("Only projects the user is a member of."),
            "search": string("Only projects whose name contains this text."),
            "order_by": enum("Sort field.", ["id", "name", "created_at", "last_activity_at"]),
            "per_page": page_size(20),
            "page": PAGE,
        },
        scopes=READ_API,
    ),
    A(
        "get_project",
        "Get one project: description, default branch, visibility, web URL.",
        READ,
        "GET",
        "/projects/{project_id}",
        params={"project_id": PROJECT},
        required=("project_id",),
        scopes=READ_API,
    ),
    A(
        "list_issues",
        "List issues of a project.",
        READ,
        "GET",
        "/projects/{project_id}/issues",
        params={
            "project_id": PROJECT,
            "state": enum("Issue state.", ["opened", "closed", "all"]),
            "labels": string("Comma-separated label names; only issues with all of them."),
            "search": string("Only issues whose title or description contains this text."),
            "per_page": page_size(20),
            "page": PAGE,
        },
        required=("project_id",),
        scopes=READ_API,
    ),
    A(
        "create_issue",
        "Create an issue in a project. Returns the issue with its iid and web URL.",
        WRITE,
        "POST",
        "/projects/{project_id}/issues",
        params={
            "project_id": PROJECT,
            "title": string("Issue title.", minLength=1, maxLength=255),
            "description": string("Issue description in Markdown."),
            "labels": string("Comma-separated label names."),
            "assignee_ids": array("User ids to assign.", integer("A user id.")),
            "due_date": string("Due date, YYYY-MM-DD.", format="date"),
        },
        required=("project_id", "title"),
        scopes=API,
    ),
    A(
        "update_issue",
        "Change an issue's title, description or labels, or close/reopen it.",
        WRITE,
        "PUT",
        "/projects/{project_id}/issues/{issue_iid}",
        params={
            "project_id": PROJECT,
            "issue_iid": ISSUE_IID,
            "title": string("New title."),
            "description": string("New description in Markdown."),
            "labels": string("Comma-separated label names (replaces all labels)."),
            "state_event": enum("close or reopen the issue.", ["close", "reopen"]),
        },
        required=("project_id", "issue_iid"),
        scopes=API,
    ),
    A(
        "create_issue_note",
        "Add a comment (note) to an issue.",
        WRITE,
        "POST",
        "/projects/{project_id}/issues/{issue_iid}/notes",
        params={
            "project_id": PROJECT,
            "issue_iid": ISSUE_IID,
            "body": string("Comment text in Markdown.", minLength=1),
        },
        required=("project_id", "issue_iid", "body"),
        scopes=API,
    ),
    A(
        "list_merge_requests",
        "List merge requests of a project.",
        READ,
        "GET",
        "/projects/{project_id}/merge_requests",
        params={
            "project_id": PROJECT,
            "state": enum("Merge request state.", ["opened", "closed", "locked", "merged", "all"]),
            "per_page": page_size(20),
            "page": PAGE,
        },
        required=("project_id",),
        scopes=READ_API,
    ),
    A(
        "get_merge_request",
        "Get one merge request: title, description, branches, merge status.",
        READ,
        "GET",
        "/projects/{project_id}/merge_requests/{merge_request_iid}",
        params={
            "project_id": PROJECT,
            "merge_request_iid": integer("The merge request number ('!' number).", minimum=1),
        },
        required=("project_id", "merge_request_iid"),
        scopes=READ_API,
    ),
)

PROVIDER = Provider(
    key="gitlab",
    display_name="GitLab",
    icon="GL",
    description="Projects, issues and merge requests on GitLab.com or a self-managed GitLab.",
    auth_types=(AuthType.OAUTH2, AuthType.API_KEY),
    api_base_url="https://gitlab.com/api/v4",
    authorize_url="https://gitlab.com/oauth/authorize",
    token_url="https://gitlab.com/oauth/token",
    revocation_url="https://gitlab.com/oauth/revoke",
    userinfo_url="/user",
    userinfo_account_field="username",
    default_scopes=("read_user", "api"),
    token_endpoint_auth_method="client_secret_post",
    docs_url="https://docs.gitlab.com/ee/api/rest/",
    actions=ACTIONS,
)
