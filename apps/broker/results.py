"""What the broker answers: one result type shared by execute, check, proxy and MCP.

A `BrokerResult` is either an upstream answer (`error is None`) or a
`BrokerError` carrying the status, code and reason the agent sees. The
agent API renders it with the standard error body (apps.core.api); the MCP
endpoint turns an error into a tool result with `isError`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

# Upstream response headers an agent may see. Everything else (cookies,
# server banners, upstream auth challenges) stays behind Grantry.
ALLOWED_UPSTREAM_HEADERS = frozenset(
    {
        "content-type",
        "retry-after",
        "etag",
        "last-modified",
        "link",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "x-ratelimit-used",
        "x-ratelimit-resource",
        "ratelimit",
        "ratelimit-policy",
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
    }
)


@dataclass(frozen=True)
class BrokerError:
    status: int
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class BrokerResult:
    """The outcome of one brokered call, as the agent should see it."""

    error: BrokerError | None = None
    upstream_status: int | None = None
    body: Any = None  # parsed JSON, or text
    raw_body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    is_json: bool = False
    # check (dry run) answers
    decision: str = ""
    reason: str = ""
    rule_id: int | None = None
    connection: str = ""
    latency_ms: int | None = None
    # 202: the call waits for a person's approval (apps.approvals); the agent's body.
    pending: dict[str, Any] | None = None
    # An upstream MCP server's CallToolResult, as on the wire (apps.broker.mcp_upstream).
    mcp_result: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def message(self) -> str:
        return self.error.message if self.error is not None else ""


def fail(status: int, code: str, message: str, **details: Any) -> BrokerResult:
    headers = details.pop("headers", None) or {}
    return BrokerResult(
        error=BrokerError(
            status=status, code=code, message=message, details=details, headers=headers
        )
    )


def has_nul(value: Any) -> bool:
    """Whether a NUL character hides in any string of this JSON value (keys included).
    PostgreSQL text and jsonb refuse it, so such input is refused before it gets near
    the audit trail."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(has_nul(v) for v in value)
    return False


def input_digest(value: Any) -> str:
    """sha256 of the canonical JSON of the input: what the audit trail stores."""
    canonical = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def allowed_headers(headers: Any) -> dict[str, str]:
    """The allowlisted subset of upstream headers, with lower-case names."""
    items = headers.items() if hasattr(headers, "items") else headers
    return {k.lower(): v for k, v in items if k.lower() in ALLOWED_UPSTREAM_HEADERS}


def decode_body(content: bytes, content_type: str) -> tuple[Any, bool]:
    """Parse a JSON upstream body; anything else comes back as text."""
    if not content:
        return None, False
    if "json" in content_type.lower():
        try:
            return json.loads(content), True
        except ValueError:
            pass
    return content.decode("utf-8", errors="replace"), False
