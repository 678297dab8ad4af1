"""GitHub REST API (https://docs.github.com/en/rest). OAuth app or personal access token.

GitHub's token revocation (DELETE /applications/{client_id}/token, the OAuth app's
client id and secret as HTTP Basic) is not RFC 7009: see `Revocation.CLIENT_BASIC_JSON`.
GitHub Enterprise: override the base, OAuth and revocation URLs."""

from __future__ import annotations

from apps.providers.catalog import AuthType, Provider, Revocation
from apps.providers.definitions._build import (
    READ,
    WRITE,
    action_builder,
    array,
    enum,
    integer,
    page_size,
    string,
)

A = action_builder("github")

OWNER = string("Account or organization that owns the repository, e.g. 'octocat'.")
REPO = string("Repository name without the owner, e.g. 'hello-world'.")
ISSUE_NUMBER = integer("The issue or pull request number shown after '#'.", minimum=1)
PAGE = integer("Page number of the results (starts at 1).", minimum=1)
REPO_SCOPE = ("repo",)

ACTIONS = (
    A(
        "get_authenticated_user",
        "Get the GitHub user this connection acts as (login, name, profile).",
        READ,
        "GET",
        "/user",
        scopes=("read:user",),
    ),
    A(
        "list_repos",
        "List repositories the connected user can access, most recently updated first by default.",
        READ,
        "GET",
        "/user/repos",
        params={
            "visibility": enum(
                "Only repositories with this visibility.", ["all", "public", "private"]
            ),
            "sort": enum("Sort field.", ["created", "updated", "pushed", "full_name"]),
            "per_page": page_size(),
            "page": PAGE,
        },
        scopes=REPO_SCOPE,
    ),
    A(
        "get_repo",
        "Get one repository: description, default branch, visibility, open issue count.",
        READ,
        "GET",
        "/repos/{owner}/{repo}",
        params={"owner": OWNER, "repo": REPO},
        required=("owner", "repo"),
        scopes=REPO_SCOPE,
    ),
    A(
        "list_issues",
        "List issues of a repository (GitHub also returns pull requests here; they carry "
        "a 'pull_request' key).",
        READ,
        "GET",
        "/repos/{owner}/{repo}/issues",
        params={
            "owner": OWNER,
            "repo": REPO,
            "state": enum("Issue state to list (default open).", ["open", "closed", "all"]),
            "labels": string("Comma-separated label names; only issues with all of them."),
            "assignee": string("Login of the assignee, 'none' or '*'."),
            "since": string(
                "Only issues updated at or after this ISO 8601 time.", format="date-time"
            ),
            "per_page": page_size(),
            "page": PAGE,
        },
        required=("owner", "repo"),
        scopes=REPO_SCOPE,
    ),
    A(
        "get_issue",
        "Get one issue with its title, body, state, labels and assignees.",
        READ,
        "GET",
        "/repos/{owner}/{repo}/issues/{issue_number}",
        params={"owner": OWNER, "repo": REPO, "issue_number": ISSUE_NUMBER},
        required=("owner", "repo", "issue_number"),
        scopes=REPO_SCOPE,
    ),
    A(
        "create_issue",
        "Open a new issue in a repository. Returns the issue with its number and URL.",
        WRITE,
        "POST",
        "/repos/{owner}/{repo}/issues",
        params={
            "owner": OWNER,
            "repo": REPO,
            "title": string("Issue title.", minLength=1, maxLength=256),
            "body": string("Issue text in GitHub Markdown."),
            "labels": array("Label names to add.", string("A label name.")),
            "assignees": array("Logins to assign.", string("A GitHub login.")),
        },
        required=("owner", "repo", "title"),
        scopes=REPO_SCOPE,
    ),
    A(
        "update_issue",
        "Change an issue: title, body, labels, assignees, or close/reopen it.",
        WRITE,
        "PATCH",
        "/repos/{owner}/{repo}/issues/{issue_number}",
        params={
            "owner": OWNER,
            "repo": REPO,
            "issue_number": ISSUE_NUMBER,
            "title": string("New title."),
            "body": string("New body in Markdown (replaces the old one)."),
            "state": enum("open or closed.", ["open", "closed"]),
            "state_reason": enum(
                "Why the state changed.", ["completed", "not_planned", "reopened"]
            ),
            "labels": array("Replace all labels with these.", string("A label name.")),
            "assignees": array("Replace all assignees with these.", string("A GitHub login.")),
        },
        required=("owner", "repo", "issue_number"),
        scopes=REPO_SCOPE,
    ),
    A(
        "create_issue_comment",
        "Add a comment to an issue or pull request.",
        WRITE,
        "POST",
        "/repos/{owner}/{repo}/issues/{issue_number}/comments",
        params={
            "owner": OWNER,
            "repo": REPO,
            "issue_number": ISSUE_NUMBER,
            "body": string("Comment text in Markdown.", minLength=1),
        },
        required=("owner", "repo", "issue_number", "body"),
        scopes=REPO_SCOPE,
    ),
    A(
        "list_issue_comments",
        "List the comments on an issue or pull request, oldest first.",
        READ,
        "GET",
        "/repos/{owner}/{repo}/issues/{issue_number}/comments",
        params={
            "owner": OWNER,
            "repo": REPO,
            "issue_number": ISSUE_NUMBER,
            "per_page": page_size(),
            "page": PAGE,
        },
        required=("owner", "repo", "issue_number"),
        scopes=REPO_SCOPE,
    ),
    A(
        "list_pull_requests",
        "List pull requests of a repository.",
        READ,
        "GET",
        "/repos/{owner}/{repo}/pulls",
        params={
            "owner": OWNER,
            "repo": REPO,
            "state": enum("Pull request state (default open).", ["open", "closed", "all"]),
            "base": string("Only pull requests into this branch."),
            "per_page": page_size(),
            "page": PAGE,
        },
        required=("owner", "repo"),
        scopes=REPO_SCOPE,
    ),
    A(
        "get_pull_request",
        "Get one pull request: title, body, branches, mergeability and review state.",
        READ,
        "GET",
        "/repos/{owner}/{repo}/pulls/{pull_number}",
        params={
            "owner": OWNER,
            "repo": REPO,
            "pull_number": integer("The pull request number.", minimum=1),
        },
        required=("owner", "repo", "pull_number"),
        scopes=REPO_SCOPE,
    ),
    A(
        "search_issues",
        "Search issues and pull requests across GitHub with GitHub search syntax, e.g. "
        "'repo:octocat/hello-world is:open label:bug'.",
        READ,
        "GET",
        "/search/issues",
        params={
            "q": string("The search query.", minLength=1),
            "sort": enum(
                "Sort field (default best match).", ["comments", "reactions", "created", "updated"]
            ),
            "order": enum("Sort direction.", ["asc", "desc"]),
            "per_page": page_size(),
            "page": PAGE,
        },
        required=("q",),
        scopes=REPO_SCOPE,
    ),
    A(
        "list_commits",
        "List commits of a repository, newest first.",
        READ,
        "GET",
        "/repos/{owner}/{repo}/commits",
        params={
            "owner": OWNER,
            "repo": REPO,
            "sha": string("Branch name or commit SHA to start from (default branch if left out)."),
            "path": string("Only commits touching this file path."),
            "since": string("Only commits after this ISO 8601 time.", format="date-time"),
            "per_page": page_size(),
            "page": PAGE,
        },
        required=("owner", "repo"),
        scopes=REPO_SCOPE,
    ),
)

PROVIDER = Provider(
    key="github",
    display_name="GitHub",
    icon="GH",
    description="Repositories, issues and pull requests.",
    auth_types=(AuthType.OAUTH2, AuthType.API_KEY),
    api_base_url="https://api.github.com",
    authorize_url="https://github.com/login/oauth/authorize",
    token_url="https://github.com/login/oauth/access_token",
    revocation_url="https://api.github.com/applications/{client_id}/token",
    revocation=Revocation.CLIENT_BASIC_JSON,
    userinfo_url="/user",
    userinfo_account_field="login",
    default_scopes=("repo", "read:user"),
    default_headers={
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
    },
    token_endpoint_auth_method="client_secret_post",
    docs_url="https://docs.github.com/en/rest",
    actions=ACTIONS,
)
