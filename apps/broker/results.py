"""What the broker answers: one result type shared by execute, check, proxy and MCP.

A `BrokerResult` is either an upstream answer (`error is None`) or a
`BrokerError` carrying the status, code and reason the agent sees. The
agent API renders it with the standard error body (apps.core.api); the MCP
endpoint turns an error into a tool result with `isError`. The upstream's answer (or why
there was none) becomes a `BrokerResult` here too (`upstream_answer`, `egress_failure`)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from apps.core.egress import (
    EgressBlocked,
    EgressError,
    EgressNotSent,
    EgressTimeout,
    EgressTooLarge,
)

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


def refresh_unavailable(connection_name: str, reason: str) -> BrokerResult:
    """The connection's OAuth token expired and its provider's token endpoint failed
    for now (unreachable, 5xx, 429): a retry later can work. Nothing went upstream."""
    return fail(
        503,
        "refresh_unavailable",
        f"{connection_name}'s OAuth token has expired and the provider did not renew it "
        f"just now ({reason}). Nothing was sent upstream; try again after Retry-After "
        "seconds.",
        connection=connection_name,
        headers={"Retry-After": "30"},
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


def egress_failure(exc: EgressError, provider_key: str) -> BrokerResult:
    """What the agent sees when the upstream could not be reached (502/504)."""
    upstream = {"upstream": provider_key, "host": exc.host, "elapsed_ms": exc.elapsed_ms}
    if isinstance(exc, EgressNotSent):
        return fail(
            502,
            "send_window_closed",
            f"Nothing was sent to {provider_key} ({exc.host}): the request could not be "
            "sent within the send window after its attempt was recorded. Retry.",
            **upstream,
        )
    if isinstance(exc, EgressTimeout):
        return fail(
            504,
            "upstream_timeout",
            f"{provider_key} ({exc.host}) did not answer in time "
            f"(gave up after {exc.elapsed_ms} ms).",
            **upstream,
        )
    if isinstance(exc, EgressTooLarge):
        return fail(
            502,
            "upstream_response_too_large",
            f"{provider_key} ({exc.host}) answered with a body larger than Grantry passes on.",
            **upstream,
        )
    if isinstance(exc, EgressBlocked):
        return fail(
            502, "upstream_blocked", f"Grantry refused to contact {provider_key}: {exc}", **upstream
        )
    return fail(
        502,
        "upstream_unreachable",
        f"Could not reach {provider_key} ({exc.host}) after {exc.elapsed_ms} ms.",
        **upstream,
    )


def upstream_answer(response: Any, provider_key: str) -> BrokerResult:
    """The upstream's answer as the agent sees it: allowlisted headers, the body parsed
    when JSON, and its 429 as `upstream_rate_limited`."""
    headers = allowed_headers(response.headers)
    body, is_json = decode_body(response.content, headers.get("content-type", ""))
    result = BrokerResult(
        upstream_status=response.status_code,
        body=body,
        raw_body=response.content,
        headers=headers,
        is_json=is_json,
        latency_ms=response.elapsed_ms,
    )
    if response.status_code == 429:
        retry = headers.get("retry-after", "")
        result.error = fail(
            429,
            "upstream_rate_limited",
            f"{provider_key} is rate-limiting this connection"
            + (f"; retry after {retry} s." if retry else "."),
            upstream=provider_key,
            upstream_status=429,
            body=body,
            headers={"Retry-After": retry} if retry else {},
        ).error
    return result
