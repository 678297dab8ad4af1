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
"""

from __future__ import annotations

import http.client
import ipaddress
import json as jsonlib
import math
import re
import select
import socket
import ssl
import threading
import time
import zlib
from base64 import b64encode
from collections import OrderedDict
from collections.abc import ItemsView, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import SplitResult, quote, unquote, unquote_plus, urlencode, urlsplit

import idna
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


# An obsolete line folding inside a header value, and what may not remain after it:
# the broker copies some answer headers into its own response, which refuses them.
_FOLD = re.compile(r"\r?\n[ \t]+")
_NOT_IN_VALUE = re.compile(r"[\r\n\0]")


class ResponseHeaders(Mapping[str, str]):
    """Response headers, looked up in any capitalisation. A name sent more than once
    reads as its values joined by ", "; names iterate in lower case (as httpx.Headers).
    Folded values are unfolded; CR, LF and NUL are dropped."""

    __slots__ = ("_values",)

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        values: dict[str, str] = {}
        for name, value in pairs:
            if "\n" in value or "\r" in value or "\0" in value:
                value = _NOT_IN_VALUE.sub("", _FOLD.sub(" ", value))
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
    # certifi's bundle, as httpx used: a slim image may have no system store at all.
    try:
        import certifi
    except ImportError:  # pragma: no cover (httpx, still a requirement, brings it)
        cafile = None
    else:
        cafile = certifi.where()
    context = ssl.create_default_context(cafile=cafile)  # certificate and hostname checks on
    context.set_alpn_protocols(["http/1.1"])
    context.sslsocket_class = _TLSSocket
    return context


_tls: ssl.SSLContext | None = None


def _tls_context() -> ssl.SSLContext:
    global _tls
    if _tls is None:
        _tls = _make_tls_context()  # a race builds two equal contexts; harmless
    return _tls


class _Refused(http.client.HTTPException):
    """An answer this client does not read; its text says why, never what was in it."""


class _Response(http.client.HTTPResponse):
    """http.client's response, framed as strictly as h11 (httpx's parser) framed one,
    so that no answer can be read as the start of the next one on the connection."""

    def begin(self) -> None:
        super().begin()
        # Interim answers (102 Processing, 103 Early Hints) precede the real one on
        # the same connection; http.client skips only 100 Continue.
        while 100 <= self.status < 200:
            if self.status == 101:
                raise _Refused("101 Switching Protocols, never asked for")
            self.headers = None  # type: ignore[assignment]  # begin() reads a new head only then
            super().begin()  # same buffered reader: bytes already read are not lost
        self._check_framing()

    def _check_framing(self) -> None:
        encodings = self.msg.get_all("transfer-encoding")
        lengths = self.msg.get_all("content-length")
        if encodings is not None:
            if len(encodings) != 1 or encodings[0].strip().lower() != "chunked":
                raise _Refused("a Transfer-Encoding other than chunked")
            if not self.chunked:  # http.client compares the value untrimmed
                self.chunked, self.chunk_left, self.length = True, None, None
            if lengths is not None:
                # RFC 9112 section 6.1: chunked wins. Such an answer is how request
                # smuggling starts, so its connection is not reused.
                self.will_close = True
        elif lengths is not None:
            values = {value.strip() for line in lengths for value in line.split(",")}
            length = values.pop() if len(values) == 1 else ""
            if not (length.isascii() and length.isdigit() and len(length) <= 18):
                raise _Refused("a malformed or conflicting Content-Length")
            if self.length is None:  # "5, 5", which http.client does not read
                self.length = int(length)
        if self.status in (204, 304):  # never a body, whatever the headers say
            self.chunked, self.length = False, 0


class _Connection(http.client.HTTPConnection):
    """An HTTP/1.1 connection to `address`, the one the guard checked, opened by
    `deadline`. The Host header (http.client builds it from `host`) keeps the name
    from the URL."""

    response_class = _Response
    auto_open = 0  # a closed connection is never silently opened again

    def __init__(self, host: str, port: int, address: str, deadline: float) -> None:
        super().__init__(host, port)
        self.address = address
        self.deadline = deadline
        self.idle_since = 0.0
        # Checked under the loopback allowance: reuse must not outlive the setting.
        self.needs_loopback = (
            _address_refusal(ipaddress.ip_address(address), allow_loopback=False) is not None
        )

    def _open_tcp(self) -> _Socket:
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        sock = _Socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(_time_left(self.deadline))
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
            sock.settimeout(_time_left(self.deadline))  # the handshake gets what is left
            self.sock = _tls_context().wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


def _open(scheme: str, host: str, port: int, deadline: float) -> _Connection:
    """A new connection, to the address the guard checks now."""
    address = check_destination(host, port)
    cls = _TLSConnection if scheme == "https" else _Connection
    conn = cls(host, port, address, deadline)
    conn.connect()
    return conn


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

    def __init__(self) -> None:
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


PoolKey = tuple[str, str, int]  # scheme, hostname, port
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


# An RFC 9110 token, and control characters but the tab (http.client lets a folded
# value and NUL through).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _headers_are_valid(headers: dict[str, str]) -> bool:
    # Values in one pass: joined by a tab, which a value may hold anyway.
    return _CONTROL.search("\t".join(headers.values())) is None and all(
        map(_TOKEN.fullmatch, headers)
    )


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
