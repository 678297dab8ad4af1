"""The urllib3 adapter: connection classes whose `_new_conn` goes through the guard
(Sentry's src/sentry/net/http.py pattern), the pools and manager that use them, and
the per-call state the sockets read (deadline, whether this attempt opened a
connection, how many answer bytes arrived).

urllib3 and http.client own the wire: pooling, request framing, parsing the answer,
chunked bodies, TLS. What is ours:

* `_new_conn`: resolve, refuse any non-public address, connect to the checked one;
* a socket whose every read and write gets only the time left until the call's
  deadline (the TLS socket class too, through SSLContext.sslsocket_class), so a
  server that drips bytes cannot hold a worker past it;
* `_Answer`, http.client's response class with the rules http.client leaves out
  (cpython issue 42550; urllib3 takes its answer from http.client): interim 1xx
  answers (102, 103 …) are skipped instead of being taken for the answer, a
  Transfer-Encoding other than chunked or conflicting Content-Lengths are refused,
  an answer with both is not kept alive, and 204/304 never have a body.
"""

from __future__ import annotations

import contextvars
import http.client
import logging
import socket
import ssl
import time
from typing import Any

from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.util.retry import Retry

from .guard import safe_create_connection, time_left


class SendWindowClosed(OSError):
    """The call's send window (`egress_request(send_by=)`) ended before the request
    was written in full: nothing more is written."""


class Call:
    """One egress_request: its deadline, its send window (the request must be written
    by `send_by`, if set), and for the attempt under way whether it opened a new
    connection and how many answer bytes have arrived (a failed attempt may go again
    only if it did neither)."""

    __slots__ = ("deadline", "opened", "received", "send_by")

    def __init__(self, deadline: float, send_by: float | None = None) -> None:
        self.deadline = deadline
        self.send_by = send_by
        self.opened = False
        self.received = 0

    def time_left(self) -> float:
        left = time_left(self.deadline)
        assert left is not None
        return left

    def send_time_left(self) -> float:
        """The time left to connect and write: the deadline's, and no later than the
        send window. Raises SendWindowClosed once the window has ended."""
        left = self.time_left()
        if self.send_by is None:
            return left
        window = self.send_by - time.monotonic()
        if window <= 0:
            raise SendWindowClosed("the send window has ended")
        return min(left, window)


# The call the current thread is making; sockets read it on every read and write.
CALL: contextvars.ContextVar[Call | None] = contextvars.ContextVar("egress_call", default=None)


class _Timed:
    """Socket mixin: every read and write ends by the current call's deadline, and
    the bytes read are counted for the call."""

    def recv_into(self, buffer: Any, *args: Any, **kwargs: Any) -> int:
        call = CALL.get()
        if call is None:
            return super().recv_into(buffer, *args, **kwargs)  # type: ignore[misc]
        self.settimeout(call.time_left())  # type: ignore[attr-defined]
        count: int = super().recv_into(buffer, *args, **kwargs)  # type: ignore[misc]
        call.received += count
        return count

    def sendall(self, data: Any, *args: Any, **kwargs: Any) -> None:
        call = CALL.get()
        if call is None:
            super().sendall(data, *args, **kwargs)  # type: ignore[misc]
            return
        # Piece by piece, each bounded by the time left (SSLSocket.sendall would give
        # every piece the whole timeout): the deadline, and the send window.
        view = memoryview(data).cast("B")
        while view:
            timeout = call.send_time_left()
            self.settimeout(timeout)  # type: ignore[attr-defined]
            try:
                sent: int = self.send(view, *args)  # type: ignore[attr-defined]
            except TimeoutError as exc:
                if timeout < call.time_left():  # the window ended, not the deadline
                    raise SendWindowClosed("the send window ended mid-request") from exc
                raise
            view = view[sent:]


class _TimedSocket(_Timed, socket.socket):
    pass


class _TimedTLSSocket(_Timed, ssl.SSLSocket):
    pass


