"""Talking to upstream MCP servers: the `mcp` SDK's client, in sessions kept on the
process's event loop (`apps.core.aioloop`).

The SDK does the protocol: both generations (`mode="auto"` probes
`server/discover` and falls back to the `initialize` handshake with its
`Mcp-Session-Id`), JSON and SSE answers, JSON-RPC framing and validation. Grantry
supplies the transports and the policy:

* a remote server is reached with `apps.core.egress.aio.guarded_async_client`
  (the SSRF guard at httpcore2's connection hook, a size cap on every answer,
  identity encoding, no cookies or redirects);
* a stdio server runs in `apps.isolation`'s sandbox, over its bounded pipes;
* every exchange (opening a session included) ends within a deadline, and every
  failure becomes one `UpstreamError` with a code and a message that name the
  host or package, never a URL, a credential or the server's own output.

A session is keyed by the connection and a fingerprint of its credential and
configuration, so a refreshed token or an edited server opens a new one; idle
sessions (and their stdio children) are closed after
GRANTRY_MCP_SESSION_IDLE_SECONDS, and those of a connection no longer active (say,
disconnected in another process) within REAP_SECONDS. A session is owned by one task
on the loop (the SDK's task groups must be exited by the task that entered them);
calls from any thread share it. A `notifications/tools/list_changed` from a server is remembered
per connection (`tools_changed()`), so the next call re-reads its tools.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import anyio
import httpx2
import mcp_types as types
from django.conf import settings
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, PARSE_ERROR
from pydantic import ValidationError

from apps.core import aioloop
from apps.core.egress import EgressBlocked, EgressError, EgressTimeout, EgressTooLarge
from apps.core.egress.aio import guarded_async_client
from apps.core.tracing import trace_meta
from apps.isolation.sandbox import SandboxCommand
from apps.isolation.transport import Diagnostics, isolated_stdio

logger = logging.getLogger(__name__)
T = TypeVar("T")
CLIENT_INFO = types.Implementation(name="grantry-gateway", title="Grantry", version="1.0.0")
# Pages of a tools/list walk; with GRANTRY_MCP_MAX_TOOLS this bounds a server that
# pages forever.
MAX_PAGES = 50
REAP_SECONDS = 5.0  # how often idle sessions and those of inactive connections close


@dataclass(frozen=True)
class Upstream:
    """One upstream MCP server, as a session to it is opened."""

    connection_id: int
    transport: str  # "http" or "stdio"
    label: str  # the host or the package, for messages
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    command: SandboxCommand | None = field(default=None, repr=False)
    fingerprint: str = field(default="", repr=False)  # custody.McpAuth.fingerprint

    @property
    def key(self) -> tuple[int, str]:
        config = self.url if self.command is None else "\x00".join(self.command.argv)
        digest = hashlib.sha256(f"{self.transport}\x00{config}".encode()).hexdigest()[:16]
        return self.connection_id, f"{digest}:{self.fingerprint}"


class UpstreamError(Exception):
    """An upstream exchange that failed, as the agent and the admin may see it."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int = 502,
        rpc_code: int | None = None,
        www_authenticate: str = "",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.rpc_code = rpc_code
        self.www_authenticate = www_authenticate


@dataclass(frozen=True)
class Listing:
    tools: list[dict[str, Any]]  # as on the wire (camelCase)
    protocol_version: str
    server_name: str
    server_version: str


@dataclass
class _Seen:
    """What the transport saw of the last exchange, for errors."""

    status: int | None = None
    www_authenticate: str = ""
    stdio: Diagnostics = field(default_factory=Diagnostics)
    egress: EgressError | None = None  # what the egress guard refused last

    def refused(self, error: EgressError) -> None:
        self.egress = error


