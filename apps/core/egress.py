"""The one outbound HTTP client: every call Grantry makes to a SaaS goes through here.

Token, revocation, identity and broker API calls share kept-alive connections
(connection reuse matters for the broker's latency), built on the standard
library's `http.client` with a small pool of our own, with:

* timeouts (settings.GRANTRY_EGRESS_TIMEOUT or the `timeout` argument) on the
  connect, the TLS handshake and every read and write, plus one deadline for
  sending the request and reading the whole answer (head and body), so a
  server that drips bytes cannot hold a worker;
* no redirects followed (a 3xx is returned as it is);
* a response-size cap (settings.GRANTRY_EGRESS_MAX_RESPONSE_BYTES), enforced on
  the declared Content-Length and while streaming, on the decoded body: gzip
  and deflate are inflated a bounded piece at a time, so a compressed bomb is
  caught too;
* https only, except where loopback is allowed (development and tests);
* an SSRF guard: the host is resolved, EVERY resolved address must be public
  (no private, loopback, link-local, multicast, reserved, CGNAT or cloud
  metadata address), and the TCP connection is made to the address that was
  checked, while the Host header and TLS SNI/certificate check keep the
  original name. That pins the address, so DNS rebinding between check and
  connect cannot happen. Connections are pooled per (scheme, hostname, port),
  never per address; a kept-alive connection was checked when it was opened.
  Loopback is allowed only with settings.GRANTRY_EGRESS_ALLOW_LOOPBACK
  (development and tests); metadata addresses never are;
* no cookies stored or sent by the client, no proxies from the environment.

A pooled connection is reused only after its previous answer was read in full
and did not ask to close; one the server has closed while it sat idle is
dropped before use. If a reused connection fails before any byte of the
answer arrived (the server closed it as the request went out), the request is
sent once more on a new connection; nothing else is ever retried.

Errors never carry the URL (a query string may hold a credential), only the
host name and the elapsed time.
"""

from __future__ import annotations

import http.client
import ipaddress
import json as jsonlib
import math
import select
import socket
import ssl
import threading
import time
import zlib
from base64 import b64encode
from collections.abc import ItemsView, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import SplitResult, quote, unquote, unquote_plus, urlencode, urlsplit

from django.conf import settings

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

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata endpoints. Most are link-local or private anyway; listed so
# that no setting (not even loopback for dev) can ever open them.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.123",  # AWS time sync
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
    )
)
ALLOWED_SCHEMES = frozenset({"http", "https"})

DEFAULT_HEADERS = {
    "Accept": "*/*",
    "Accept-Encoding": "gzip, deflate",
    "User-Agent": "Grantry/1.0",
}
_READ_SIZE = 64 * 1024


class EgressError(Exception):
    """Base: an outbound call did not produce a usable response."""

    def __init__(self, message: str, *, host: str = "", elapsed_ms: int = 0) -> None:
        super().__init__(message)
        self.host = host
        self.elapsed_ms = elapsed_ms


class EgressBlocked(EgressError):
    """The destination is not allowed (scheme, address, metadata endpoint)."""


class EgressTimeout(EgressError):
    """Connect, read or the overall deadline ran out."""


class EgressConnectError(EgressError):
    """DNS failure, refused connection, TLS failure or a broken transfer."""


class EgressTooLarge(EgressError):
    """The response body exceeded the configured cap; it was not read further."""


