"""The same egress rules for an asyncio client: an httpx2 transport with our guard.

The `mcp` SDK's client speaks HTTP through an `httpx2.AsyncClient`, whose wire
work is httpcore2's (pooling, HTTP/1.1 framing, TLS, SSE bodies). httpcore2's
connection hook is its network backend: `GuardedBackend.connect_tcp` resolves the
host with `guard.checked_addresses` (every address public; loopback only with
GRANTRY_EGRESS_ALLOW_LOOPBACK; metadata never) and connects to the checked address,
never to a second lookup's answer. TLS SNI and the certificate check keep the host
name (httpcore2 passes the URL's host to `start_tls`). What else is ours:

* a size cap on every answer's body (`max_bytes`, at most
  GRANTRY_EGRESS_MAX_RESPONSE_BYTES), counted as the bytes stream in, so a 50 MB
  answer or an endless event stream stops at the cap with `EgressTooLarge`;
* `Accept-Encoding: identity`, and an answer in any other content coding refused
  (the cap counts what arrives; a compressed bomb would inflate past it above us);
* https only unless loopback is allowed, no proxies or netrc from the environment,
  no cookies kept, no redirects followed by the client (the SDK's same-origin
  rule still applies on top);
* per-operation timeouts from GRANTRY_EGRESS_TIMEOUT; the caller bounds a whole
  exchange with its own deadline (`anyio.fail_after`), which also stops a server
  that drips bytes.

Errors carry the host name, never the URL.
"""

from __future__ import annotations

import http.cookiejar
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import anyio
import anyio.to_thread
import httpcore2
import httpx2
from django.conf import settings

from .errors import EgressBlocked, EgressConnectError, EgressError, EgressTooLarge
from .guard import _require_https, checked_addresses

# httpcore2's exceptions as httpx2 raises them (httpx2 maps them the same way in its
# own transport; its mapping helper is private, so the table is spelt out here).
_MAPPED: tuple[tuple[type[Exception], type[httpx2.TransportError]], ...] = (
    (httpcore2.ConnectTimeout, httpx2.ConnectTimeout),
    (httpcore2.ReadTimeout, httpx2.ReadTimeout),
    (httpcore2.WriteTimeout, httpx2.WriteTimeout),
    (httpcore2.PoolTimeout, httpx2.PoolTimeout),
    (httpcore2.ConnectError, httpx2.ConnectError),
    (httpcore2.ReadError, httpx2.ReadError),
    (httpcore2.WriteError, httpx2.WriteError),
    (httpcore2.RemoteProtocolError, httpx2.RemoteProtocolError),
    (httpcore2.LocalProtocolError, httpx2.LocalProtocolError),
    (httpcore2.UnsupportedProtocol, httpx2.UnsupportedProtocol),
    (httpcore2.ProtocolError, httpx2.ProtocolError),
    (httpcore2.NetworkError, httpx2.NetworkError),
    (httpcore2.TimeoutException, httpx2.TimeoutException),
)


def _as_httpx(exc: Exception) -> Exception:
    for core, mapped in _MAPPED:
        if isinstance(exc, core):
            return mapped(str(exc))
    return exc


class GuardedBackend(httpcore2.AnyIOBackend):
    """httpcore2's anyio backend whose TCP connections go only to checked addresses."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        # The lookup blocks; a worker thread keeps the event loop free.
        addresses = await anyio.to_thread.run_sync(checked_addresses, host, port)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await super().connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore2.ConnectTimeout:
                raise  # the time is up: no other address gets tried
            except httpcore2.ConnectError as exc:
                failure = exc
        assert failure is not None  # checked_addresses returns at least one address
        raise failure


Refusals = Callable[[EgressError], None]


class _CappedStream(httpx2.AsyncByteStream):
    """An answer's body, refused once more than `cap` bytes have arrived."""

    def __init__(self, stream: Any, *, cap: int, host: str, refused: Refusals | None) -> None:
        self._stream = stream
        self._cap = cap
        self._host = host
        self._refused = refused

    async def __aiter__(self) -> AsyncIterator[bytes]:
        received = 0
        try:
            async for chunk in self._stream:
                received += len(chunk)
                if received > self._cap:
                    too_large = EgressTooLarge(
                        f"The answer from {self._host} is larger than {self._cap} bytes.",
                        host=self._host,
                    )
                    if self._refused is not None:
                        self._refused(too_large)
                    raise too_large
                yield chunk
        except httpcore2.TimeoutException as exc:
            raise _as_httpx(exc) from exc
        except (httpcore2.NetworkError, httpcore2.ProtocolError) as exc:
            raise _as_httpx(exc) from exc

    async def aclose(self) -> None:
        await self._stream.aclose()