class _Session:
    def __init__(self, upstream: Upstream, pool: _Pool) -> None:
        self.upstream = upstream
        self.pool = pool
        self.client: Client | None = None
        self.seen = _Seen()
        self.ready = asyncio.Event()
        self.closing = asyncio.Event()
        self.failure: BaseException | None = None
        self.last_used = time.monotonic()
        self.busy = 0
        self.uses = 0
        self.retiring = False

    def close(self) -> None:
        """Stop handing this session out; its task closes it now (and ends a stdio
        child): calls still in flight on it fail."""
        self.pool.forget(self)
        self.closing.set()

    def retire(self) -> None:
        """Stop handing this session out; close it once its calls in flight are done
        (an older credential: a refresh must not break the calls that used the old one)."""
        self.pool.forget(self)
        self.retiring = True
        if self.busy == 0:
            self.closing.set()

    def done_with(self) -> None:
        self.busy -= 1
        self.last_used = time.monotonic()
        if self.retiring and self.busy == 0:
            self.closing.set()

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self.pool.changed.add(self.upstream.connection_id)

    def _transport(self) -> Any:
        upstream = self.upstream
        if upstream.transport == "stdio":
            assert upstream.command is not None
            return isolated_stdio(
                upstream.command,
                max_message_bytes=int(settings.GRANTRY_EGRESS_MAX_RESPONSE_BYTES),
                diagnostics=self.seen.stdio,
            )

        async def on_response(response: httpx2.Response) -> None:
            self.seen.status = response.status_code
            if response.status_code in (401, 403):
                self.seen.www_authenticate = response.headers.get("www-authenticate", "")[:2000]

        http = guarded_async_client(
            headers=upstream.headers,
            event_hooks={"response": [on_response]},
            refused=self.seen.refused,
        )
        return _with_client(http, streamable_http_client(upstream.url, http_client=http))

    async def hold(self) -> None:
        """Open the session, keep it until `closing`, then close it (in this task)."""
        try:
            async with Client(
                self._transport(),
                mode="auto",
                client_info=CLIENT_INFO,
                message_handler=self._on_message,
                cache=None,
            ) as client:
                self.client = client
                self.ready.set()
                await self.closing.wait()
        except BaseException as exc:  # kept for the callers waiting on `ready`
            self.failure = exc
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self.client = None
            self.ready.set()
            self.pool.forget(self)


def _with_client(http: httpx2.AsyncClient, transport: Any) -> Any:
    """The SDK's HTTP transport, closing its httpx2 client (and connections) after it."""

    @contextlib.asynccontextmanager
    async def both() -> Any:
        async with http, transport as streams:
            yield streams

    return both()


class _Pool:
    """The sessions of this process (used on the loop only)."""

    def __init__(self) -> None:
        self.sessions: dict[tuple[int, str], _Session] = {}
        self.changed: set[int] = set()
        self.reaper: asyncio.Task[None] | None = None

    def forget(self, session: _Session) -> None:
        if self.sessions.get(session.upstream.key) is session:
            del self.sessions[session.upstream.key]

    async def session(self, upstream: Upstream) -> _Session:
        if self.reaper is None or self.reaper.done():
            self.reaper = asyncio.create_task(self._reap())
        session = self.sessions.get(upstream.key)
        if session is None:
            for other in [s for k, s in self.sessions.items() if k[0] == upstream.connection_id]:
                other.retire()  # an older credential or configuration
            session = self.sessions[upstream.key] = _Session(upstream, self)
            asyncio.create_task(session.hold())  # noqa: RUF006 - the pool holds the session
        await session.ready.wait()
        if session.client is None:
            raise _classify(session.failure, upstream, session.seen)
        return session

    def close(self, connection_id: int) -> None:
        for key, session in list(self.sessions.items()):
            if key[0] == connection_id:
                session.close()

    async def _reap(self) -> None:
        """Every few seconds while sessions are open: close the idle ones, and those of
        connections no longer active (disconnected, revoked, needing an admin) in any
        process — so a stdio child never outlives its connection by more than that."""
        while self.sessions:
            await asyncio.sleep(min(REAP_SECONDS, float(settings.GRANTRY_MCP_SESSION_IDLE_SECONDS)))
            idle = time.monotonic() - float(settings.GRANTRY_MCP_SESSION_IDLE_SECONDS)
            ids = {key[0] for key in self.sessions if key[0] > 0}
            active = await anyio.to_thread.run_sync(_active, ids) if ids else set()
            for key, session in list(self.sessions.items()):
                gone = key[0] > 0 and key[0] not in active
                if gone or (session.busy == 0 and session.last_used < idle):
                    session.close()


