"""The one outbound HTTP client: every call Grantry makes to a SaaS goes through here.

urllib3 2.x does the HTTP: kept-alive connections pooled per (scheme, host name,
port) by one process-wide PoolManager, request framing, parsing the answer,
chunked bodies, gzip and deflate, TLS. Grantry owns the policy, following Sentry's
src/sentry/net/http.py: urllib3's connection classes are subclassed and only
their `_new_conn` hook is replaced, by `guard.safe_create_connection`, which
resolves the host, refuses it if ANY address is not public (no private,
loopback, link-local, multicast, reserved, CGNAT or cloud metadata address;
loopback only with settings.GRANTRY_EGRESS_ALLOW_LOOPBACK, for development and
tests; metadata never) and connects to the address it checked. The Host header,
TLS SNI and the certificate check keep the name, so DNS rebinding between check
and connect cannot happen, and a kept-alive connection was checked when it was
opened. Connections opened while loopback was allowed live in a manager of their
own, so they are never reused once it is not.

On top of that, each call has:

* one deadline (settings.GRANTRY_EGRESS_TIMEOUT or the `timeout` argument) for
  everything: the connect and the TLS handshake get what is left after the
  lookup, and every socket read and write gets only the time left, so a server
  that drips bytes cannot hold a worker (the DNS lookup is the one step it
  cannot bound);
* no redirects followed (a 3xx is returned as it is), no retries by urllib3;
* a response-size cap (settings.GRANTRY_EGRESS_MAX_RESPONSE_BYTES) on the
  declared Content-Length, on the bytes received and on the decoded body, read
  with preload_content=False in bounded pieces: a compressed bomb is caught too;
* a send window (`send_by`, a time.monotonic() value; the broker's, from
  apps/workers/fence.py): the connect and every write of the request must end by
  then. Past it nothing more is written, the connection is closed and
  EgressNotSent is raised; the answer's reads keep the whole deadline;
* https only, except where loopback is allowed (development and tests);
* non-ASCII host names encoded with IDNA 2008 (after the UTS 46 mapping of case
  and width), never IDNA 2003, which reads some as other names;
* header names and values checked before anything is sent (no CR, LF, NUL or
  other control character; names are tokens);
* no cookies stored or sent, no proxies from the environment (urllib3 has
  neither), certificates checked against certifi's CA bundle;
* answers that http.client would misread refused or repaired (transport._Answer):
  interim 1xx answers are skipped, 101 is refused, a Transfer-Encoding other than
  chunked or conflicting Content-Lengths are refused, an answer carrying both is
  not kept alive, 204 and 304 have no body. Folded header values are unfolded,
  and CR, LF and NUL dropped from them.

urllib3 reuses a pooled connection only once its previous answer was read in
full, and drops one the server closed (or wrote to) while it sat idle. If a
reused connection fails before any byte of the answer arrived (the server closed
it as the request went out), a GET, HEAD or OPTIONS request goes once more; any
other method fails, since the server may have acted on it (a refresh token sent
twice can revoke the grant). Nothing else is ever retried.

Errors never carry the URL (a query string may hold a credential), only the
host name and the elapsed time; urllib3's log records leave request targets out.

The package: this module holds `egress_request` and the process-wide state (the
TLS context, the managers); `guard` decides where a call may go and opens the
TCP connection, `transport` is the urllib3 adapter, `request` builds what is
sent, `response` reads the body and holds EgressResponse, `errors` the
exceptions.
"""

from __future__ import annotations

import http.client
import ssl
import time
from typing import Any
from urllib.parse import SplitResult, urlsplit

import idna
from django.conf import settings
from urllib3 import BaseHTTPResponse
from urllib3.exceptions import ClosedPoolError, HTTPError

from .errors import (
    EgressBlocked,
    EgressConnectError,
    EgressError,
    EgressNotSent,
    EgressTimeout,
    EgressTooLarge,
    _elapsed_ms,
)
from .guard import ALLOWED_SCHEMES, _require_https, check_destination
from .guard import METADATA_ADDRESSES as METADATA_ADDRESSES
from .guard import _address_refusal as _address_refusal
from .request import DEFAULT_HEADERS as DEFAULT_HEADERS
from .request import _body, _headers, _headers_are_valid, _target
from .response import EgressResponse, ResponseHeaders, read_body
from .transport import CALL, NO_RETRIES, Call, GuardedPoolManager, Refused, SendWindowClosed
from .transport import make_tls_context as _make_tls_context

