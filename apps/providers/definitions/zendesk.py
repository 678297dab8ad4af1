"""Zendesk Support API (https://developer.zendesk.com/api-reference/). Each account
has its own subdomain, stored on the connection as the `subdomain` base URL
parameter ('acme' for acme.zendesk.com); the OAuth URLs live there too. Revocation is
not RFC 7009: DELETE /api/v2/oauth/tokens/current.json with the token itself."""

from __future__ import annotations

from apps.providers.catalog import AuthType, Provider, Revocation
from apps.providers.definitions._build import (
    READ,
    WRITE,
    action_builder,
    array,
    boolean,
    enum,
    integer,
    string,
)

A = action_builder("zendesk")

TICKET_ID = integer("Ticket number.", minimum=1)
PER_PAGE = integer("How many results per page (1-100).", minimum=1, maximum=100)
PAGE = integer("Page number (starts at 1).", minimum=1)
PRIORITY = enum("Ticket priority.", ["low", "normal", "high", "urgent"])
STATUS = enum("Ticket status.", ["new", "open", "pending", "hold", "solved", "closed"])

ACTIONS = (
    A(
        "list_tickets",
        "List tickets of the account.",
        READ,
        "GET",
        "/tickets.json",
        params={
            "sort_by": enum("Sort field.", ["created_at", "updated_at", "priority", "status"]),
            "sort_order": enum("Sort direction.", ["asc", "desc"]),
            "per_page": PER_PAGE,
            "page": PAGE,
        },
        scopes=("read",),
    ),
    A(
        "get_ticket",
        "Get one ticket: subject, description, status, priority, requester, tags.",
        READ,
        "GET",
        "/tickets/{ticket_id}.json",
        params={"ticket_id": TICKET_ID},
        required=("ticket_id",),
        scopes=("read",),
    ),
    A(
        "list_ticket_comments",
        "List the conversation (public replies and internal notes) of a ticket.",
        READ,
        "GET",
        "/tickets/{ticket_id}/comments.json",
        params={"ticket_id": TICKET_ID, "per_page": PER_PAGE, "page": PAGE},
        required=("ticket_id",),
        scopes=("read",),
    ),
    A(
        "search",
        "Search tickets, users and organizations with Zendesk search syntax, e.g. "
        "'type:ticket status:open priority:urgent'.",
        READ,
        "GET",
        "/search.json",
        params={
            "query": string("The search query.", minLength=1),
            "sort_by": enum(
                "Sort field.", ["updated_at", "created_at", "priority", "status", "ticket_type"]
            ),
            "sort_order": enum("Sort direction.", ["asc", "desc"]),
            "per_page": PER_PAGE,
            "page": PAGE,
        },
        required=("query",),
        scopes=("read",),
    ),
    A(
        "create_ticket",
        "Create a ticket with a first comment.",
        WRITE,
        "POST",
        "/tickets.json",
        params={
            "subject": string("Ticket subject.", minLength=1),
            "body": string("The first comment (the description).", minLength=1),
            "priority": PRIORITY,
            "tags": array("Tags.", string("A tag.")),
        },
        required=("subject", "body"),
        body_template={
            "ticket": {
                "subject": "$input.subject",
                "comment": {"body": "$input.body"},
                "priority": "$input.priority",
                "tags": "$input.tags",
            }
        },
        scopes=("write",),
    ),
    A(
        "update_ticket",
        "Change a ticket's status or priority and/or add a reply (public) or internal "
        "note (public=false).",
        WRITE,
        "PUT",
        "/tickets/{ticket_id}.json",
        params={
            "ticket_id": TICKET_ID,
            "status": STATUS,
            "priority": PRIORITY,
            "comment": string("Reply or note text."),
            "public": boolean("false makes the comment an internal note (default true)."),
        },
        required=("ticket_id",),
        body_template={
            "ticket": {
                "status": "$input.status",
                "priority": "$input.priority",
                "comment": {"body": "$input.comment", "public": "$input.public"},
            }
        },
        scopes=("write",),
    ),
)

PROVIDER = Provider(
    key="zendesk",
    display_name="Zendesk",
    icon="ZD",
    description="Zendesk Support tickets and search.",
    auth_types=(AuthType.OAUTH2,),
    api_base_url="https://{subdomain}.zendesk.com/api/v2",
    base_url_params=("subdomain",),
    authorize_url="https://{subdomain}.zendesk.com/oauth/authorizations/new",
    token_url="https://{subdomain}.zendesk.com/oauth/tokens",
    revocation_url="https://{subdomain}.zendesk.com/api/v2/oauth/tokens/current.json",
    revocation=Revocation.SELF_BEARER,
    revocation_method="DELETE",
    userinfo_url="/users/me.json",
    userinfo_account_field="user.email",
    default_scopes=("read", "write"),
    token_endpoint_auth_method="client_secret_post",
    docs_url="https://developer.zendesk.com/api-reference/",
    actions=ACTIONS,
)
