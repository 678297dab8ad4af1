"""The one gate every agent-facing JSON body passes before anything walks it.

Execute, check, the proxy's query and the MCP endpoint parse their bodies here.
`parse_json()` refuses, with one clear message, whatever later code could not
handle: a body over the size cap, invalid JSON, nesting deeper than
MAX_DEPTH (the digest, the schema validator and the policy all recurse), more
than MAX_NODES values, strings that cannot be stored (lone UTF-16 surrogates,
valid JSON escapes that UTF-8 cannot encode; NUL, which PostgreSQL text
refuses) and object keys that are not strings. The walk is iterative, so no
input can exhaust the interpreter's stack here.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

MAX_DEPTH = 32
MAX_NODES = 100_000
_INF = float("inf")


class HostileInput(ValueError):
    """The body cannot be accepted; `code` and the message go to the agent."""

    def __init__(self, message: str, *, code: str = "invalid_input", status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message


def max_request_bytes() -> int:
    return int(getattr(settings, "GRANTRY_BROKER_MAX_REQUEST_BYTES", 1_000_000))


def check_size(declared_length: str | None, body_length: int | None = None) -> None:
    limit = max_request_bytes()
    length = declared_length or "0"
    if (length.isdigit() and int(length) > limit) or (body_length or 0) > limit:
        raise HostileInput(
            f"The request body is larger than {limit} bytes.", code="request_too_large", status=413
        )


def check_text(text: str, what: str = "Text in the request") -> None:
    if "\x00" in text:
        raise HostileInput(f"{what} must not contain NUL (\\u0000) characters.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise HostileInput(
            f"{what} holds a lone UTF-16 surrogate (a \\ud800–\\udfff escape without its "
            "pair), which is not text."
        ) from None


def check_value(value: Any) -> None:
    """Walk a parsed JSON value without recursion and refuse what later code can't take."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    nodes = 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise HostileInput(f"The request holds more than {MAX_NODES} JSON values.")
        if isinstance(item, str):
            check_text(item)
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise HostileInput(f"The request is nested deeper than {MAX_DEPTH} levels.")
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        raise HostileInput("Object keys must be strings.")
                    check_text(key)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, float) and (item != item or item in (_INF, -_INF)):
            raise HostileInput("Numbers must be finite (no NaN or Infinity).")


def parse_json(raw: bytes, *, empty: Any = None) -> Any:
    """The body as a checked JSON value (`empty` for an empty body)."""
    check_size(None, len(raw))
    if not raw:
        return empty
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        # RecursionError: nesting past the interpreter's limit while parsing.
        raise HostileInput("The request body is not valid JSON.", code="invalid_json") from None
    check_value(value)
    return value