# The public names. Names imported "as" themselves above stay reachable as
# apps.core.egress.<name>, as they were before the module became a package.
__all__ = [
    "EgressBlocked",
    "EgressConnectError",
    "EgressError",
    "EgressNotSent",
    "EgressResponse",
    "EgressTimeout",
    "EgressTooLarge",
    "check_destination",
    "egress_request",
]

# --- Process-wide state -------------------------------------------------------
# Looked up here on every call, so that setting apps.core.egress._tls, ._managers or
# .MAX_POOLS (tests) takes effect.

_tls: ssl.SSLContext | None = None
MAX_POOLS = 512  # destinations (scheme, host name, port) with kept-alive connections
MAX_IDLE = 50  # idle connections kept per destination
# One manager per loopback allowance: a connection opened while loopback was allowed
# is never handed out once it is not (a running process only ever uses one).
_managers: dict[bool, GuardedPoolManager] = {}


def _tls_context() -> ssl.SSLContext:
    global _tls
    if _tls is None:
        _tls = _make_tls_context()  # a race builds two equal contexts; harmless
    return _tls


def _manager(allow_loopback: bool) -> GuardedPoolManager:
    manager = _managers.get(allow_loopback)
    if manager is None:
        manager = _managers.setdefault(
            allow_loopback,
            GuardedPoolManager(
                num_pools=MAX_POOLS,
                maxsize=MAX_IDLE,
                block=False,
                retries=NO_RETRIES,
                ssl_context=_tls_context(),
            ),
        )
    return manager


# --- Requests -----------------------------------------------------------------

# How a kept-alive connection the server closed just as the request went out fails
# (http.client's RemoteDisconnected is a ConnectionResetError).
_STALE = (BrokenPipeError, ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError)
# Only these may go again after such a failure: the server may have acted on the
# request before it closed (RFC 9110 section 9.2.2), and a POST that redeems a code
# or rotates a refresh token must not arrive twice.
_RETRYABLE = frozenset({"GET", "HEAD", "OPTIONS"})


def _destination(parts: SplitResult) -> tuple[str, int]:
    """The host (IDNA-encoded) and port a URL names, once its scheme is allowed: http(s)
    only, https only unless plain http is allowed (EgressBlocked), a host that encodes
    (EgressConnectError)."""
    host = parts.hostname or ""
    scheme = parts.scheme
    if scheme not in ALLOWED_SCHEMES:
        raise EgressBlocked("Only http and https URLs may be called.", host=host)
    if scheme != "https" and _require_https():
        raise EgressBlocked(
            "Only https URLs may be called (credentials never travel in clear text).", host=host
        )
    try:
        if not host.isascii():
            host = idna.encode(host, uts46=True).decode("ascii")
        port = parts.port or (443 if scheme == "https" else 80)
    except (UnicodeError, ValueError):  # idna.IDNAError is a UnicodeError
        raise EgressConnectError(f"Could not connect to {host} (InvalidURL).", host=host) from None
    if not host:
        raise EgressBlocked("The URL has no host.", host=host)
    return host, port


def egress_request(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    json: Any = None,
    content: bytes | str | None = None,
    data: dict[str, Any] | None = None,
    timeout: float | None = None,
    max_bytes: int | None = None,
    send_by: float | None = None,
) -> EgressResponse:
    """Make one outbound request under Grantry's egress rules. Never follows redirects.
    `max_bytes` lowers the response-size cap for this call (never raises it);
    `send_by` (time.monotonic()) is when the request must have been written."""
    started = time.monotonic()
    parts = urlsplit(url)
    scheme = parts.scheme
    host, port = _destination(parts)
    seconds = float(timeout if timeout is not None else settings.GRANTRY_EGRESS_TIMEOUT)
    cap = int(settings.GRANTRY_EGRESS_MAX_RESPONSE_BYTES)
    if max_bytes is not None:
        cap = min(cap, int(max_bytes))
    body, content_type = _body(json, content, data)
    request_headers = _headers(headers, content_type, parts)
    if not _headers_are_valid(request_headers):
        # Not the header's text: it may hold a credential.
        raise EgressConnectError(
            f"Could not send the request to {host} (invalid header).", host=host
        ) from None
    target = _target(parts, params)
    manager = _manager(bool(settings.GRANTRY_EGRESS_ALLOW_LOOPBACK))

    call = Call(started + seconds, send_by)
    token = CALL.set(call)
    reading = False
    try:
        response = _exchange(
            manager, (scheme, host, port), method.upper(), target, body, request_headers, call
        )
        try:
            if response.status == 101:
                raise Refused("101 Switching Protocols, never asked for")
            response_headers = ResponseHeaders(response.headers.items())
            reading = True
            content_bytes = read_body(
                response, host=host, cap=cap, deadline=call.deadline, started=started
            )
        except BaseException:
            response.close()  # and its connection: the rest of the answer is unread
            raise
        finally:
            response.release_conn()  # back to the pool (if closed, it reconnects)
    except EgressError as exc:
        exc.elapsed_ms = _elapsed_ms(started)
        raise
    except (HTTPError, OSError, http.client.HTTPException) as exc:
        # Chained to the low-level cause only: urllib3's exceptions keep the request
        # target (and its query string) in an attribute.
        raise _failure(exc, host, seconds, started, reading=reading) from _root(exc)
    except ValueError:
        # http.client refused some text (a header value outside latin-1); it may
        # hold a credential.
        raise EgressConnectError(
            f"Could not send the request to {host} (invalid header).",
            host=host,
            elapsed_ms=_elapsed_ms(started),
        ) from None
    finally:
        CALL.reset(token)
    return EgressResponse(
        status_code=response.status,
        headers=response_headers,
        content=content_bytes,
        elapsed_ms=_elapsed_ms(started),
        url=url,
    )


