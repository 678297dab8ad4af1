"""The gate every agent-facing JSON body passes before anything walks it.

Execute, check and the MCP endpoint parse their bodies here, the proxy checks its
path and query:
apps.core.json_input (invalid JSON, lone surrogates, NUL, NaN, non-string keys,
an iterative walk) with the agent's limits — a body over the size cap, nesting
deeper than MAX_DEPTH (the digest, the schema validator and the policy all
recurse), more than MAX_NODES values.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from apps.core.json_input import HostileInput, check_text, loads

__all__ = ["HostileInput", "check_size", "check_text", "parse_json"]

MAX_DEPTH = 32
MAX_NODES = 100_000


def max_request_bytes() -> int:
    return int(getattr(settings, "GRANTRY_BROKER_MAX_REQUEST_BYTES", 1_000_000))


def check_size(declared_length: str | None, body_length: int | None = None) -> None:
    limit = max_request_bytes()
    length = declared_length or "0"
    if (length.isdigit() and int(length) > limit) or (body_length or 0) > limit:
        raise HostileInput(
            f"The request body is larger than {limit} bytes.", code="request_too_large", status=413
        )


def parse_json(raw: bytes, *, empty: Any = None) -> Any:
    """The body as a checked JSON value (`empty` for an empty body)."""
    check_size(None, len(raw))
    if not raw:
        return empty
    return loads(raw, max_depth=MAX_DEPTH, max_nodes=MAX_NODES)
