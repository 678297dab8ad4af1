"""The one outbound HTTP client: every call Grantry makes to a SaaS goes through here.

Token, revocation, identity and broker API calls share kept-alive connections
(connection reuse matters for the broker's latency), built on the standard
library's `http.client` with a small pool of our own, with:

* timeouts (settings.GRANTRY_EGRESS_TIMEOUT or the `timeout` argument) as one
  deadline for the whole call: the connect, the TLS handshake and every read
  and write get only the time that is left, so a server that drips bytes
  cannot hold a worker (the DNS lookup is the one step it cannot bound);
* no redirects followed (a 3xx is returned as it is);
* a response-size cap (settings.GRANTRY_EGRESS_MAX_RESPONSE_BYTES), enforced on
  the declared Content-Length and while streaming, on the decoded body: gzip
  and deflate are inflated a bounded piece at a time, so a compressed bomb is
  caught too;
* https only, except where loopback is allowed (development and tests);
* non-ASCII host names encoded with IDNA 2008 as httpx did (after the UTS 46
  mapping of case and width), never IDNA 2003, which reads some as other names;
* an SSRF guard: the host is resolved, EVERY resolved address must be public
  (no private, loopback, link-local, multicast, reserved, CGNAT or cloud
  metadata address), and the TCP connection is made to the address that was
  checked, while the Host header and TLS SNI/certificate check keep the
  original name. That pins the address, so DNS rebinding between check and
  connect cannot happen. Connections are pooled per (scheme, hostname, port),
  never per address; a kept-alive connection was checked when it was opened.
  Loopback is allowed only with settings.GRANTRY_EGRESS_ALLOW_LOOPBACK
  (development and tests); metadata addresses never are;
* no cookies stored or sent by the client, no proxies from the environment;
* certificates checked against certifi's CA bundle (as httpx did), not the
  system store, which slim images may not have;
* header names and values checked before anything is sent (no CR, LF, NUL or
  other control character; names are tokens);
* answers framed as strictly as httpx's parser framed them: interim 1xx answers
  (103 Early Hints …) are skipped, 101 is refused, a Transfer-Encoding other
  than chunked or conflicting Content-Lengths are refused, and a connection
  whose answer carried both Transfer-Encoding and Content-Length is not reused.
  Folded header values are unfolded, and CR, LF and NUL dropped from them.

A pooled connection is reused only after its previous answer was read in full
and did not ask to close; one the server has closed while it sat idle is
dropped before use. If a reused connection fails before any byte of the
answer arrived (the server closed it as the request went out), a GET, HEAD or
OPTIONS request is sent once more on a new connection; any other method fails,
since the server may have acted on it (a refresh token sent twice can revoke
the grant). Nothing else is ever retried.

Errors never carry the URL (a query string may hold a credential), only the
host name and the elapsed time.

The package: this module holds `egress_request` and the process-wide state it
keeps (the TLS context, the pools per destination); `guard` decides where a call
may go, `request` builds what is sent, `connection` is the wire and the idle
pool, `response` reads and decodes the answer, and `errors` holds the exceptions.
"""

from __future__ import annotations

import http.client
import ssl
import threading
import time
import zlib
from collections import OrderedDict
from typing import Any
from urllib.parse import urlsplit

import idna
from django.conf import settings

from .connection import PoolKey, _Connection, _make_tls_context, _Pool, _Refused, _TLSConnection
from .errors import (
    EgressBlocked,
    EgressConnectError,
    EgressError,
    EgressTimeout,
    EgressTooLarge,
    _elapsed_ms,
)
from .guard import ALLOWED_SCHEMES, _require_https, check_destination
from .guard import METADATA_ADDRESSES as METADATA_ADDRESSES
from .guard import _address_refusal as _address_refusal
from .request import DEFAULT_HEADERS as DEFAULT_HEADERS
from .request import _body, _headers, _headers_are_valid, _target
from .response import EgressResponse, ResponseHeaders, _read_body

# The public names. Names imported "as" themselves above stay reachable as
# apps.core.egress.<name>, as they were before the module became a package.
__all__ = [
    "EgressBlocked",
    "EgressConnectError",
    "EgressError",
    "EgressResponse",
    "EgressTimeout",
    "EgressTooLarge",
    "check_destination",
    "egress_request",
]

# --- Process-wide state -------------------------------------------------------
# One TLS context and the pools per destination. They live where they are looked
# up, so that setting apps.core.egress._tls, ._pools or .MAX_POOLS takes effect.

_tls: ssl.SSLContext | None = None


def _tls_context() -> ssl.SSLContext:
    global _tls
    if _tls is None:
        _tls = _make_tls_context()  # a race builds two equal contexts; harmless
    return _tls


MAX_POOLS = 512
# Least recently used first. A pool is made only once a connection has answered, so
# calls to blocked or dead destinations cannot push the live ones out.
_pools: OrderedDict[PoolKey, _Pool] = OrderedDict()
_pools_lock = threading.Lock()


def _pool(key: PoolKey) -> _Pool | None:
    """The pool for `key`, if there is one, now the most recently used."""
    with _pools_lock:
        pool = _pools.get(key)
        if pool is not None:
            _pools.move_to_end(key)
    return pool


