"""Microsoft Graph v1.0 (https://learn.microsoft.com/graph/api/overview): Outlook
mail and calendar, OneDrive, the user profile. Uses the multi-tenant "common"
endpoint; a single-tenant app overrides microsoft.authorize_url / token_url.
Microsoft identity platform has no token revocation endpoint."""

from __future__ import annotations

from apps.providers.catalog import AuthType, Provider
from apps.providers.definitions._build import (
    READ,
    WRITE,
    action_builder,
    array,
    integer,
    object_schema,
    string,
)

A = action_builder("microsoft")

TOP = integer("How many items (1-1000, default 10).", minimum=1, maximum=1000)
ODATA = {"top": "$top", "filter": "$filter", "search": "$search", "select": "$select"}
RECIPIENTS = array(
    "Recipients.",
    {
        **object_schema(
            {
                "emailAddress": {
                    **object_schema(
                        {
                            "address": string("Email address.", format="email"),
                            "name": string("Display name."),
                        },
                        ("address",),
                    ),
                    "description": "The recipient's address.",
                }
            },
            ("emailAddress",),
        ),
        "description": 'One recipient: {"emailAddress": {"address": "…"}}.',
    },
    minItems=1,
)
DATETIME = string("Local date and time without offset, e.g. '2026-05-01T10:00:00'.")
TIME_ZONE = string("Time zone of start and end, e.g. 'Europe/Berlin' or 'UTC'.", minLength=1)

ACTIONS = (
    A(
        "get_me",
        "Get the signed-in user's profile (name, email, job title).",
        READ,
        "GET",
        "/me",
        scopes=("User.Read",),
    ),
    A(
        "list_messages",
        "List emails in the mailbox, newest first. Optional OData filter or search.",
        READ,
        "GET",
        "/me/messages",
        params={
            "top": TOP,
            "filter": string("OData filter, e.g. 'isRead eq false'."),
            "search": string('Search text in quotes, e.g. "\\"invoice\\"".'),
            "select": string("Comma-separated fields, e.g. 'subject,from,receivedDateTime'."),
        },
        wire_names=ODATA,
        scopes=("Mail.Read",),
    ),
    A(
        "get_message",
        "Get one email with its body.",
        READ,
        "GET",
        "/me/messages/{message_id}",
        params={"message_id": string("Message id (from microsoft.list_messages).", minLength=1)},
        required=("message_id",),
        scopes=("Mail.Read",),
    ),
    A(
        "send_mail",
        "Send a plain-text email from the user's mailbox (saved in Sent Items).",
        WRITE,
        "POST",
        "/me/sendMail",
        params={
            "subject": string("Subject line.", minLength=1),
            "body": string("Plain-text body."),
            "to": RECIPIENTS,
        },
        required=("subject", "body", "to"),
        body_template={
            "message": {
                "subject": "$input.subject",
                "body": {"contentType": "Text", "content": "$input.body"},
                "toRecipients": "$input.to",
            },
            "saveToSentItems": True,
        },
        scopes=("Mail.Send",),
    ),
    A(
        "list_events",
        "List calendar events between two times (recurring events expanded).",
        READ,
        "GET",
        "/me/calendarView",
        params={
            "startDateTime": string("Range start, ISO 8601 with offset.", format="date-time"),
            "endDateTime": string("Range end, ISO 8601 with offset.", format="date-time"),
            "top": TOP,
        },
        required=("startDateTime", "endDateTime"),
        wire_names=ODATA,
        scopes=("Calendars.Read",),
    ),
    A(
        "create_event",
        "Create an event in the user's default calendar and invite attendees.",
        WRITE,
        "POST",
        "/me/events",
        params={
            "subject": string("Event title.", minLength=1),
            "body": string("Plain-text description."),
            "start": DATETIME,
            "end": DATETIME,
            "time_zone": TIME_ZONE,
            "location": string("Location name."),
            "attendees": array(
                "People to invite.",
                {
                    **object_schema(
                        {"emailAddress": RECIPIENTS["items"]["properties"]["emailAddress"]},
                        ("emailAddress",),
                    ),
                    "description": 'One attendee: {"emailAddress": {"address": "…"}}.',
                },
            ),
        },
        required=("subject", "start", "end", "time_zone"),
        body_template={
            "subject": "$input.subject",
            "body": {"contentType": "Text", "content": "$input.body"},
            "start": {"dateTime": "$input.start", "timeZone": "$input.time_zone"},
            "end": {"dateTime": "$input.end", "timeZone": "$input.time_zone"},
            "location": {"displayName": "$input.location"},
            "attendees": "$input.attendees",
        },
        scopes=("Calendars.ReadWrite",),
    ),
    A(
        "list_drive_items",
        "List files and folders in the root of the user's OneDrive.",
        READ,
        "GET",
        "/me/drive/root/children",
        params={"top": TOP},
        wire_names=ODATA,
        scopes=("Files.Read",),
    ),
)

PROVIDER = Provider(
    key="microsoft",
    display_name="Microsoft 365 (Graph)",
    icon="MS",
    description="Outlook mail and calendar, OneDrive and the user profile via Microsoft Graph.",
    auth_types=(AuthType.OAUTH2,),
    api_base_url="https://graph.microsoft.com/v1.0",
    authorize_url="https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
    token_url="https://login.microsoftonline.com/common/oauth2/v2.0/token",
    userinfo_url="/me",
    userinfo_account_field="userPrincipalName",
    default_scopes=(
        "offline_access",
        "User.Read",
        "Mail.Read",
        "Mail.Send",
        "Calendars.ReadWrite",
        "Files.Read",
    ),
    token_endpoint_auth_method="client_secret_post",
    docs_url="https://learn.microsoft.com/graph/api/overview",
    actions=ACTIONS,
)