def _active(ids: set[int]) -> set[int]:
    """Which of these connections are still active (one query, in a worker thread)."""
    from django.db import close_old_connections

    from apps.connections.models import Connection

    try:
        return set(Connection.objects.usable().filter(pk__in=ids).values_list("pk", flat=True))
    except Exception:  # the database is down: keep every session until it answers
        logger.warning("could not read which MCP connections are active")
        return ids
    finally:
        close_old_connections()


_pool = _Pool()


async def _use(
    upstream: Upstream,
    action: Callable[[Client], Awaitable[T]],
    *,
    seconds: float,
    idempotent: bool,
) -> T:
    """Run `action` on a session to `upstream` within `seconds`. A reused session that
    turns out dead (the server restarted and forgot it: HTTP 404, or for a read the
    connection gone) is replaced once: a 404 for an unknown session means the server
    did not act, and a read may always be repeated. A session that failed other than
    by the server's own JSON-RPC error is closed, and so is a stdio server that ran out
    of time (it may be stuck): the next call starts a fresh one."""
    session: _Session | None = None
    try:
        with anyio.fail_after(seconds):
            for attempt in (1, 2):
                session = None
                try:
                    session = await _pool.session(upstream)
                    session.seen.egress = None  # a refusal seen before is not this call's
                    reused = session.uses > 0
                    session.uses += 1
                    session.busy += 1
                    try:
                        assert session.client is not None
                        return await action(session.client)
                    finally:
                        session.done_with()
                except UpstreamError:
                    raise
                except Exception as exc:
                    seen = session.seen if session is not None else _Seen()
                    error = _classify(exc, upstream, seen)
                    if session is None:
                        raise error from None
                    if error.code != "upstream_error":
                        session.close()
                    stale = reused and (
                        seen.status == 404 or (idempotent and error.code == "upstream_unreachable")
                    )
                    if attempt == 2 or not stale:
                        raise error from None
    except TimeoutError:
        if session is not None and upstream.transport == "stdio":
            session.close()
        raise
    raise AssertionError("unreachable")  # pragma: no cover


def _run(upstream: Upstream, action: Callable[[Client], Awaitable[T]], *, idempotent: bool) -> T:
    seconds = float(settings.GRANTRY_MCP_CALL_TIMEOUT)
    try:
        return aioloop.run(
            lambda: _use(upstream, action, seconds=seconds, idempotent=idempotent),
            timeout=seconds + 5,
        )
    except TimeoutError:
        raise _timeout(upstream, seconds) from None


# --- The calls --------------------------------------------------------------------


def list_tools(upstream: Upstream) -> Listing:
    """Every tool the server lists (pages walked), or UpstreamError; more than
    GRANTRY_MCP_MAX_TOOLS is refused."""
    limit = int(settings.GRANTRY_MCP_MAX_TOOLS)

    async def walk(client: Client) -> Listing:
        tools: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            page = await client.list_tools(cursor=cursor)
            tools += [
                t.model_dump(by_alias=True, mode="json", exclude_none=True) for t in page.tools
            ]
            if len(tools) > limit:
                raise UpstreamError(
                    "too_many_tools",
                    f"{upstream.label} lists more than {limit} tools; Grantry fronts at most "
                    f"{limit} per server (GRANTRY_MCP_MAX_TOOLS).",
                )
            cursor = page.next_cursor
            if not cursor:
                break
        else:
            raise UpstreamError(
                "upstream_protocol_error",
                f"{upstream.label} kept paging its tool list past {MAX_PAGES} pages.",
            )
        info = client.server_info
        _pool.changed.discard(upstream.connection_id)
        return Listing(
            tools=tools,
            protocol_version=_printable(client.protocol_version, 20),
            server_name=_printable(info.name if info else "", 200),
            server_version=_printable(info.version if info else "", 100),
        )

    return _run(upstream, walk, idempotent=True)


def call_tool(upstream: Upstream, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The server's CallToolResult as on the wire (content, structuredContent,
    isError unchanged), or UpstreamError."""

    meta = trace_meta()  # this thread's trace context: the call runs on the loop thread

    async def call(client: Client) -> dict[str, Any]:
        result = await client.call_tool(name, arguments, meta=cast(Any, meta))
        return result.model_dump(by_alias=True, mode="json", exclude_none=True)

    return _run(upstream, call, idempotent=False)


def tools_changed(connection_id: int) -> bool:
    """Whether the server said its tool list changed since it was last read here."""
    return connection_id in _pool.changed


def close_sessions(connection_id: int) -> None:
    """Close this process's sessions to a connection (disconnected, edited)."""
    loop = aioloop.loop()
    loop.call_soon_threadsafe(_pool.close, connection_id)


