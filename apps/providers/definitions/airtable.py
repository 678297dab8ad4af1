"""Airtable Web API (https://airtable.com/developers/web/api). OAuth integration (PKCE,
client secret sent with HTTP Basic) or personal access token; both are Bearer tokens.
Airtable documents no token revocation endpoint, so disconnecting only destroys the
tokens here (revoke a personal access token in Airtable's Builder Hub)."""

from __future__ import annotations

from apps.providers.catalog import AuthType, Provider
from apps.providers.definitions._build import (
    READ,
    WRITE,
    action_builder,
    boolean,
    free_object,
    integer,
    string,
)

A = action_builder("airtable")

BASE_ID = string(
    "Base id, e.g. 'appXXXXXXXXXXXXXX' (see list_bases).", pattern=r"^app[A-Za-z0-9]+$"
)
TABLE = string("Table name or table id ('tbl…') inside the base.", minLength=1)
RECORD_ID = string("Record id, e.g. 'recXXXXXXXXXXXXXX'.", pattern=r"^rec[A-Za-z0-9]+$")
OFFSET = string("The 'offset' value of the previous page (cursor).")
FIELDS = free_object(
    "Cell values by field name, e.g. {'Name': 'Ada', 'Status': 'Todo'}; linked records "
    "are lists of record ids."
)
TYPECAST = boolean(
    "true lets Airtable convert values (e.g. create a new select option from a string)."
)
READ_RECORDS = ("data.records:read",)
WRITE_RECORDS = ("data.records:write",)
READ_SCHEMA = ("schema.bases:read",)

ACTIONS = (
    A(
        "list_bases",
        "List the bases the credential can access, with their ids and permission level.",
        READ,
        "GET",
        "/meta/bases",
        params={"offset": OFFSET},
        scopes=READ_SCHEMA,
    ),
    A(
        "get_base_schema",
        "Get the tables of a base with their fields (names, types, options) and views; "
        "call this before reading or writing records to learn the field names.",
        READ,
        "GET",
        "/meta/bases/{base_id}/tables",
        params={"base_id": BASE_ID},
        required=("base_id",),
        scopes=READ_SCHEMA,
    ),
    A(
        "list_records",
        "List records of a table, optionally only those a formula or a view selects. "
        "Pages of up to 100; pass the returned 'offset' to get the next page.",
        READ,
        "GET",
        "/{base_id}/{table}",
        params={
            "base_id": BASE_ID,
            "table": TABLE,
            "view": string("Only records of this view (name or id), in its order."),
            "filterByFormula": string(
                "An Airtable formula; only records for which it is true, e.g. "
                "\"{Status} = 'Todo'\"."
            ),
            "maxRecords": integer("Stop after this many records in total.", minimum=1),
            "pageSize": integer("Records per page (1-100, default 100).", minimum=1, maximum=100),
            "offset": OFFSET,
        },
        required=("base_id", "table"),
        scopes=READ_RECORDS,
    ),
    A(
        "get_record",
        "Get one record with all its cell values.",
        READ,
        "GET",
        "/{base_id}/{table}/{record_id}",
        params={"base_id": BASE_ID, "table": TABLE, "record_id": RECORD_ID},
        required=("base_id", "table", "record_id"),
        scopes=READ_RECORDS,
    ),
    A(
        "create_record",
        "Create one record in a table.",
        WRITE,
        "POST",
        "/{base_id}/{table}",
        params={"base_id": BASE_ID, "table": TABLE, "fields": FIELDS, "typecast": TYPECAST},
        required=("base_id", "table", "fields"),
        scopes=WRITE_RECORDS,
    ),
    A(
        "update_record",
        "Change some cell values of one record; fields left out keep their values.",
        WRITE,
        "PATCH",
        "/{base_id}/{table}/{record_id}",
        params={
            "base_id": BASE_ID,
            "table": TABLE,
            "record_id": RECORD_ID,
            "fields": FIELDS,
            "typecast": TYPECAST,
        },
        required=("base_id", "table", "record_id", "fields"),
        scopes=WRITE_RECORDS,
    ),
    A(
        "delete_record",
        "Delete one record. It goes to the base's trash, which only a person can restore.",
        WRITE,
        "DELETE",
        "/{base_id}/{table}/{record_id}",
        params={"base_id": BASE_ID, "table": TABLE, "record_id": RECORD_ID},
        required=("base_id", "table", "record_id"),
        scopes=WRITE_RECORDS,
    ),
    A(
        "list_comments",
        "List the comments on a record, newest first.",
        READ,
        "GET",
        "/{base_id}/{table}/{record_id}/comments",
        params={
            "base_id": BASE_ID,
            "table": TABLE,
            "record_id": RECORD_ID,
            "pageSize": integer("Comments per page (1-100).", minimum=1, maximum=100),
            "offset": OFFSET,
        },
        required=("base_id", "table", "record_id"),
        scopes=("data.recordComments:read",),
    ),
    A(
        "create_comment",
        "Add a comment to a record.",
        WRITE,
        "POST",
        "/{base_id}/{table}/{record_id}/comments",
        params={
            "base_id": BASE_ID,
            "table": TABLE,
            "record_id": RECORD_ID,
            "text": string("The comment text.", minLength=1),
        },
        required=("base_id", "table", "record_id", "text"),
        scopes=("data.recordComments:write",),
    ),
)

PROVIDER = Provider(
    key="airtable",
    display_name="Airtable",
    icon="AT",
    description="Airtable bases, records and comments.",
    auth_types=(AuthType.OAUTH2, AuthType.API_KEY),
    api_base_url="https://api.airtable.com/v0",
    authorize_url="https://airtable.com/oauth2/v1/authorize",
    token_url="https://airtable.com/oauth2/v1/token",
    userinfo_url="/meta/whoami",
    # The email needs the user.email:read scope; a token without it still connects.
    userinfo_account_field="email",
    default_scopes=(
        "data.records:read",
        "data.records:write",
        "data.recordComments:read",
        "data.recordComments:write",
        "schema.bases:read",
        "user.email:read",
    ),
    token_endpoint_auth_method="client_secret_basic",
    docs_url="https://airtable.com/developers/web/api",
    actions=ACTIONS,
)
