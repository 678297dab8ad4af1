"""The wire: http.client connections to the address the guard checked, whose every
read and write ends by the call's deadline, answers framed as strictly as httpx's
parser framed them, and the idle pool kept per (scheme, hostname, port)."""

from __future__ import annotations

import http.client
import ipaddress
import math
import select
import socket
import ssl
import threading
import time
from typing import Any, cast

from .guard import _address_refusal


def _time_left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the request's deadline has passed")
    return left


class _Deadline:
    """Socket mixin: every read and write ends by the current request's deadline (set
    per request), and the bytes read since the request went out are counted (a
    failed reuse may be retried only if no byte of an answer had arrived)."""

    deadline = math.inf
    received = 0

    def recv_into(self, buffer: Any, *args: Any, **kwargs: Any) -> int:
        self.settimeout(_time_left(self.deadline))  # type: ignore[attr-defined]
        count: int = super().recv_into(buffer, *args, **kwargs)  # type: ignore[misc]
        self.received += count
        return count

    def sendall(self, data: Any, *args: Any, **kwargs: Any) -> None:
        self.settimeout(_time_left(self.deadline))  # type: ignore[attr-defined]
        super().sendall(data, *args, **kwargs)  # type: ignore[misc]


class _Socket(_Deadline, socket.socket):
    """A TCP socket with the request's deadline and byte count."""


class _TLSSocket(_Deadline, ssl.SSLSocket):
    """The same, after the TLS handshake (see _make_tls_context)."""


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

    def __init__(
        self, host: str, port: int, address: str, deadline: float, context: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, address, deadline)
        self.tls_context = context  # the process-wide one (see the package's _tls_context)

    def connect(self) -> None:
        sock = self._open_tcp()
        try:
            sock.settimeout(_time_left(self.deadline))  # the handshake gets what is left
            self.sock = self.tls_context.wrap_socket(sock, server_hostname=self.host)
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