# --- Errors -----------------------------------------------------------------------


def _timeout(upstream: Upstream, seconds: float) -> UpstreamError:
    return UpstreamError(
        "upstream_timeout",
        f"{upstream.label} did not answer within {seconds:g} s.",
        status=504,
    )


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


_PRIORITY = (
    EgressBlocked,
    EgressTooLarge,
    EgressTimeout,
    TimeoutError,
    httpx2.TimeoutException,
    EgressError,
    httpx2.TransportError,
    MCPError,
    ValidationError,
)


def _classify(exc: BaseException | None, upstream: Upstream, seen: _Seen) -> UpstreamError:
    label = upstream.label
    leaves = _leaves(exc) if exc is not None else []
    if seen.egress is not None:  # the SDK reports it as a closed connection
        leaves = [seen.egress, *leaves]
    chosen = next(
        (leaf for kind in _PRIORITY for leaf in leaves if isinstance(leaf, kind)),
        leaves[0] if leaves else None,
    )
    if isinstance(chosen, UpstreamError):
        return chosen
    if isinstance(chosen, EgressBlocked):
        return UpstreamError("upstream_blocked", f"Grantry refused to contact {label}: {chosen}")
    if isinstance(chosen, EgressTooLarge) or "over" in seen.stdio.problem:
        return UpstreamError(
            "upstream_response_too_large",
            f"{label} answered with a message larger than Grantry passes on.",
        )
    if isinstance(chosen, TimeoutError | httpx2.TimeoutException | EgressTimeout):
        return _timeout(upstream, float(settings.GRANTRY_MCP_CALL_TIMEOUT))
    if seen.status in (401, 403):
        return UpstreamError(
            "upstream_unauthorized",
            f"{label} refused Grantry's credential (HTTP {seen.status}). An admin "
            "reconnects the connection in Grantry.",
            www_authenticate=seen.www_authenticate,
        )
    if isinstance(chosen, EgressError | httpx2.TransportError | OSError):
        return UpstreamError(
            "upstream_unreachable", f"Could not reach {label} ({type(chosen).__name__})."
        )
    if isinstance(chosen, MCPError):
        return _from_rpc_error(chosen, upstream, seen)
    if isinstance(chosen, ValidationError):
        return UpstreamError(
            "upstream_protocol_error", f"{label} answered with a malformed MCP message."
        )
    name = type(chosen).__name__ if chosen is not None else "no answer"
    logger.warning("upstream MCP exchange with %s failed: %s", label, name)
    return UpstreamError("upstream_protocol_error", f"The exchange with {label} failed ({name}).")


def _from_rpc_error(error: MCPError, upstream: Upstream, seen: _Seen) -> UpstreamError:
    label = upstream.label
    code = error.error.code
    if code == CONNECTION_CLOSED:
        stdio = seen.stdio
        if upstream.transport == "stdio":
            ended = f" (exit code {stdio.exit_code})" if stdio.exit_code is not None else ""
            return UpstreamError("upstream_unreachable", f"The server {label} stopped{ended}.")
        return UpstreamError("upstream_unreachable", f"{label} closed the connection.")
    if code == PARSE_ERROR:
        return UpstreamError(
            "upstream_protocol_error", f"{label} answered with something that is not MCP JSON."
        )
    if seen.status is not None and seen.status >= 400 and code < -32000:
        return UpstreamError("upstream_unreachable", f"{label} answered HTTP {seen.status}.")
    message = _printable(error.error.message)
    return UpstreamError(
        "upstream_error", f"{label} answered with error {code}: {message}", rpc_code=code
    )


def _printable(text: str, limit: int = 300) -> str:
    cleaned = "".join(ch if ch.isprintable() else " " for ch in str(text))
    return cleaned[:limit]


def host_label(url: str) -> str:
    return urlsplit(url).hostname or "the MCP server"
