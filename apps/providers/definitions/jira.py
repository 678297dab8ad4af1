"""Jira Cloud REST API via Atlassian OAuth 2.0 (3LO).

Calls go to https://api.atlassian.com/ex/jira/{cloud_id}; the connection stores
the site's cloud id (from GET https://api.atlassian.com/oauth/token/accessible-resources)
as the `cloud_id` base URL parameter. Issues are created through API v2 so that
descriptions and comments can be plain text (v3 needs Atlassian Document Format)."""

from __future__ import annotations

from apps.providers.catalog import AuthType, Provider
from apps.providers.definitions._build import (
    READ,
    WRITE,
    action_builder,
    array,
    integer,
    string,
)

A = action_builder("jira")

ISSUE_KEY = string("Issue key such as 'PROJ-123' (or the numeric issue id).", minLength=1)
READ_WORK = ("read:jira-work",)
WRITE_WORK = ("write:jira-work",)

ACTIONS = (
    A(
        "search_issues",
        'Search issues with JQL, e.g. \'project = PROJ AND status = "In Progress" '
        "ORDER BY updated DESC'.",
        READ,
        "GET",
        "/rest/api/3/search/jql",
        params={
            "jql": string("The JQL query.", minLength=1),
            "fields": string("Comma-separated fields to return, e.g. 'summary,status,assignee'."),
            "maxResults": integer("How many issues (1-100).", minimum=1, maximum=100),
            "nextPageToken": string("nextPageToken from the previous page."),
        },
        required=("jql",),
        scopes=READ_WORK,
    ),
    A(
        "get_issue",
        "Get one issue: summary, status, assignee, description and other fields.",
        READ,
        "GET",
        "/rest/api/3/issue/{issue_key}",
        params={
            "issue_key": ISSUE_KEY,
            "fields": string("Comma-separated fields to return (default all)."),
        },
        required=("issue_key",),
        scopes=READ_WORK,
    ),
    A(
        "list_projects",
        "List Jira projects visible to the user, with keys and names.",
        READ,
        "GET",
        "/rest/api/3/project/search",
        params={
            "query": string("Only projects whose key or name contains this text."),
            "maxResults": integer("How many projects (1-100).", minimum=1, maximum=100),
            "startAt": integer("Index of the first result (for paging).", minimum=0),
        },
        scopes=READ_WORK,
    ),
    A(
        "create_issue",
        "Create an issue in a project. Returns its key.",
        WRITE,
        "POST",
        "/rest/api/2/issue",
        params={
            "project_key": string("Project key, e.g. 'PROJ'.", minLength=1),
            "summary": string("One-line summary.", minLength=1, maxLength=255),
            "issue_type": string("Issue type name, e.g. 'Task', 'Bug' or 'Story'.", minLength=1),
            "description": string("Plain-text description."),
            "labels": array("Labels (no spaces).", string("A label.")),
        },
        required=("project_key", "summary", "issue_type"),
        body_template={
            "fields": {
                "project": {"key": "$input.project_key"},
                "summary": "$input.summary",
                "issuetype": {"name": "$input.issue_type"},
                "description": "$input.description",
                "labels": "$input.labels",
            }
        },
        scopes=WRITE_WORK,
    ),
    A(
        "add_comment",
        "Add a plain-text comment to an issue.",
        WRITE,
        "POST",
        "/rest/api/2/issue/{issue_key}/comment",
        params={"issue_key": ISSUE_KEY, "body": string("Comment text.", minLength=1)},
        required=("issue_key", "body"),
        scopes=WRITE_WORK,
    ),
    A(
        "list_transitions",
        "List the workflow transitions available for an issue (ids and target statuses).",
        READ,
        "GET",
        "/rest/api/3/issue/{issue_key}/transitions",
        params={"issue_key": ISSUE_KEY},
        required=("issue_key",),
        scopes=READ_WORK,
    ),
    A(
        "transition_issue",
        "Move an issue through its workflow (e.g. to Done) with a transition id from "
        "jira.list_transitions.",
        WRITE,
        "POST",
        "/rest/api/3/issue/{issue_key}/transitions",
        params={"issue_key": ISSUE_KEY, "transition_id": string("Transition id.", minLength=1)},
        required=("issue_key", "transition_id"),
        body_template={"transition": {"id": "$input.transition_id"}},
        scopes=WRITE_WORK,
    ),
)

PROVIDER = Provider(
    key="jira",
    display_name="Jira (Atlassian)",
    icon="JI",
    description="Jira Cloud issues and projects.",
    auth_types=(AuthType.OAUTH2,),
    api_base_url="https://api.atlassian.com/ex/jira/{cloud_id}",
    base_url_params=("cloud_id",),
    authorize_url="https://auth.atlassian.com/authorize",
    token_url="https://auth.atlassian.com/oauth/token",
    userinfo_url="https://api.atlassian.com/me",
    userinfo_account_field="email",
    default_scopes=(
        "read:jira-work",
        "write:jira-work",
        "read:jira-user",
        "read:me",
        "offline_access",
    ),
    authorize_params={"audience": "api.atlassian.com", "prompt": "consent"},
    token_endpoint_auth_method="client_secret_post",
    docs_url="https://developer.atlassian.com/cloud/jira/platform/rest/v3/",
    actions=ACTIONS,
)
