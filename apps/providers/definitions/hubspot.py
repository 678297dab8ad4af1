"""HubSpot CRM API v3 (https://developers.hubspot.com/docs/api/crm). OAuth app or a
private app access token. HubSpot's token revocation is not RFC 7009: DELETE
/oauth/v1/refresh-tokens/<refresh token> (see `Revocation.REFRESH_TOKEN_IN_PATH`)."""

from __future__ import annotations

from apps.providers.catalog import AuthType, Provider, Revocation
from apps.providers.definitions._build import (
    READ,
    WRITE,
    action_builder,
    integer,
    string,
)

A = action_builder("hubspot")

LIMIT = integer("How many records (1-100, default 10).", minimum=1, maximum=100)
AFTER = string("paging.next.after from the previous page.")
PROPERTIES = string("Comma-separated property names to return, e.g. 'email,firstname'.")
CONTACT_ID = string("HubSpot contact id (numeric string).", pattern=r"^[0-9]+$")
CONTACTS_READ = ("crm.objects.contacts.read",)
CONTACTS_WRITE = ("crm.objects.contacts.write",)
CONTACT_FIELDS = {
    "email": string("Email address.", format="email"),
    "firstname": string("First name."),
    "lastname": string("Last name."),
    "phone": string("Phone number."),
    "company": string("Company name."),
}

ACTIONS = (
    A(
        "list_contacts",
        "List contacts, newest first by id.",
        READ,
        "GET",
        "/crm/v3/objects/contacts",
        params={"limit": LIMIT, "after": AFTER, "properties": PROPERTIES},
        scopes=CONTACTS_READ,
    ),
    A(
        "get_contact",
        "Get one contact by id.",
        READ,
        "GET",
        "/crm/v3/objects/contacts/{contact_id}",
        params={"contact_id": CONTACT_ID, "properties": PROPERTIES},
        required=("contact_id",),
        scopes=CONTACTS_READ,
    ),
    A(
        "search_contacts",
        "Full-text search of contacts (name, email, phone, company).",
        READ,
        "POST",
        "/crm/v3/objects/contacts/search",
        params={
            "query": string("Text to search for.", minLength=1),
            "limit": LIMIT,
            "after": AFTER,
        },
        required=("query",),
        scopes=CONTACTS_READ,
    ),
    A(
        "create_contact",
        "Create a contact. Email is the usual unique key.",
        WRITE,
        "POST",
        "/crm/v3/objects/contacts",
        params=CONTACT_FIELDS,
        required=("email",),
        body_template={"properties": "$input"},
        scopes=CONTACTS_WRITE,
    ),
    A(
        "update_contact",
        "Change a contact's properties. Only the given fields change.",
        WRITE,
        "PATCH",
        "/crm/v3/objects/contacts/{contact_id}",
        params={"contact_id": CONTACT_ID, **CONTACT_FIELDS},
        required=("contact_id",),
        body_template={"properties": "$input"},
        scopes=CONTACTS_WRITE,
    ),
    A(
        "list_companies",
        "List companies.",
        READ,
        "GET",
        "/crm/v3/objects/companies",
        params={"limit": LIMIT, "after": AFTER, "properties": PROPERTIES},
        scopes=("crm.objects.companies.read",),
    ),
    A(
        "list_deals",
        "List deals with their stage and amount.",
        READ,
        "GET",
        "/crm/v3/objects/deals",
        params={"limit": LIMIT, "after": AFTER, "properties": PROPERTIES},
        scopes=("crm.objects.deals.read",),
    ),
    A(
        "create_deal",
        "Create a deal in a pipeline stage.",
        WRITE,
        "POST",
        "/crm/v3/objects/deals",
        params={
            "dealname": string("Deal name.", minLength=1),
            "amount": string(
                "Amount as a decimal string, e.g. '1500.00'.", pattern=r"^[0-9]+(\.[0-9]+)?$"
            ),
            "pipeline": string("Pipeline id ('default' for the default pipeline)."),
            "dealstage": string("Deal stage id, e.g. 'appointmentscheduled'."),
            "closedate": string("Expected close date, ISO 8601.", format="date-time"),
        },
        required=("dealname",),
        body_template={"properties": "$input"},
        scopes=("crm.objects.deals.write",),
    ),
)

PROVIDER = Provider(
    key="hubspot",
    display_name="HubSpot",
    icon="HS",
    description="HubSpot CRM contacts, companies and deals.",
    auth_types=(AuthType.OAUTH2, AuthType.API_KEY),
    api_base_url="https://api.hubapi.com",
    authorize_url="https://app.hubspot.com/oauth/authorize",
    token_url="https://api.hubapi.com/oauth/v1/token",
    revocation_url="https://api.hubapi.com/oauth/v1/refresh-tokens",
    revocation=Revocation.REFRESH_TOKEN_IN_PATH,
    userinfo_url="/account-info/v3/details",
    userinfo_account_field="portalId",
    default_scopes=(
        "oauth",
        "crm.objects.contacts.read",
        "crm.objects.contacts.write",
        "crm.objects.companies.read",
        "crm.objects.deals.read",
        "crm.objects.deals.write",
    ),
    token_endpoint_auth_method="client_secret_post",
    docs_url="https://developers.hubspot.com/docs/api/crm",
    actions=ACTIONS,
)