def _pool_for(key: PoolKey) -> _Pool:
    """The pool for `key`, made if need be; the least recently used one goes past
    MAX_POOLS (requests in flight on it close their connection instead of returning it)."""
    retired = []
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            while len(_pools) >= MAX_POOLS:
                retired.append(_pools.popitem(last=False)[1])
            pool = _pools[key] = _Pool()
        else:
            _pools.move_to_end(key)
    for old in retired:
        old.retire()
    return pool


def _open(scheme: str, host: str, port: int, deadline: float) -> _Connection:
    """A new connection, to the address the guard checks now."""
    address = check_destination(host, port)
    if scheme == "https":
        conn: _Connection = _TLSConnection(host, port, address, deadline, _tls_context())
    else:
        conn = _Connection(host, port, address, deadline)
    conn.connect()
    return conn


# --- Requests -----------------------------------------------------------------


# How a kept-alive connection the server closed just as the request went out fails.
_STALE = (BrokenPipeError, ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError)
# Only these may go again after such a failure: the server may have acted on the
# request before it closed (RFC 9110 section 9.2.2), and a POST that redeems a code
# or rotates a refresh token must not arrive twice.
_RETRYABLE = frozenset({"GET", "HEAD", "OPTIONS"})


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
) -> EgressResponse:
    """Make one outbound request under Grantry's egress rules. Never follows redirects."""
    started = time.monotonic()
    parts = urlsplit(url)
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
    seconds = float(timeout if timeout is not None else settings.GRANTRY_EGRESS_TIMEOUT)
    cap = int(settings.GRANTRY_EGRESS_MAX_RESPONSE_BYTES)
    body, content_type = _body(json, content, data)
    request_headers = _headers(headers, content_type, parts)
    if not _headers_are_valid(request_headers):
        # Not the header's text: it may hold a credential.
        raise EgressConnectError(
            f"Could not send the request to {host} (invalid header).", host=host
        ) from None
    target = _target(parts, params)

    key = (scheme, host, port)
    pool = _pool(key)
    try:
        conn, response = _exchange(
            pool, key, method.upper(), target, body, request_headers, deadline=started + seconds
        )
    except EgressError as exc:
        exc.elapsed_ms = _elapsed_ms(started)
        raise
    except _Refused as exc:
        raise EgressConnectError(
            f"Refused the answer from {host} ({exc}).",
            host=host,
            elapsed_ms=_elapsed_ms(started),
        ) from exc
    except TimeoutError as exc:
        raise EgressTimeout(
            f"{host} did not answer within {seconds:g}s.",
            host=host,
            elapsed_ms=_elapsed_ms(started),
        ) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise EgressConnectError(
            f"Could not connect to {host} ({type(exc).__name__}).",
            host=host,
            elapsed_ms=_elapsed_ms(started),
        ) from exc
    except ValueError:
        # http.client refused some text (a header value outside latin-1); it may
        # hold a credential.
        raise EgressConnectError(
            f"Could not send the request to {host} (invalid header).",
            host=host,
            elapsed_ms=_elapsed_ms(started),
        ) from None

    response_headers = ResponseHeaders(response.msg.items())
    try:
        try:
            content_bytes = _read_body(
                response,
                response_headers.get("content-encoding"),
                host=host,
                cap=cap,
                started=started,
            )
        except BaseException:
            conn.close()  # the rest of this answer would be read as the next one's start
            raise
    except TimeoutError as exc:
        raise EgressTimeout(
            f"{host} did not finish answering within {seconds:g}s.",
            host=host,
            elapsed_ms=_elapsed_ms(started),
        ) from exc
    except (OSError, http.client.HTTPException, zlib.error) as exc:
        raise EgressConnectError(
            f"The answer from {host} broke off ({type(exc).__name__}).",
            host=host,
            elapsed_ms=_elapsed_ms(started),
        ) from exc
    # http.client has already dropped the socket if the answer said "Connection: close".
    if conn.sock is not None and response.version == 11 and not response.will_close:
        (pool or _pool_for(key)).put(conn)
    else:
        conn.close()
    return EgressResponse(
        status_code=response.status,
        headers=response_headers,
        content=content_bytes,
        elapsed_ms=_elapsed_ms(started),
        url=url,
    )


def _exchange(
    pool: _Pool | None,
    key: PoolKey,
    method: str,
    target: str,
    body: bytes | None,
    headers: dict[str, str],
    *,
    deadline: float,
) -> tuple[_Connection, http.client.HTTPResponse]:
    """Send the request and read the head of the answer, on an idle pooled connection
    if there is one. If a reused connection fails before any byte of an answer came
    back, a GET, HEAD or OPTIONS goes once more on a new connection. A connection
    that raised is closed."""
    allow_loopback = bool(settings.GRANTRY_EGRESS_ALLOW_LOOPBACK)
    conn = pool.take(allow_loopback=allow_loopback) if pool is not None else None
    while True:
        fresh = conn is None
        if conn is None:
            conn = _open(*key, deadline)
        sock = conn.timed_socket
        sock.deadline = deadline
        sock.received = 0
        try:
            conn.request(method, target, body, headers)
            return conn, conn.getresponse()
        except _STALE:
            conn.close()
            if fresh or sock.received or method not in _RETRYABLE:
                raise
        except BaseException:
            conn.close()
            raise
        conn = None
