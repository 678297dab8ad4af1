"""Salesforce REST API (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta).

API calls go to the org's My Domain, stored on the connection as the `my_domain`
base URL parameter (e.g. 'acme' for acme.my.salesforce.com, or
'acme--dev.sandbox' for a sandbox org). Login and tokens use login.salesforce.com
(override `salesforce.authorize_url`/`token_url` for test.salesforce.com)."""

from __future__ import annotations

from apps.providers.catalog import AuthType, Provider
from apps.providers.definitions._build import (
    READ,
    WRITE,
    action_builder,
    free_object,
    string,
)

A = action_builder("salesforce")

SOBJECT = string(
    "Object API name, e.g. 'Account', 'Contact', 'Opportunity', 'Case'.",
    pattern=r"^[A-Za-z][A-Za-z0-9_]*$",
)
RECORD_ID = string(
    "15- or 18-character Salesforce record id.", pattern=r"^[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$"
)
API = ("api",)

ACTIONS = (
    A(
        "query",
        "Run a SOQL query, e.g. \"SELECT Id, Name FROM Account WHERE Industry = 'Energy' "
        'LIMIT 10".',
        READ,
        "GET",
        "/query",
        params={"q": string("The SOQL query.", minLength=1)},
        required=("q",),
        scopes=API,
    ),
    A(
        "list_sobjects",
        "List the org's object types (standard and custom) with their API names.",
        READ,
        "GET",
        "/sobjects",
        scopes=API,
    ),
    A(
        "describe_sobject",
        "Describe an object type: its fields, their types and picklist values.",
        READ,
        "GET",
        "/sobjects/{sobject}/describe",
        params={"sobject": SOBJECT},
        required=("sobject",),
        scopes=API,
    ),
    A(
        "get_record",
        "Get one record by object type and id.",
        READ,
        "GET",
        "/sobjects/{sobject}/{record_id}",
        params={
            "sobject": SOBJECT,
            "record_id": RECORD_ID,
            "fields": string("Comma-separated field names to return (default all)."),
        },
        required=("sobject", "record_id"),
        scopes=API,
    ),
    A(
        "create_record",
        "Create a record. Returns its id.",
        WRITE,
        "POST",
        "/sobjects/{sobject}",
        params={
            "sobject": SOBJECT,
            "fields": free_object('Field values, e.g. {"Name": "Acme", "Industry": "Energy"}.'),
        },
        required=("sobject", "fields"),
        body_template="$input.fields",
        scopes=API,
    ),
    A(
        "update_record",
        "Change fields of a record. Only the given fields change.",
        WRITE,
        "PATCH",
        "/sobjects/{sobject}/{record_id}",
        params={
            "sobject": SOBJECT,
            "record_id": RECORD_ID,
            "fields": free_object("Field values to change."),
        },
        required=("sobject", "record_id", "fields"),
        body_template="$input.fields",
        scopes=API,
    ),
)

PROVIDER = Provider(
    key="salesforce",
    display_name="Salesforce",
    icon="SF",
    description="Salesforce records, SOQL queries and object metadata.",
    auth_types=(AuthType.OAUTH2,),
    api_base_url="https://{my_domain}.my.salesforce.com/services/data/v62.0",
    base_url_params=("my_domain",),
    authorize_url="https://login.salesforce.com/services/oauth2/authorize",
    token_url="https://login.salesforce.com/services/oauth2/token",
    revocation_url="https://login.salesforce.com/services/oauth2/revoke",
    userinfo_url="https://login.salesforce.com/services/oauth2/userinfo",
    userinfo_account_field="preferred_username",
    default_scopes=("api", "refresh_token"),
    token_endpoint_auth_method="client_secret_post",
    docs_url="https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/",
    actions=ACTIONS,
)