class ResponseHeaders(Mapping[str, str]):
    """Response headers, looked up in any capitalisation. A name sent more than once
    reads as its values joined by ", "; names iterate in lower case (as httpx.Headers)."""

    __slots__ = ("_values",)

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        values: dict[str, str] = {}
        for name, value in pairs:
            key = name.lower()
            values[key] = f"{values[key]}, {value}" if key in values else value
        self._values = values

    def __getitem__(self, name: str) -> str:
        return self._values[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def items(self) -> ItemsView[str, str]:
        return self._values.items()

    def __repr__(self) -> str:
        return f"ResponseHeaders({self._values!r})"


@dataclass(frozen=True)
class EgressResponse:
    status_code: int
    headers: ResponseHeaders
    content: bytes
    elapsed_ms: int
    url: str = field(repr=False)  # may carry a credential in its query string

    def json(self) -> Any:
        return jsonlib.loads(self.content)

    @property
    def text(self) -> str:
        charset = "utf-8"
        for part in self.headers.get("Content-Type", "").split(";")[1:]:
            name, _, value = part.strip().partition("=")
            if name.lower() == "charset" and value:
                charset = value.strip('"')
        try:
            return self.content.decode(charset, "replace")
        except LookupError:
            return self.content.decode("utf-8", "replace")

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    def is_success(self) -> bool:
        return 200 <= self.status_code < 300


# --- The SSRF guard ---------------------------------------------------------


def _address_refusal(ip: IPAddress, *, allow_loopback: bool) -> str | None:
    """Why `ip` may not be contacted, or None if it may."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is not None:
            return _address_refusal(embedded, allow_loopback=allow_loopback)
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_loopback:
        return None if allow_loopback else "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "a non-public address"
    return None


def check_destination(host: str, port: int) -> str:
    """Resolve `host` and return the one address to connect to, or raise EgressBlocked.

    Every address the name resolves to must pass; a name that resolves to one
    public and one private address is refused (that is how rebinding starts)."""
    allow_loopback = bool(settings.GRANTRY_EGRESS_ALLOW_LOOPBACK)
    if not host:
        raise EgressBlocked("The URL has no host.", host=host)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        candidates = [literal]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise EgressConnectError(f"Could not resolve {host}.", host=host) from exc
        candidates = []
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if address not in candidates:
                candidates.append(address)
        if not candidates:
            raise EgressConnectError(f"Could not resolve {host}.", host=host)
    for address in candidates:
        reason = _address_refusal(address, allow_loopback=allow_loopback)
        if reason is not None:
            raise EgressBlocked(f"{host} resolves to {reason}; refusing to connect.", host=host)
    return str(candidates[0])


# --- Connections --------------------------------------------------------------


def _time_left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the request's deadline has passed")
    return left


class _Socket(socket.socket):
    """A TCP socket whose every read and write ends by the current request's deadline
    (set per request), and which counts the bytes read since the request went out
    (a failed reuse may be retried only if no byte of an answer had arrived)."""

    deadline = math.inf
    received = 0

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self.settimeout(_time_left(self.deadline))
        count = super().recv_into(buffer, nbytes, flags)
        self.received += count
        return count

    def sendall(self, data: Any, flags: int = 0) -> None:
        self.settimeout(_time_left(self.deadline))
        super().sendall(data, flags)


class _TLSSocket(ssl.SSLSocket):
    """_Socket's deadline and byte count, after the TLS handshake (see _tls_context)."""

    deadline = math.inf
    received = 0

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        self.settimeout(_time_left(self.deadline))
        count = super().recv_into(buffer, nbytes, flags)
        self.received += count
        return count

    def sendall(self, data: Any, flags: int = 0) -> None:
        self.settimeout(_time_left(self.deadline))
        super().sendall(data, flags)


def _make_tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()  # certificate and hostname checks on
    context.set_alpn_protocols(["http/1.1"])
    context.sslsocket_class = _TLSSocket
    return context


_tls: ssl.SSLContext | None = None


def _tls_context() -> ssl.SSLContext:
    global _tls
    if _tls is None:
        _tls = _make_tls_context()  # a race builds two equal contexts; harmless
    return _tls


class _Connection(http.client.HTTPConnection):
    """An HTTP/1.1 connection to `address`, the one the guard checked. The Host header
    (http.client builds it from `host`) keeps the name from the URL."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address
        self.idle_since = 0.0
        # Checked under the loopback allowance: reuse must not outlive the setting.
        self.needs_loopback = (
            _address_refusal(ipaddress.ip_address(address), allow_loopback=False) is not None
        )

    def _open_tcp(self) -> _Socket:
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        sock = _Socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.connect((self.address, self.port))
        except BaseException:
            sock.close()
            raise
        return sock

    def connect(self) -> None:
        self.sock = self._open_tcp()

    @property
    def timed_socket(self) -> _Socket | _TLSSocket:
        return cast(_Socket | _TLSSocket, self.sock)


class _TLSConnection(_Connection):
    """TLS to the checked address; SNI and the certificate check use the host name."""

    default_port = http.client.HTTPS_PORT

    def connect(self) -> None:
        sock = self._open_tcp()
        try:
            self.sock = _tls_context().wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


def _closed_while_idle(conn: _Connection) -> bool:
    """Whether the server closed (or wrote garbage on) a connection that sat idle:
    between answers a healthy kept-alive socket has nothing to read."""
    sock = conn.sock
    if sock is None:
        return True
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class _Pool:
    """Idle kept-alive connections to one (scheme, hostname, port)."""

    MAX_IDLE = 50
    IDLE_SECONDS = 30.0  # older idle connections are closed rather than reused

    def __init__(self, scheme: str, host: str, port: int) -> None:
        self.scheme = scheme
        self.host = host
        self.port = port
        self._idle: list[_Connection] = []  # most recently used last
        self._lock = threading.Lock()
        self._retired = False

    def take(self, *, allow_loopback: bool) -> _Connection | None:
        """An idle connection that still looks open, or None."""
        expired = time.monotonic() - self.IDLE_SECONDS
        while True:
            with self._lock:
                if not self._idle:
                    return None
                conn = self._idle.pop()
            if (
                conn.idle_since > expired
                and (allow_loopback or not conn.needs_loopback)
                and not _closed_while_idle(conn)
            ):
                return conn
            conn.close()

    def put(self, conn: _Connection) -> None:
        conn.idle_since = time.monotonic()
        with self._lock:
            if not self._retired and len(self._idle) < self.MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def retire(self) -> None:
        with self._lock:
            self._retired = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def open(self, timeout: float) -> _Connection:
        """A new connection, to the address the guard checks now."""
        address = check_destination(self.host, self.port)
        cls = _TLSConnection if self.scheme == "https" else _Connection
        conn = cls(self.host, self.port, address, timeout)
        conn.connect()
        return conn


MAX_POOLS = 512
_pools: dict[tuple[str, str, int], _Pool] = {}
_pools_lock = threading.Lock()


def _pool(scheme: str, host: str, port: int) -> _Pool:
    key = (scheme, host, port)
    pool = _pools.get(key)
    if pool is None:
        with _pools_lock:
            pool = _pools.get(key)
            if pool is None:
                if len(_pools) >= MAX_POOLS:
                    # Forget the oldest pool; requests in flight on it close their
                    # connection instead of returning it.
                    _pools.pop(next(iter(_pools))).retire()
                pool = _pools[key] = _Pool(scheme, host, port)
    return pool


# --- Content-Encoding ---------------------------------------------------------


class _Inflater:
    """Incremental gzip/deflate decoding that never produces more than it is allowed to."""

    def __init__(self, wbits: int) -> None:
        self._decompressor = zlib.decompressobj(wbits)
        # "deflate" is meant to be zlib-wrapped, but some servers send it raw.
        self._may_be_raw = wbits == zlib.MAX_WBITS

    def feed(self, data: bytes, allowed: int) -> bytes:
        """Decode `data`; more than `allowed` bytes out means the cap is exceeded, so at
        most one byte past it is ever produced. An answer under max_length means all
        input was consumed."""
        try:
            out = self._decompressor.decompress(data, allowed + 1)
        except zlib.error:
            if not self._may_be_raw:
                raise
            self._decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
            out = self._decompressor.decompress(data, allowed + 1)
        self._may_be_raw = False
        return out

    def finish(self, data: bytes, allowed: int) -> bytes:
        out = self.feed(data, allowed) if data else b""
        if len(out) > allowed:
            return out  # refused by the caller; flush() would inflate the rest unbounded
        return out + self._decompressor.flush()  # all input is consumed: little or nothing


def _inflaters(content_encoding: str | None) -> list[_Inflater]:
    """Decoders in the order to apply them (the last encoding applied comes off first).
    Unknown codings pass through as they are, as httpx did."""
    if not content_encoding:
        return []
    inflaters = []
    for coding in reversed(content_encoding.split(",")):
        name = coding.strip().lower()
        if name in ("gzip", "x-gzip"):
            inflaters.append(_Inflater(zlib.MAX_WBITS | 16))
        elif name == "deflate":
            inflaters.append(_Inflater(zlib.MAX_WBITS))
    return inflaters


# --- Requests -----------------------------------------------------------------


def _require_https() -> bool:
    """Plain http only where loopback is allowed too (development, tests), unless
    GRANTRY_EGRESS_REQUIRE_HTTPS says otherwise."""
    explicit = getattr(settings, "GRANTRY_EGRESS_REQUIRE_HTTPS", None)
    if explicit is not None:
        return bool(explicit)
    return not settings.GRANTRY_EGRESS_ALLOW_LOOPBACK


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _as_text(value: Any) -> str:
    # JSON-style booleans and None as empty, as httpx encoded params and forms.
    if value is True:
        return "true"
    if value is False:
        return "false"
    return "" if value is None else str(value)


def _pairs(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for key, value in values.items():
        if isinstance(value, list | tuple):
            pairs.extend((key, _as_text(item)) for item in value)
        else:
            pairs.append((key, _as_text(value)))
    return pairs


def _target(parts: SplitResult, params: Mapping[str, Any] | None) -> str:
    """Path and query to send. `params` replace same-named keys of the URL's query, as
    with httpx: a credential placed in the query is sent once, never next to a value
    the URL already carried under that name."""
    query = parts.query
    if params:
        added = urlencode(_pairs(params))
        kept = [
            piece
            for piece in query.split("&")
            if piece and unquote_plus(piece.partition("=")[0]) not in params
        ]
        query = "&".join([*kept, added] if added else kept)
    target = (parts.path or "/") + (f"?{query}" if query else "")
    # Percent-encode what may not travel raw (spaces, non-ASCII); "%" stays as it is.
    return quote(target, safe="!$%&'()*+,/:;=?@[]~")


def _body(
    json: Any, content: bytes | str | None, data: Mapping[str, Any] | None
) -> tuple[bytes | None, str | None]:
    """The body and the Content-Type it implies (httpx's precedence)."""
    if content is not None:
        # Empty is no body (POST, PUT and PATCH still say Content-Length: 0).
        return (content.encode() if isinstance(content, str) else content) or None, None
    if data:
        return urlencode(_pairs(data)).encode(), "application/x-www-form-urlencoded"
    if json is not None:
        encoded = jsonlib.dumps(json, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return encoded.encode(), "application/json"
    return None, None


def _headers(
    given: Mapping[str, str] | None, content_type: str | None, parts: SplitResult
) -> dict[str, str]:
    """Defaults, then the caller's headers (names as given) over them."""
    names = {name.lower() for name in given} if given else set()
    headers = {k: v for k, v in DEFAULT_HEADERS.items() if k.lower() not in names}
    if content_type and "content-type" not in names:
        headers["Content-Type"] = content_type
    if (parts.username or parts.password) and "authorization" not in names:
        # Credentials in the URL become Basic auth, as httpx did.
        userinfo = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + b64encode(userinfo.encode()).decode()
    if given:
        headers.update(given)
    return headers


# How a kept-alive connection the server closed just as the request went out fails.
_STALE = (BrokenPipeError, ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError)


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
            host = host.encode("idna").decode("ascii")
        port = parts.port or (443 if scheme == "https" else 80)
    except (UnicodeError, ValueError):
        raise EgressConnectError(f"Could not connect to {host} (InvalidURL).", host=host) from None
    seconds = float(timeout if timeout is not None else settings.GRANTRY_EGRESS_TIMEOUT)
    cap = int(settings.GRANTRY_EGRESS_MAX_RESPONSE_BYTES)
    body, content_type = _body(json, content, data)
    request_headers = _headers(headers, content_type, parts)
    target = _target(parts, params)

    pool = _pool(scheme, host, port)
    try:
        conn, response = _exchange(
            pool,
            method.upper(),
            target,
            body,
            request_headers,
            seconds=seconds,
            deadline=started + seconds,
        )
    except EgressError as exc:
        exc.elapsed_ms = _elapsed_ms(started)
        raise
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
        # An illegal header name or value; its text may hold a credential.
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
        pool.put(conn)
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
    pool: _Pool,
    method: str,
    target: str,
    body: bytes | None,
    headers: dict[str, str],
    *,
    seconds: float,
    deadline: float,
) -> tuple[_Connection, http.client.HTTPResponse]:
    """Send the request and read the head of the answer, on an idle pooled connection
    if there is one. If a reused connection fails before any byte of an answer came
    back, the request goes once more on a new connection. A connection that raised
    is closed."""
    conn = pool.take(allow_loopback=bool(settings.GRANTRY_EGRESS_ALLOW_LOOPBACK))
    while True:
        fresh = conn is None
        if conn is None:
            conn = pool.open(seconds)
        sock = conn.timed_socket
        sock.deadline = deadline
        sock.received = 0
        try:
            conn.request(method, target, body, headers)
            return conn, conn.getresponse()
        except _STALE:
            conn.close()
            if fresh or sock.received:
                raise
        except BaseException:
            conn.close()
            raise
        conn = None


def _read_body(
    response: http.client.HTTPResponse,
    content_encoding: str | None,
    *,
    host: str,
    cap: int,
    started: float,
) -> bytes:
    """The whole (decoded) body, or EgressTooLarge as soon as it passes `cap`."""

    def too_large() -> EgressTooLarge:
        return EgressTooLarge(
            f"{host} answered with more than {cap} bytes.",
            host=host,
            elapsed_ms=_elapsed_ms(started),
        )

    if response.length is not None and response.length > cap:
        raise too_large()
    inflaters = _inflaters(content_encoding)
    chunks: list[bytes] = []
    received = size = 0
    while block := response.read(_READ_SIZE):
        received += len(block)  # what the decoders are fed is bounded too
        if received > cap:
            raise too_large()
        for inflater in inflaters:
            block = inflater.feed(block, cap - size)
            if len(block) > cap - size:
                raise too_large()
        size += len(block)
        chunks.append(block)
    if response.length:  # the connection closed before Content-Length bytes came
        raise http.client.IncompleteRead(b"", response.length)
    if inflaters:
        tail = b""
        for inflater in inflaters:
            tail = inflater.finish(tail, cap - size)
            if len(tail) > cap - size:
                raise too_large()
        chunks.append(tail)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
