"""The one gate for JSON bodies: what later code could not take is refused here, with
one clear message, before anything walks the value.

`loads()` refuses invalid JSON (nesting past the interpreter's recursion limit
included), nesting deeper than `max_depth`, more than `max_nodes` values, strings
that cannot be stored (lone UTF-16 surrogates, valid JSON escapes that UTF-8 cannot
encode; NUL, which PostgreSQL text refuses), non-finite numbers and object keys that
are not strings. The walk is iterative, so no input can exhaust the stack here.

The agent surfaces (apps.broker.inputs: execute, check, the proxy, MCP) use it with
their tight limits; the management API through DRF's parser
(`apps.core.parsers.JSONParser`) and the unauthenticated client registration
(`/oauth/register/`) with looser ones.
"""

from __future__ import annotations

import json
from typing import Any

_INF = float("inf")


class HostileInput(ValueError):
    """The body cannot be accepted; `code` and the message go to the client."""

    def __init__(self, message: str, *, code: str = "invalid_input", status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message


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


def check_value(value: Any, *, max_depth: int, max_nodes: int) -> None:
    """Walk a parsed JSON value without recursion and refuse what later code can't take."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    nodes = 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            raise HostileInput(f"The request holds more than {max_nodes} JSON values.")
        if isinstance(item, str):
            check_text(item)
        elif isinstance(item, dict | list):
            if depth >= max_depth:
                raise HostileInput(f"The request is nested deeper than {max_depth} levels.")
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


def loads(raw: bytes | str, *, max_depth: int, max_nodes: int) -> Any:
    """The body as a checked JSON value."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        # RecursionError: nesting past the interpreter's limit while parsing.
        raise HostileInput("The request body is not valid JSON.", code="invalid_json") from None
    check_value(value, max_depth=max_depth, max_nodes=max_nodes)
    return value
