"""Linear GraphQL API (https://developers.linear.app). Every action is a POST to
/graphql with a fixed query; the action's input becomes the GraphQL variables."""

from __future__ import annotations

from apps.providers.catalog import AuthType, Provider
from apps.providers.definitions._build import (
    READ,
    WRITE,
    action_builder,
    integer,
    string,
)

A = action_builder("linear")

ISSUE_ID = string("Issue id (UUID) or identifier such as 'ENG-123'.", minLength=1)
PRIORITY = integer("0 none, 1 urgent, 2 high, 3 medium, 4 low.", minimum=0, maximum=4)


def gql(query: str) -> dict[str, object]:
    return {"query": " ".join(query.split()), "variables": "$input"}


ACTIONS = (
    A(
        "list_teams",
        "List the workspace's teams with their ids and keys (needed to create issues).",
        READ,
        "POST",
        "/graphql",
        body_template=gql("query { teams { nodes { id key name } } }"),
        scopes=("read",),
    ),
    A(
        "list_issues",
        "List recently updated issues with identifier, title, state, assignee and URL.",
        READ,
        "POST",
        "/graphql",
        params={
            "first": integer("How many issues (1-100).", minimum=1, maximum=100),
            "after": string("endCursor from the previous page's pageInfo."),
        },
        body_template=gql("""
            query Issues($first: Int, $after: String) {
              issues(first: $first, after: $after, orderBy: updatedAt) {
                nodes { id identifier title priority url updatedAt
                        state { name } assignee { name } team { key } }
                pageInfo { hasNextPage endCursor }
              }
            }"""),
        scopes=("read",),
    ),
    A(
        "get_issue",
        "Get one issue with its description, state, assignee and comments.",
        READ,
        "POST",
        "/graphql",
        params={"id": ISSUE_ID},
        required=("id",),
        body_template=gql("""
            query Issue($id: String!) {
              issue(id: $id) {
                id identifier title description priority url
                state { name } assignee { name }
                comments { nodes { body createdAt user { name } } }
              }
            }"""),
        scopes=("read",),
    ),
    A(
        "create_issue",
        "Create an issue in a team. Returns its identifier and URL.",
        WRITE,
        "POST",
        "/graphql",
        params={
            "teamId": string("Team id (from linear.list_teams).", minLength=1),
            "title": string("Issue title.", minLength=1),
            "description": string("Issue description in Markdown."),
            "priority": PRIORITY,
            "assigneeId": string("User id to assign."),
        },
        required=("teamId", "title"),
        body_template=gql("""
            mutation IssueCreate($teamId: String!, $title: String!, $description: String,
                                 $priority: Int, $assigneeId: String) {
              issueCreate(input: {teamId: $teamId, title: $title, description: $description,
                                  priority: $priority, assigneeId: $assigneeId}) {
                success issue { id identifier url }
              }
            }"""),
        scopes=("write",),
    ),
    A(
        "update_issue",
        "Change an issue's title, description, state, priority or assignee.",
        WRITE,
        "POST",
        "/graphql",
        params={
            "id": ISSUE_ID,
            "title": string("New title."),
            "description": string("New description in Markdown."),
            "stateId": string("Workflow state id to move the issue to."),
            "priority": PRIORITY,
            "assigneeId": string("User id to assign."),
        },
        required=("id",),
        body_template=gql("""
            mutation IssueUpdate($id: String!, $title: String, $description: String,
                                 $stateId: String, $priority: Int, $assigneeId: String) {
              issueUpdate(id: $id, input: {title: $title, description: $description,
                                           stateId: $stateId, priority: $priority,
                                           assigneeId: $assigneeId}) {
                success issue { id identifier url }
              }
            }"""),
        scopes=("write",),
    ),
    A(
        "create_comment",
        "Add a comment to an issue.",
        WRITE,
        "POST",
        "/graphql",
        params={"issueId": ISSUE_ID, "body": string("Comment in Markdown.", minLength=1)},
        required=("issueId", "body"),
        body_template=gql("""
            mutation CommentCreate($issueId: String!, $body: String!) {
              commentCreate(input: {issueId: $issueId, body: $body}) {
                success comment { id url }
              }
            }"""),
        scopes=("write",),
    ),
)

PROVIDER = Provider(
    key="linear",
    display_name="Linear",
    icon="LN",
    description="Issues, teams and comments in Linear.",
    auth_types=(AuthType.OAUTH2,),
    api_base_url="https://api.linear.app",
    authorize_url="https://linear.app/oauth/authorize",
    token_url="https://api.linear.app/oauth/token",
    revocation_url="https://api.linear.app/oauth/revoke",
    userinfo_url="/graphql",
    userinfo_method="POST",
    userinfo_body={"query": "query { viewer { id name email } }"},
    userinfo_account_field="data.viewer.email",
    default_scopes=("read", "write"),
    scope_separator=",",
    token_endpoint_auth_method="client_secret_post",
    docs_url="https://developers.linear.app/docs/graphql/working-with-the-graphql-api",
    actions=ACTIONS,
)
