"""Notion API (https://developers.notion.com/reference). Public integration (OAuth,
client credentials via HTTP Basic at the token endpoint) or an internal integration
secret. Every call carries the Notion-Version header. Notion has no OAuth scopes:
what a token can touch is chosen by the user on Notion's consent page."""

from __future__ import annotations

from apps.providers.catalog import AuthType, Provider
from apps.providers.definitions._build import (
    READ,
    WRITE,
    action_builder,
    array,
    boolean,
    enum,
    free_object,
    integer,
    object_schema,
    string,
)

A = action_builder("notion")

PAGE_ID = string("Notion page id (UUID, with or without dashes).", minLength=1)
BLOCK_ID = string("Block id; a page id is also the id of its top block.", minLength=1)
DATABASE_ID = string("Notion database id (UUID).", minLength=1)
PAGE_SIZE = integer("How many results (1-100, default 100).", minimum=1, maximum=100)
CURSOR = string("next_cursor from the previous page of results.")
BLOCKS = array(
    "Block objects in Notion's format, e.g. "
    '{"object": "block", "type": "paragraph", "paragraph": {"rich_text": '
    '[{"type": "text", "text": {"content": "Hello"}}]}}.',
    free_object("One block object."),
    maxItems=100,
)

ACTIONS = (
    A(
        "search",
        "Search pages and databases shared with the integration by title.",
        READ,
        "POST",
        "/search",
        params={
            "query": string("Text to look for in titles; empty lists everything shared."),
            "filter": {
                **object_schema(
                    {
                        "property": enum("Always 'object'.", ["object"]),
                        "value": enum("Only pages or only databases.", ["page", "database"]),
                    },
                    ("property", "value"),
                ),
                "description": "Limit results to pages or databases.",
            },
            "page_size": PAGE_SIZE,
            "start_cursor": CURSOR,
        },
    ),
    A(
        "get_page",
        "Get a page's properties (title, parent, timestamps). Read its content with "
        "notion.get_block_children.",
        READ,
        "GET",
        "/pages/{page_id}",
        params={"page_id": PAGE_ID},
        required=("page_id",),
    ),
    A(
        "get_block_children",
        "Read the content blocks of a page or block (paragraphs, headings, lists, …).",
        READ,
        "GET",
        "/blocks/{block_id}/children",
        params={"block_id": BLOCK_ID, "page_size": PAGE_SIZE, "start_cursor": CURSOR},
        required=("block_id",),
    ),
    A(
        "query_database",
        "Query a database's rows (pages) with an optional Notion filter and sorts.",
        READ,
        "POST",
        "/databases/{database_id}/query",
        params={
            "database_id": DATABASE_ID,
            "filter": free_object(
                'A Notion filter object, e.g. {"property": "Status", "status": {"equals": "Done"}}.'
            ),
            "sorts": array(
                'Sort objects, e.g. [{"property": "Due", "direction": "ascending"}].',
                free_object("One sort object."),
            ),
            "page_size": PAGE_SIZE,
            "start_cursor": CURSOR,
        },
        required=("database_id",),
    ),
    A(
        "create_page",
        "Create a page under a parent page or as a row in a database.",
        WRITE,
        "POST",
        "/pages",
        params={
            "parent": free_object('Where to create it: {"page_id": "…"} or {"database_id": "…"}.'),
            "properties": free_object(
                'Page properties. Under a page: {"title": [{"text": {"content": "Title"}}]}; '
                "in a database: values for the database's properties."
            ),
            "children": BLOCKS,
        },
        required=("parent", "properties"),
    ),
    A(
        "update_page",
        "Change a page's properties, or archive (archived=true) / restore it.",
        WRITE,
        "PATCH",
        "/pages/{page_id}",
        params={
            "page_id": PAGE_ID,
            "properties": free_object("Property values to change."),
            "archived": boolean("true moves the page to the trash."),
        },
        required=("page_id",),
    ),
    A(
        "append_block_children",
        "Append content blocks to the end of a page or block.",
        WRITE,
        "PATCH",
        "/blocks/{block_id}/children",
        params={"block_id": BLOCK_ID, "children": {**BLOCKS, "minItems": 1}},
        required=("block_id", "children"),
    ),
)

PROVIDER = Provider(
    key="notion",
    display_name="Notion",
    icon="N",
    description="Pages, blocks and databases shared with the integration.",
    auth_types=(AuthType.OAUTH2, AuthType.API_KEY),
    api_base_url="https://api.notion.com/v1",
    authorize_url="https://api.notion.com/v1/oauth/authorize",
    token_url="https://api.notion.com/v1/oauth/token",
    revocation_url="https://api.notion.com/v1/oauth/revoke",
    userinfo_url="/users/me",
    userinfo_account_field="name",
    default_headers={"Notion-Version": "2022-06-28"},
    authorize_params={"owner": "user"},
    docs_url="https://developers.notion.com/reference",
    actions=ACTIONS,
)
