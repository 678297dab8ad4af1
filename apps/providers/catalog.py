"""The provider catalog's types: what a provider and an action are.

Definitions live in `apps/providers/definitions/` (one module per provider).
The actions feed role rules (apps.policies), the broker (apps.broker) and
the MCP tool list, so an action carries everything those need: a dotted
name, an LLM-facing description, read/write class, HTTP method and path
template, a JSON Schema for its input and the scopes it needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class AuthType(StrEnum):
    OAUTH2 = "oauth2"
    API_KEY = "api_key"


class Placement(StrEnum):
    BEARER = "bearer"            # Authorization: Bearer <token>
    HEADER = "header"            # <header_name>: <prefix><token>
    BASIC = "basic"              # Authorization: Basic base64(<token>:) or user:token
    QUERY = "query"              # ?<param>=<token> (only where a provider requires it)


class ActionClass(StrEnum):
    READ = "read"
    WRITE = "write"


@dataclass(frozen=True)
class Action:
    name: str                    # "github.create_issue"
    description: str             # written for an LLM choosing a tool
    action_class: ActionClass
    method: str                  # "GET", "POST", …
    path: str                    # "/repos/{owner}/{repo}/issues"; {x} come from input
    input_schema: dict[str, Any]
    scopes: tuple[str, ...] = ()
    # Input keys sent as the query string / JSON body (the rest fill the path).
    query_params: tuple[str, ...] = ()
    body_params: tuple[str, ...] | None = None  # None: every non-path, non-query key

    @property
    def provider_key(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def short_name(self) -> str:
        return self.name.split(".", 1)[1]


@dataclass(frozen=True)
class Provider:
    key: str                     # "github"
    display_name: str
    icon: str                    # static path or emoji-free short text
    auth_types: tuple[AuthType, ...]
    api_base_url: str
    placement: Placement = Placement.BEARER
    header_name: str = "Authorization"
    header_prefix: str = "Bearer "
    authorize_url: str = ""
    token_url: str = ""
    revocation_url: str = ""
    userinfo_url: str = ""       # identity call after connect / API-key check
    userinfo_account_field: str = ""  # dotted path in the identity response, e.g. "login"
    default_scopes: tuple[str, ...] = ()
    scope_separator: str = " "
    docs_url: str = ""
    actions: tuple[Action, ...] = field(default_factory=tuple)
