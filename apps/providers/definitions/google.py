"""Google Workspace APIs: Gmail, Calendar and Drive under https://www.googleapis.com.

Refresh tokens need access_type=offline (and prompt=consent to be issued again on
reconnect), so those are authorize parameters."""

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
    object_schema,
    string,
)

A = action_builder("google")
AUTH = "https://www.googleapis.com/auth/"
GMAIL_READ = (f"{AUTH}gmail.readonly",)
GMAIL_MODIFY = (f"{AUTH}gmail.modify",)
CAL_READ = (f"{AUTH}calendar.readonly",)
CAL_EVENTS = (f"{AUTH}calendar.events",)
DRIVE_READ = (f"{AUTH}drive.readonly",)
DRIVE_FILE = (f"{AUTH}drive.file",)

MESSAGE_ID = string("Gmail message id (from google.gmail_list_messages).", minLength=1)
CALENDAR_ID = string("Calendar id; 'primary' is the user's main calendar.", minLength=1)
PAGE_TOKEN = string("nextPageToken from the previous page of results.")
LABEL_IDS = array(
    "Label ids, e.g. 'INBOX', 'UNREAD', 'STARRED' or a user label id.", string("A label id.")
)

ACTIONS = (
    A(
        "gmail_list_messages",
        "Search the mailbox with Gmail search syntax (e.g. 'from:alice is:unread "
        "newer_than:7d'). Returns message ids; fetch each with google.gmail_get_message.",
        READ,
        "GET",
        "/gmail/v1/users/me/messages",
        params={
            "q": string("Gmail search query."),
            "maxResults": integer(
                "How many message ids (1-500, default 100).", minimum=1, maximum=500
            ),
            "pageToken": PAGE_TOKEN,
        },
        scopes=GMAIL_READ,
    ),
    A(
        "gmail_get_message",
        "Get one email: headers (From, To, Subject, Date), snippet, labels and body parts.",
        READ,
        "GET",
        "/gmail/v1/users/me/messages/{message_id}",
        params={
            "message_id": MESSAGE_ID,
            "format": enum("How much to return (default full).", ["full", "metadata", "minimal"]),
        },
        required=("message_id",),
        scopes=GMAIL_READ,
    ),
    A(
        "gmail_list_labels",
        "List the mailbox's labels (system labels like INBOX and the user's own), with ids.",
        READ,
        "GET",
        "/gmail/v1/users/me/labels",
        scopes=GMAIL_READ,
    ),
    A(
        "gmail_modify_message",
        "Add or remove labels on an email, e.g. remove 'UNREAD' to mark it read or "
        "remove 'INBOX' to archive it.",
        WRITE,
        "POST",
        "/gmail/v1/users/me/messages/{message_id}/modify",
        params={"message_id": MESSAGE_ID, "addLabelIds": LABEL_IDS, "removeLabelIds": LABEL_IDS},
        required=("message_id",),
        scopes=GMAIL_MODIFY,
    ),
    A(
        "gmail_trash_message",
        "Move an email to the trash (it is deleted for good after 30 days).",
        WRITE,
        "POST",
        "/gmail/v1/users/me/messages/{message_id}/trash",
        params={"message_id": MESSAGE_ID},
        required=("message_id",),
        scopes=GMAIL_MODIFY,
    ),
    A(
        "calendar_list_calendars",
        "List the calendars in the user's calendar list, with their ids and access roles.",
        READ,
        "GET",
        "/calendar/v3/users/me/calendarList",
        params={
            "maxResults": integer("How many calendars (1-250).", minimum=1, maximum=250),
            "pageToken": PAGE_TOKEN,
        },
        scopes=CAL_READ,
    ),
    A(
        "calendar_list_events",
        "List events of a calendar in a time range. Use singleEvents=true and "
        "orderBy=startTime to get recurring events expanded in order.",
        READ,
        "GET",
        "/calendar/v3/calendars/{calendar_id}/events",
        params={
            "calendar_id": CALENDAR_ID,
            "timeMin": string("Only events ending after this RFC 3339 time.", format="date-time"),
            "timeMax": string(
                "Only events starting before this RFC 3339 time.", format="date-time"
            ),
            "q": string("Free-text search in summary, description, location, attendees."),
            "singleEvents": boolean("Expand recurring events into single instances."),
            "orderBy": enum(
                "Sort order; startTime needs singleEvents=true.", ["startTime", "updated"]
            ),
            "maxResults": integer(
                "How many events (1-2500, default 250).", minimum=1, maximum=2500
            ),
            "pageToken": PAGE_TOKEN,
        },
        required=("calendar_id",),
        scopes=CAL_READ,
    ),
    A(
        "calendar_create_event",
        "Create a calendar event. Times are RFC 3339 (e.g. 2026-05-01T10:00:00+02:00).",
        WRITE,
        "POST",
        "/calendar/v3/calendars/{calendar_id}/events",
        params={
            "calendar_id": CALENDAR_ID,
            "summary": string("Event title.", minLength=1),
            "description": string("Event description."),
            "location": string("Where the event takes place."),
            "start_time": string("Start time, RFC 3339.", format="date-time"),
            "end_time": string("End time, RFC 3339.", format="date-time"),
            "time_zone": string("IANA time zone, e.g. 'Europe/Berlin' (optional)."),
            "attendees": array(
                "People to invite.",
                {
                    **object_schema({"email": string("Attendee email address.")}, ("email",)),
                    "description": "One attendee.",
                },
            ),
        },
        required=("calendar_id", "summary", "start_time", "end_time"),
        body_template={
            "summary": "$input.summary",
            "description": "$input.description",
            "location": "$input.location",
            "start": {"dateTime": "$input.start_time", "timeZone": "$input.time_zone"},
            "end": {"dateTime": "$input.end_time", "timeZone": "$input.time_zone"},
            "attendees": "$input.attendees",
        },
        scopes=CAL_EVENTS,
    ),
    A(
        "calendar_delete_event",
        "Delete (cancel) a calendar event.",
        WRITE,
        "DELETE",
        "/calendar/v3/calendars/{calendar_id}/events/{event_id}",
        params={
            "calendar_id": CALENDAR_ID,
            "event_id": string("Event id (from google.calendar_list_events).", minLength=1),
            "sendUpdates": enum("Who gets a cancellation email.", ["all", "externalOnly", "none"]),
        },
        required=("calendar_id", "event_id"),
        scopes=CAL_EVENTS,
    ),
    A(
        "drive_list_files",
        "List or search files in Google Drive. q uses Drive query syntax, e.g. "
        "\"name contains 'budget' and trashed = false\".",
        READ,
        "GET",
        "/drive/v3/files",
        params={
            "q": string("Drive search query."),
            "orderBy": string("Sort keys, e.g. 'modifiedTime desc'."),
            "pageSize": integer("How many files (1-1000, default 100).", minimum=1, maximum=1000),
            "pageToken": PAGE_TOKEN,
        },
        scopes=DRIVE_READ,
    ),
    A(
        "drive_get_file",
        "Get a Drive file's metadata (name, type, owners, modified time, links).",
        READ,
        "GET",
        "/drive/v3/files/{file_id}",
        params={
            "file_id": string("Drive file id (from google.drive_list_files).", minLength=1),
            "fields": string("Fields to return, e.g. 'id,name,mimeType,modifiedTime,webViewLink'."),
        },
        required=("file_id",),
        scopes=DRIVE_READ,
    ),
    A(
        "drive_create_folder",
        "Create a folder in Google Drive, optionally inside another folder.",
        WRITE,
        "POST",
        "/drive/v3/files",
        params={
            "name": string("Folder name.", minLength=1),
            "parents": array(
                "Id of the parent folder (one element).", string("A folder id."), maxItems=1
            ),
        },
        required=("name",),
        body_template={
            "name": "$input.name",
            "mimeType": "application/vnd.google-apps.folder",
            "parents": "$input.parents",
        },
        scopes=DRIVE_FILE,
    ),
)

PROVIDER = Provider(
    key="google",
    display_name="Google Workspace",
    icon="G",
    description="Gmail, Google Calendar and Google Drive.",
    auth_types=(AuthType.OAUTH2,),
    api_base_url="https://www.googleapis.com",
    authorize_url="https://accounts.google.com/o/oauth2/v2/auth",
    token_url="https://oauth2.googleapis.com/token",
    revocation_url="https://oauth2.googleapis.com/revoke",
    userinfo_url="/oauth2/v3/userinfo",
    userinfo_account_field="email",
    default_scopes=("openid", "email", *GMAIL_READ, *CAL_READ, *DRIVE_READ),
    authorize_params={
        "access_type": "offline",
        "prompt": "consent",
        "include_granted_scopes": "true",
    },
    token_endpoint_auth_method="client_secret_post",
    docs_url="https://developers.google.com/workspace",
    actions=ACTIONS,
)