def _exchange(
    manager: GuardedPoolManager,
    destination: tuple[str, str, int],
    method: str,
    target: str,
    body: bytes | None,
    headers: dict[str, str],
    call: Call,
) -> BaseHTTPResponse:
    """Send the request and read the head of the answer; the body stays unread. If a
    reused connection failed before any byte of an answer came back, a GET, HEAD or
    OPTIONS goes once more. So does any request whose pool another thread closed (it
    was the least recently used) before a connection was taken from it."""
    scheme, host, port = destination
    retried = reopened = False
    while True:
        call.opened, call.received = False, 0
        call.send_time_left()  # nothing is even connected once the send window has ended
        pool = manager.connection_from_host(host, port, scheme)
        try:
            return pool.urlopen(
                method,
                target,
                body=body,
                headers=headers,
                retries=NO_RETRIES,
                redirect=False,
                assert_same_host=False,
                timeout=call.time_left(),
                preload_content=False,
                release_conn=False,
            )
        except ClosedPoolError:
            if reopened:
                raise
            reopened = True  # nothing was sent; the next lookup makes a new pool
            continue
        except (HTTPError, OSError, http.client.HTTPException) as exc:
            if (
                retried
                or call.opened
                or call.received
                or method not in _RETRYABLE
                or not isinstance(_root(exc), _STALE)
            ):
                raise
            retried = True


def _root(exc: BaseException) -> BaseException:
    """The innermost cause of an exception urllib3 wrapped (it chains, or passes the
    original as an argument)."""
    seen = {id(exc)}
    while True:
        inner = exc.__cause__ or exc.__context__
        if inner is None:
            inner = next((arg for arg in exc.args if isinstance(arg, BaseException)), None)
        if inner is None or id(inner) in seen:
            return exc
        seen.add(id(inner))
        exc = inner


def _window_closed(exc: BaseException) -> bool:
    """Whether SendWindowClosed is anywhere in the chain (it may wrap the socket's
    timeout, so it is not always the root)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, SendWindowClosed):
            return True
        seen.add(id(current))
        inner = current.__cause__ or current.__context__
        if inner is None:
            inner = next((arg for arg in current.args if isinstance(arg, BaseException)), None)
        current = inner
    return False


def _failure(
    exc: BaseException, host: str, seconds: float, started: float, *, reading: bool
) -> EgressError:
    root = _root(exc)
    elapsed = _elapsed_ms(started)
    if _window_closed(exc):
        return EgressNotSent(
            f"The request to {host} was not sent: its send window ended.",
            host=host,
            elapsed_ms=elapsed,
        )
    if isinstance(root, Refused):
        return EgressConnectError(
            f"Refused the answer from {host} ({root}).", host=host, elapsed_ms=elapsed
        )
    if isinstance(root, TimeoutError):
        verb = "finish answering" if reading else "answer"
        return EgressTimeout(
            f"{host} did not {verb} within {seconds:g}s.", host=host, elapsed_ms=elapsed
        )
    if reading:
        message = f"The answer from {host} broke off ({type(root).__name__})."
    else:
        message = f"Could not connect to {host} ({type(root).__name__})."
    return EgressConnectError(message, host=host, elapsed_ms=elapsed)
