"""The provider catalog's types: what a provider and an action are.

Definitions live in `apps/providers/definitions/` (one module per provider).
The actions feed role rules (apps.policies), the broker (apps.broker) and
the MCP tool list, so an action carries everything those need: a dotted
name, an LLM-facing description, read/write class, HTTP method and path
template, a JSON Schema for its input and the scopes it needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# `{name}` in a path template (and in URL templates with base_url_params).
PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# The methods a custom action may use (HEAD is a read that sends no body and gets none).
ACTION_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
# How a write sends its body: a JSON object, or form-encoded (Stripe, Twilio).
BODY_ENCODINGS = ("json", "form")
# The largest input schema a custom action may have (serialized JSON).
MAX_SCHEMA_BYTES = 20_000


def path_template_problem(value: str) -> str:
    """Why `value` cannot be an action's path template ("" when it can): it starts with
    "/", has no query, fragment, backslash, space, encoded dot or slash, no "." or ".."
    segment, and only {name} placeholders."""
    if not value.startswith("/"):
        return "The path starts with '/', e.g. /items/{item_id}."
    if any(c in value for c in "?#\\") or any(c.isspace() for c in value):
        return (
            "The path may not contain '?', '#', '\\' or spaces; query parameters come from "
            "the input schema."
        )
    if re.search(r"%(2e|2f|5c)", value, re.IGNORECASE):
        return "The path may not contain encoded dots or slashes (%2e, %2f, %5c)."
    if "//" in value or any(seg in (".", "..") for seg in value.split("/")):
        return "The path may not contain '//', '.' or '..' segments."
    leftover = PLACEHOLDER_RE.sub("", value)
    if "{" in leftover or "}" in leftover:
        return "Placeholders look like {name}: letters, digits and underscores."
    return ""


class AuthType(StrEnum):
    OAUTH2 = "oauth2"
    API_KEY = "api_key"


class Placement(StrEnum):
    BEARER = "bearer"  # Authorization: Bearer <token>
    HEADER = "header"  # <header_name>: <prefix><token>
    BASIC = "basic"  # Authorization: Basic base64(<token>:) or user:token
    QUERY = "query"  # ?<param>=<token> (only where a provider requires it)


class Revocation(StrEnum):
    """How a provider's revocation endpoint (`Provider.revocation_url`) is called."""

    RFC7009 = "rfc7009"  # POST token=…&token_type_hint=… with client authentication
    # GitHub: DELETE …/applications/{client_id}/token, client id and secret as HTTP
    # Basic, the access token in a JSON body {"access_token": …}.
    CLIENT_BASIC_JSON = "client_basic_json"
    # The access token authenticates its own revocation, as a Bearer token (Slack's
    # auth.revoke, Zendesk's DELETE /api/v2/oauth/tokens/current.json).
    SELF_BEARER = "self_bearer"
    # HubSpot: DELETE …/refresh-tokens/<refresh token>; no client authentication.
    REFRESH_TOKEN_IN_PATH = "refresh_token_in_path"


class ActionClass(StrEnum):
    READ = "read"
    WRITE = "write"


@dataclass(frozen=True)
class Action:
    name: str  # "github.create_issue"
    description: str  # written for an LLM choosing a tool
    action_class: ActionClass
    method: str  # "GET", "POST", …
    path: str  # "/repos/{owner}/{repo}/issues"; {x} come from input
    input_schema: dict[str, Any]
    scopes: tuple[str, ...] = ()
    # Input keys sent as the query string / JSON body (the rest fill the path).
    query_params: tuple[str, ...] = ()
    body_params: tuple[str, ...] | None = None  # None: every non-path, non-query key
    # A fixed JSON body shape the body keys are placed into (see apps.providers.calls):
    # the string "$input" stands for the dict of body keys, "$input.<key>" for one value
    # (left out when absent). E.g. Asana {"data": "$input"}, Linear {"query": …,
    # "variables": "$input"}. None: the body is the dict of body keys itself.
    body_template: Any = None
    # Input key -> upstream parameter name where the upstream's name is not a valid
    # tool property name (Microsoft Graph's "$top"). Applies to query and body keys.
    wire_names: dict[str, str] = field(default_factory=dict)
    body_encoding: str = "json"  # "json" or "form" (Stripe's form-encoded bodies)
    is_custom: bool = False

    @property
    def provider_key(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def short_name(self) -> str:
        return self.name.split(".", 1)[1]

    @property
    def path_params(self) -> tuple[str, ...]:
        return tuple(PLACEHOLDER_RE.findall(self.path))

    @property
    def is_write(self) -> bool:
        return self.action_class == ActionClass.WRITE


@dataclass(frozen=True)
class Provider:
    key: str  # "github"
    display_name: str
    icon: str  # static path or emoji-free short text
    auth_types: tuple[AuthType, ...]
    api_base_url: str
    placement: Placement = Placement.BEARER
    header_name: str = "Authorization"
    header_prefix: str = "Bearer "
    authorize_url: str = ""
    token_url: str = ""
    revocation_url: str = ""
    revocation: Revocation = Revocation.RFC7009  # how revocation_url is called
    revocation_method: str = "POST"  # for SELF_BEARER (Zendesk's is a DELETE)
    userinfo_url: str = ""  # identity call after connect / API-key check
    userinfo_account_field: str = ""  # dotted path in the identity response, e.g. "login"
    default_scopes: tuple[str, ...] = ()
    scope_separator: str = " "
    docs_url: str = ""
    actions: tuple[Action, ...] = field(default_factory=tuple)
    description: str = ""
    # Sent on every API call, e.g. Notion-Version or GitHub's Accept.
    default_headers: dict[str, str] = field(default_factory=dict)
    # Per-connection values the URLs are formatted with, e.g. Zendesk's
    # "https://{subdomain}.zendesk.com/api/v2". The connection stores the values;
    # `registry.resolve_base_url_params()` fills them in (host-label safe only).
    base_url_params: tuple[str, ...] = ()
    # Extra query parameters on the authorize URL (Google's access_type=offline, …).
    authorize_params: dict[str, str] = field(default_factory=dict)
    # How the OAuth client authenticates at the token endpoint (RFC 7591 names).
    token_endpoint_auth_method: str = "client_secret_basic"
    # The identity call is a GET unless a provider only offers it otherwise (Linear: GraphQL).
    userinfo_method: str = "GET"
    userinfo_body: dict[str, Any] | None = None
    is_custom: bool = False

    @property
    def supports_revocation(self) -> bool:
        """Whether disconnecting can revoke the grant at the provider (OAuth only)."""
        return bool(self.revocation_url) and AuthType.OAUTH2 in self.auth_types

    def action(self, name: str) -> Action | None:
        """The action by full (`github.create_issue`) or short (`create_issue`) name."""
        full = name if "." in name else f"{self.key}.{name}"
        return next((a for a in self.actions if a.name == full), None)
