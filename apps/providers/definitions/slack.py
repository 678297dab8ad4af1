"""Slack Web API (https://api.slack.com/methods). OAuth v2 or a bot token (xoxb-…).

Slack's auth.revoke is not RFC 7009: the token revokes itself as a Bearer token and
the answer is {"ok": true, "revoked": true} (see `Revocation.SELF_BEARER`). Scopes are
comma-separated in Slack's authorize URL."""

from __future__ import annotations

from apps.providers.catalog import AuthType, Provider, Revocation
from apps.providers.definitions._build import (
    READ,
    WRITE,
    action_builder,
    boolean,
    integer,
    string,
)

A = action_builder("slack")

CHANNEL = string("Channel id, e.g. 'C0123456789' (from slack.list_channels).", minLength=1)
CURSOR = string("next_cursor from the previous page's response_metadata.")
LIMIT = integer(
    "How many items per page (1-1000, Slack suggests at most 200).", minimum=1, maximum=1000
)
TS = string("Message timestamp id, e.g. '1712345678.123456'.", pattern=r"^\d+\.\d+$")

ACTIONS = (
    A(
        "list_channels",
        "List channels in the workspace with their ids, names and topics.",
        READ,
        "GET",
        "/conversations.list",
        params={
            "types": string("Comma-separated: public_channel, private_channel, mpim, im."),
            "exclude_archived": boolean("Leave out archived channels."),
            "limit": LIMIT,
            "cursor": CURSOR,
        },
        scopes=("channels:read",),
    ),
    A(
        "channel_history",
        "Read recent messages of a channel, newest first.",
        READ,
        "GET",
        "/conversations.history",
        params={
            "channel": CHANNEL,
            "oldest": string("Only messages after this timestamp id."),
            "latest": string("Only messages before this timestamp id."),
            "limit": LIMIT,
            "cursor": CURSOR,
        },
        required=("channel",),
        scopes=("channels:history",),
    ),
    A(
        "conversation_replies",
        "Read a message thread: the parent message and its replies.",
        READ,
        "GET",
        "/conversations.replies",
        params={"channel": CHANNEL, "ts": TS, "limit": LIMIT, "cursor": CURSOR},
        required=("channel", "ts"),
        scopes=("channels:history",),
    ),
    A(
        "post_message",
        "Post a message to a channel, or reply in a thread with thread_ts.",
        WRITE,
        "POST",
        "/chat.postMessage",
        params={
            "channel": CHANNEL,
            "text": string("Message text (Slack mrkdwn).", minLength=1, maxLength=40000),
            "thread_ts": string("Reply in the thread of this message timestamp id."),
        },
        required=("channel", "text"),
        scopes=("chat:write",),
    ),
    A(
        "add_reaction",
        "Add an emoji reaction to a message.",
        WRITE,
        "POST",
        "/reactions.add",
        params={
            "channel": CHANNEL,
            "timestamp": TS,
            "name": string("Emoji name without colons, e.g. 'thumbsup'.", minLength=1),
        },
        required=("channel", "timestamp", "name"),
        scopes=("reactions:write",),
    ),
    A(
        "list_users",
        "List the workspace's members with ids, names and profile fields.",
        READ,
        "GET",
        "/users.list",
        params={"limit": LIMIT, "cursor": CURSOR},
        scopes=("users:read",),
    ),
    A(
        "get_user_info",
        "Get one member's profile by user id.",
        READ,
        "GET",
        "/users.info",
        params={"user": string("User id, e.g. 'U0123456789'.", minLength=1)},
        required=("user",),
        scopes=("users:read",),
    ),
)

PROVIDER = Provider(
    key="slack",
    display_name="Slack",
    icon="SL",
    description="Channels, messages and members of a Slack workspace.",
    auth_types=(AuthType.OAUTH2, AuthType.API_KEY),
    api_base_url="https://slack.com/api",
    authorize_url="https://slack.com/oauth/v2/authorize",
    token_url="https://slack.com/api/oauth.v2.access",
    revocation_url="https://slack.com/api/auth.revoke",
    revocation=Revocation.SELF_BEARER,
    userinfo_url="/auth.test",
    userinfo_account_field="user",
    default_scopes=(
        "channels:read",
        "channels:history",
        "chat:write",
        "reactions:write",
        "users:read",
    ),
    scope_separator=",",
    token_endpoint_auth_method="client_secret_post",
    docs_url="https://api.slack.com/methods",
    actions=ACTIONS,
)