def make_tls_context() -> ssl.SSLContext:
    """Certificate and host name checks on, against certifi's CA bundle (as httpx
    used: a slim image may have no system store at all)."""
    import certifi

    context = ssl.create_default_context(cafile=certifi.where())
    context.sslsocket_class = _TimedTLSSocket  # what wrap_socket returns
    return context


class Refused(http.client.HTTPException):
    """An answer this client does not read; its text says why, never what was in it."""


class _Answer(http.client.HTTPResponse):
    """http.client's response with the rules it leaves out, so that no answer can be
    read as the start of the next one on a kept-alive connection. http.client
    still parses every byte."""

    def begin(self) -> None:
        super().begin()
        # http.client skips only 100 Continue. begin() reads a new head from the
        # same buffered reader once the previous one is forgotten.
        while 100 < self.status < 200 and self.status != 101:
            self.headers = None  # type: ignore[assignment]
            super().begin()
        encodings = self.msg.get_all("transfer-encoding")
        lengths = self.msg.get_all("content-length")
        if encodings is not None:
            if len(encodings) != 1 or encodings[0].strip().lower() != "chunked":
                raise Refused("a Transfer-Encoding other than chunked")
            if not self.chunked:  # http.client compares the value untrimmed
                self.chunked, self.chunk_left, self.length = True, None, None
            if lengths is not None:
                # RFC 9112 section 6.1: chunked wins. Such an answer is how request
                # smuggling starts, so its connection is not kept.
                self.will_close = True
        elif lengths is not None:
            values = {value.strip() for line in lengths for value in line.split(",")}
            length = values.pop() if len(values) == 1 else ""
            if not (length.isascii() and length.isdigit() and len(length) <= 18):
                raise Refused("a malformed or conflicting Content-Length")
            if self.length is None:  # "5, 5", which http.client does not read
                self.length = int(length)
        if self.status in (204, 304):  # never a body, whatever the headers say
            self.chunked, self.length = False, 0


class _GuardedConnect:
    """`_new_conn` through the guard: the connection goes to the address that was
    checked; the Host header, SNI and the certificate check keep the name."""

    host: str
    port: int
    timeout: Any
    socket_options: Any

    def _new_conn(self) -> socket.socket:
        call = CALL.get()
        if call is not None:
            timeout: float | None = call.send_time_left()
            call.opened = True
        else:
            timeout = self.timeout if isinstance(self.timeout, int | float) else None
        return safe_create_connection(
            (self.host, self.port),
            timeout,
            socket_options=self.socket_options,
            socket_class=_TimedSocket,
        )


class _Connection(_GuardedConnect, HTTPConnection):
    response_class = _Answer


class _TLSConnection(_GuardedConnect, HTTPSConnection):
    response_class = _Answer


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


class GuardedPoolManager(PoolManager):
    """urllib3's PoolManager (pools per scheme, host name and port, least recently
    used dropped past `num_pools`, thread-safe) with the guarded connections."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}
        # Every pool of a manager has the same settings (no per-call pool_kwargs):
        # the key is the destination alone, not urllib3's 25-field default.
        self.key_fn_by_scheme = {"http": _destination, "https": _destination}  # type: ignore[dict-item]


def _destination(context: dict[str, Any]) -> Any:
    return (context["scheme"], context["host"].lower(), context["port"])


# Not urllib3's retries (which would resend a request whose answer had started, and
# any method); egress_request decides the one retry it allows.
NO_RETRIES = Retry(total=False, redirect=False)


class _NoTargets(logging.Filter):
    """urllib3 logs request targets (DEBUG) and URLs (a header-parsing WARNING); a
    query string or path may hold a credential, so they are left out."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                "<target>" if isinstance(arg, str) and (arg[:1] == "/" or "://" in arg) else arg
                for arg in record.args
            )
        return True


for _name in ("urllib3.connectionpool", "urllib3.connection"):
    logging.getLogger(_name).addFilter(_NoTargets())