class GuardedAsyncTransport(httpx2.AsyncBaseTransport):
    """An httpx2 transport over httpcore2 with `GuardedBackend` and the size cap.
    `refused` hears of every refusal (a blocked address, an answer too large) before it
    is raised: a client that catches transport errors itself (the `mcp` SDK turns them
    into "Connection closed") cannot hide why from the caller."""

    def __init__(self, *, max_bytes: int | None = None, refused: Refusals | None = None) -> None:
        from . import _tls_context

        self.refused = refused
        cap = int(settings.GRANTRY_EGRESS_MAX_RESPONSE_BYTES)
        self.max_bytes = min(cap, int(max_bytes)) if max_bytes is not None else cap
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=_tls_context(),
            max_connections=20,
            max_keepalive_connections=10,
            keepalive_expiry=30.0,
            http1=True,
            http2=False,
            network_backend=GuardedBackend(),
        )

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            return await self._handle(request)
        except EgressError as exc:
            if self.refused is not None:
                self.refused(exc)
            raise

    async def _handle(self, request: httpx2.Request) -> httpx2.Response:
        host = request.url.host
        if request.url.scheme not in ("http", "https"):
            raise EgressBlocked("Only http and https URLs may be called.", host=host)
        if request.url.scheme != "https" and _require_https():
            raise EgressBlocked(
                "Only https URLs may be called (credentials never travel in clear text).",
                host=host,
            )
        core_request = httpcore2.Request(
            method=request.method,
            url=httpcore2.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        try:
            response = await self._pool.handle_async_request(core_request)
        except (httpcore2.TimeoutException, httpcore2.NetworkError, httpcore2.ProtocolError) as exc:
            # (The guard's own refusal, EgressBlocked, passes through httpcore2 as it is.)
            raise _as_httpx(exc) from exc
        headers = httpx2.Headers(response.headers)
        coding = headers.get("content-encoding", "identity").strip().lower()
        length = headers.get("content-length", "")
        if coding not in ("", "identity") or (length.isdigit() and int(length) > self.max_bytes):
            await response.aclose()
            if coding not in ("", "identity"):
                raise EgressConnectError(
                    f"Refused the answer from {host} (content coding {coding[:20]!r} "
                    "was not asked for).",
                    host=host,
                )
            raise EgressTooLarge(
                f"The answer from {host} is larger than {self.max_bytes} bytes.", host=host
            )
        return httpx2.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_CappedStream(
                response.stream, cap=self.max_bytes, host=host, refused=self.refused
            ),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


def _no_cookies() -> http.cookiejar.CookieJar:
    return http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


def guarded_async_client(
    *,
    headers: dict[str, str] | None = None,
    max_bytes: int | None = None,
    timeout: float | None = None,
    event_hooks: dict[str, list[Any]] | None = None,
    refused: Refusals | None = None,
) -> httpx2.AsyncClient:
    """An `httpx2.AsyncClient` under Grantry's egress rules (see the module docstring)."""
    seconds = float(timeout if timeout is not None else settings.GRANTRY_EGRESS_TIMEOUT)
    return httpx2.AsyncClient(
        transport=GuardedAsyncTransport(max_bytes=max_bytes, refused=refused),
        headers={"Accept-Encoding": "identity", "User-Agent": "Grantry/1.0", **(headers or {})},
        timeout=httpx2.Timeout(seconds),
        follow_redirects=False,
        trust_env=False,
        cookies=_no_cookies(),
        event_hooks=event_hooks or {},
    )
