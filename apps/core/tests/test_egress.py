"""The egress client against a real local HTTP server (no mocked HTTP client)."""

from __future__ import annotations

import contextlib
import datetime
import gzip
import json
import logging
import socket
import ssl
import struct
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BufferedReader
from pathlib import Path
from typing import Any, ClassVar

import pytest
from django.test import override_settings

from apps.core import egress
from apps.core.egress import (
    EgressBlocked,
    EgressConnectError,
    EgressTimeout,
    EgressTooLarge,
    check_destination,
    egress_request,
)

# About 10 KB on the wire, 10 MB once inflated.
BOMB_SIZE = 10_000_000
GZIP_BOMB = gzip.compress(b"\0" * BOMB_SIZE)


def _raw_deflate(data: bytes) -> bytes:
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return raw.compress(data) + raw.flush()


# The GET paths with a fixed answer: (status, body, headers).
_FIXED: dict[str, tuple[int, bytes, dict[str, str]]] = {
    "/ok": (200, b'{"hello": "world"}', {"Content-Type": "application/json"}),
    "/latin1": (
        200,
        "héllo".encode("latin-1"),
        {"Content-Type": "text/plain; charset=latin-1"},
    ),
    "/set-cookie": (200, b"", {"Set-Cookie": "session=org-a-secret; Path=/"}),
    "/redirect": (302, b"", {"Location": "http://169.254.169.254/latest/meta-data/"}),
    "/big-declared": (200, b"x" * 4096, {}),
    "/gzip": (200, gzip.compress(b'{"zipped": true}'), {"Content-Encoding": "gzip"}),
    "/deflate": (200, zlib.compress(b"zlib-wrapped"), {"Content-Encoding": "deflate"}),
    "/deflate-raw": (200, _raw_deflate(b"raw deflate"), {"Content-Encoding": "deflate"}),
    "/gzip-bomb": (200, GZIP_BOMB, {"Content-Encoding": "gzip"}),
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _inspect(self, body: bytes = b"") -> None:
        """What arrived, as JSON: method, target, headers (names as sent) and body."""
        seen = {
            "method": self.command,
            "path": self.path,
            "headers": [[name, value] for name, value in self.headers.items()],
            "body": body.decode("latin-1"),
        }
        self._send(200, json.dumps(seen).encode(), {"Content-Type": "application/json"})

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in _FIXED:
            self._send(*_FIXED[path])
        elif path in self.STREAMED:
            self.STREAMED[path](self)
        else:
            self._send(404, b"nope")

    def _cookie(self) -> None:
        self._send(200, (self.headers.get("Cookie") or "").encode())

    def _host(self) -> None:
        self._send(200, self.headers["Host"].encode())

    def _big_chunked(self) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for _ in range(64):
            chunk = b"y" * 1024
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    def _chunked_json(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for piece in (b'{"items": [', b"1, 2, ", b"3]", b', "done": true}'):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def _close(self) -> None:
        self.close_connection = True
        self._send(200, b"closing", {"Connection": "close"})

    def _slow(self) -> None:
        # Answers once the client has hung up (or after 10 s): later than any timeout.
        self.connection.settimeout(10)
        self.rfile.read(1)
        self._send(200, b"late")

    def _drip(self) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for _ in range(20):
            self.wfile.write(b"1\r\nz\r\n")
            self.wfile.flush()
            time.sleep(0.15)
        self.wfile.write(b"0\r\n\r\n")

    # The GET paths that answer from the request or write as they go (the rest: _FIXED).
    STREAMED: ClassVar[dict[str, Callable[[_Handler], None]]] = {
        "/inspect": _inspect,
        "/cookie": _cookie,
        "/host": _host,
        "/big-chunked": _big_chunked,
        "/chunked-json": _chunked_json,
        "/close": _close,
        "/slow": _slow,
        "/drip": _drip,
    }

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if self.path.startswith("/inspect"):
            self._inspect(self.rfile.read(length))
        else:
            self._send(200, self.rfile.read(length))

    do_PUT = do_POST


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up on purpose (timeouts, size caps) is not news


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = _QuietServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_plain_get_and_post(server: str) -> None:
    response = egress_request("GET", f"{server}/ok")
    assert response.status_code == 200
    assert response.json() == {"hello": "world"}
    assert response.elapsed_ms >= 0
    echoed = egress_request("POST", f"{server}/echo", json={"a": 1})
    assert echoed.json() == {"a": 1}


def test_cookies_set_by_one_answer_are_not_sent_on_later_calls(server: str) -> None:
    # One pooled client serves every organization: a cookie must not cross calls.
    assert egress_request("GET", f"{server}/set-cookie").status_code == 200
    assert egress_request("GET", f"{server}/cookie").content == b""
    sent = egress_request("GET", f"{server}/cookie", headers={"Cookie": "mine=1"})
    assert sent.content == b"mine=1"


def test_redirects_are_returned_not_followed(server: str) -> None:
    response = egress_request("GET", f"{server}/redirect")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("http://169.254.169.254")


@override_settings(GRANTRY_EGRESS_MAX_RESPONSE_BYTES=1000)
def test_size_cap_on_declared_length(server: str) -> None:
    with pytest.raises(EgressTooLarge) as caught:
        egress_request("GET", f"{server}/big-declared")
    assert caught.value.host == "127.0.0.1"


@override_settings(GRANTRY_EGRESS_MAX_RESPONSE_BYTES=10_000)
def test_size_cap_while_streaming_without_length(server: str) -> None:
    with pytest.raises(EgressTooLarge):
        egress_request("GET", f"{server}/big-chunked")
    # Under the cap the same endpoint is fine.
    with override_settings(GRANTRY_EGRESS_MAX_RESPONSE_BYTES=100_000):
        assert len(egress_request("GET", f"{server}/big-chunked").content) == 64 * 1024


def test_timeout_against_a_slow_server(server: str) -> None:
    started = time.monotonic()
    with pytest.raises(EgressTimeout) as caught:
        egress_request("GET", f"{server}/slow", timeout=0.5)
    assert time.monotonic() - started < 5  # /slow would answer after 10 s
    assert caught.value.elapsed_ms >= 400
    assert caught.value.host == "127.0.0.1"


def test_overall_deadline_against_a_dripping_server(server: str) -> None:
    # Each byte arrives within the read timeout, but the whole body does not.
    with pytest.raises(EgressTimeout):
        egress_request("GET", f"{server}/drip", timeout=1.0)


def test_connection_refused_is_a_connect_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(EgressConnectError):
        egress_request("GET", f"http://127.0.0.1:{port}/")


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://172.16.0.1/",
        "http://100.64.0.1/",
        "http://169.254.10.10/",
        "http://224.0.0.1/",
        "http://0.0.0.0/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://[::ffff:10.0.0.1]/",
        "http://240.0.0.1/",
    ],
)
def test_non_public_addresses_are_blocked(url: str) -> None:
    with pytest.raises(EgressBlocked):
        egress_request("GET", url)


def test_metadata_stays_blocked_even_when_loopback_is_allowed() -> None:
    with override_settings(GRANTRY_EGRESS_ALLOW_LOOPBACK=True), pytest.raises(EgressBlocked):
        check_destination("169.254.169.254", 80)


def test_plain_http_is_refused_when_loopback_is_not_allowed() -> None:
    with override_settings(GRANTRY_EGRESS_ALLOW_LOOPBACK=False), pytest.raises(EgressBlocked) as e:
        egress_request("GET", "http://93.184.216.34/")  # a public address, but clear text
    assert "https" in str(e.value)
    with override_settings(GRANTRY_EGRESS_REQUIRE_HTTPS=False), pytest.raises(EgressBlocked) as e:
        egress_request("GET", "http://10.0.0.1/")  # the address guard still applies
    assert "private" in str(e.value)


def test_loopback_only_with_the_setting(server: str) -> None:
    port = server.rsplit(":", 1)[1]
    with override_settings(GRANTRY_EGRESS_ALLOW_LOOPBACK=False, GRANTRY_EGRESS_REQUIRE_HTTPS=False):
        for url in (
            f"{server}/ok",
            f"http://localhost:{port}/ok",
            f"http://[::ffff:127.0.0.1]:{port}/ok",
        ):
            with pytest.raises(EgressBlocked, match="loopback"):
                egress_request("GET", url)
    with override_settings(GRANTRY_EGRESS_ALLOW_LOOPBACK=True):
        assert egress_request("GET", f"http://localhost:{port}/ok").status_code == 200


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "gopher://x/"])
def test_only_http_and_https(url: str) -> None:
    with pytest.raises(EgressBlocked):
        egress_request("GET", url)


def _fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> None:
    """DNS is the one thing that cannot be real here; the HTTP side stays real.
    Each fake name answers ONCE; a second lookup (a rebinding window) fails."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in answers:
            ips = answers.pop(host)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in ips]
        if host.endswith(".example"):
            raise socket.gaierror(socket.EAI_NONAME, "second lookup of a test name")
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_a_name_with_any_private_answer_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_dns(monkeypatch, {"rebind.example": ["93.184.216.34", "10.1.2.3"]})
    with pytest.raises(EgressBlocked) as caught:
        egress_request("GET", "http://rebind.example/")
    assert caught.value.host == "rebind.example"
    assert "private" in str(caught.value)


def test_connects_to_the_checked_address_and_keeps_the_host_header(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "pinned.example" exists only in the answer the guard checked: reaching the
    # server proves the connection used that address, not a second lookup.
    port = server.rsplit(":", 1)[1]
    _fake_dns(monkeypatch, {"pinned.example": ["127.0.0.1"]})
    response = egress_request("GET", f"http://pinned.example:{port}/host")
    assert response.content.decode() == f"pinned.example:{port}"


def test_the_next_checked_address_is_tried_when_one_refuses(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server listens on 127.0.0.1 only: 127.0.0.2 refuses, as an unreachable
    # first address of a name would; the second one answers.
    port = server.rsplit(":", 1)[1]
    _fake_dns(monkeypatch, {"two.example": ["127.0.0.2", "127.0.0.1"]})
    response = egress_request("GET", f"http://two.example:{port}/host")
    assert response.content.decode() == f"two.example:{port}"


def test_error_messages_do_not_carry_the_query_string() -> None:
    with pytest.raises(EgressBlocked) as caught:
        egress_request("GET", "http://10.0.0.1/x?api_key=canary-secret-123")
    assert "canary-secret-123" not in str(caught.value)


def test_response_text_uses_the_declared_charset(server: str) -> None:
    assert egress_request("GET", f"{server}/latin1").text == "héllo"
    # Without a charset the text is read as UTF-8.
    echoed = egress_request("POST", f"{server}/echo", content="héllo".encode("latin-1"))
    assert echoed.text == "h\ufffdllo"


class _ConnectionCounter(ThreadingHTTPServer):
    connections = 0

    def process_request(self, request: Any, client_address: Any) -> Any:
        type(self).connections += 1
        return super().process_request(request, client_address)


def test_connections_are_never_shared_between_hostnames_on_one_address() -> None:
    """localhost and 127.0.0.1 are one address: a kept-alive connection opened for
    one name must not carry the other name's request (for TLS, its certificate was
    checked for the first name only)."""
    httpd = _ConnectionCounter(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    port = httpd.server_address[1]
    try:
        for _ in range(2):
            assert egress_request("GET", f"http://127.0.0.1:{port}/host").status_code == 200
        assert _ConnectionCounter.connections == 1  # keep-alive works within one name
        assert egress_request("GET", f"http://localhost:{port}/host").status_code == 200
        assert _ConnectionCounter.connections == 2
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_threads_sharing_the_pools_each_get_their_own_answer(server: str) -> None:
    # One process-wide manager serves every thread: an answer must reach the call
    # that asked for it, never another one on a shared kept-alive connection.
    answered: list[tuple[str, str]] = []

    def calls(worker: int) -> None:
        for number in range(25):
            asked = f"/inspect?call={worker}-{number}"
            _, path, _, _ = _seen(egress_request("GET", f"{server}{asked}").content)
            answered.append((asked, path))

    threads = [threading.Thread(target=calls, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answered) == 8 * 25
    assert all(asked == path for asked, path in answered)


# --- Keep-alive: reuse, and servers that close ------------------------------


class _CountingServer(_QuietServer):
    """A ThreadingHTTPServer that counts the TCP connections it accepted."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.accepted = 0

    def process_request(self, request: Any, client_address: Any) -> Any:
        self.accepted += 1
        return super().process_request(request, client_address)


@pytest.fixture
def counting() -> Iterator[_CountingServer]:
    httpd = _CountingServer()
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _base(httpd: _CountingServer) -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}"


def test_one_connection_carries_sequential_calls(counting: _CountingServer) -> None:
    base = _base(counting)
    for _ in range(5):
        assert egress_request("GET", f"{base}/ok").json() == {"hello": "world"}
    assert egress_request("POST", f"{base}/echo", json={"a": 1}).json() == {"a": 1}
    assert egress_request("GET", f"{base}/chunked-json").status_code == 200
    assert counting.accepted == 1


def test_an_answer_saying_connection_close_is_not_reused(counting: _CountingServer) -> None:
    base = _base(counting)
    assert egress_request("GET", f"{base}/close").content == b"closing"
    assert egress_request("GET", f"{base}/close").content == b"closing"
    assert counting.accepted == 2
    assert egress_request("GET", f"{base}/ok").status_code == 200
    assert egress_request("GET", f"{base}/ok").status_code == 200
    assert counting.accepted == 3


@override_settings(GRANTRY_EGRESS_MAX_RESPONSE_BYTES=1000)
def test_a_connection_whose_answer_was_not_read_is_not_reused(counting: _CountingServer) -> None:
    # The unread body must not be taken for the start of the next answer.
    base = _base(counting)
    with pytest.raises(EgressTooLarge):
        egress_request("GET", f"{base}/big-declared")
    assert egress_request("GET", f"{base}/ok").json() == {"hello": "world"}
    assert counting.accepted == 2


def test_a_pooled_loopback_connection_is_not_reused_once_loopback_is_refused(
    counting: _CountingServer,
) -> None:
    # Reuse skips the DNS lookup, never the address rule.
    base = _base(counting)
    assert egress_request("GET", f"{base}/ok").status_code == 200
    with (
        override_settings(GRANTRY_EGRESS_ALLOW_LOOPBACK=False, GRANTRY_EGRESS_REQUIRE_HTTPS=False),
        pytest.raises(EgressBlocked, match="loopback"),
    ):
        egress_request("GET", f"{base}/ok")


def _tcp_socket(local_port: int, remote_port: int) -> tuple[str, int, int] | None:
    """The kernel's view of this host's IPv4 TCP socket from `local_port` to
    `remote_port`: its state (hex, as /proc/net/tcp lists it; "01" is established),
    the bytes it sent that the other end has not acknowledged yet, and the bytes
    received that its program has not read yet. None once it is gone."""
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if (
                int(fields[1].rsplit(":", 1)[1], 16) == local_port
                and int(fields[2].rsplit(":", 1)[1], 16) == remote_port
            ):
                unacked, unread = fields[4].split(":")
                return fields[3], int(unacked, 16), int(unread, 16)
    return None


def _wait_until(condition: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.002)


class _RawServer:
    """A TCP server whose per-connection behaviour a test writes byte by byte:
    `serve(connection, reader, index)` runs in its own thread for each accepted
    connection (index counts from 0)."""

    def __init__(self, serve: Callable[[socket.socket, BufferedReader, int], None]) -> None:
        self._serve = serve
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.accepted = 0
        self.requests: dict[int, int] = {}  # connection index -> requests read
        self.client_ports: dict[int, int] = {}  # connection index -> the client's port
        self._probes: set[int] = set()  # client ports of settle()'s probe connections
        self._changed = threading.Condition()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, (_, client_port) = self._listener.accept()
            except OSError:
                return
            if client_port in self._probes:
                connection.close()
                with self._changed:
                    self._probes.discard(client_port)
                    self._changed.notify_all()
                continue
            index = self.accepted
            self.client_ports[index] = client_port
            self.accepted += 1
            threading.Thread(target=self._run, args=(connection, index), daemon=True).start()

    def settle(self) -> None:
        """Return once every connection made to the server so far has been accepted
        (and counted): a probe connection queues behind them, and is accepted last."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
            with self._changed:
                self._probes.add(port)
            probe.connect(("127.0.0.1", self.port))
            with self._changed:
                assert self._changed.wait_for(lambda: port not in self._probes, 10), "no accept"

    def client_end(self, index: int) -> tuple[str, int, int] | None:
        """The client's socket of connection `index` (see _tcp_socket)."""
        return _tcp_socket(self.client_ports[index], self.port)

    def wait_until_read(self, index: int) -> None:
        """Until the client has received, and its program has read, all that the
        server sent on connection `index`."""

        def read() -> bool:
            server_end = _tcp_socket(self.port, self.client_ports[index])
            client_end = self.client_end(index)
            return bool(server_end and server_end[1] == 0 and client_end and client_end[2] == 0)

        _wait_until(read, f"the client read what connection {index} sent")

    def _run(self, connection: socket.socket, index: int) -> None:
        # The client going away is what some tests are about.
        with connection, connection.makefile("rb") as reader, contextlib.suppress(OSError):
            self._serve(connection, reader, index)

    def read_request(self, reader: BufferedReader, index: int) -> bool:
        """Read one request (head and body); False if the client closed instead."""
        if not reader.readline():
            return False
        length = 0
        while (line := reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        reader.read(length)
        self.requests[index] = self.requests.get(index, 0) + 1
        return True

    def close(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()


def _answer(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


@pytest.fixture
def raw_server() -> Iterator[Callable[..., _RawServer]]:
    servers: list[_RawServer] = []

    def start(serve: Callable[[socket.socket, BufferedReader, int], None]) -> _RawServer:
        servers.append(_RawServer(serve))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_a_connection_the_server_closed_while_idle_is_not_used(
    raw_server: Callable[..., _RawServer],
) -> None:
    # The server closes after each answer without saying "Connection: close".
    server: _RawServer  # set below; serve() runs only once it is

    def serve(connection: socket.socket, reader: BufferedReader, index: int) -> None:
        if server.read_request(reader, index):
            connection.sendall(_answer(b"conn%d" % index))

    server = raw_server(serve)
    assert egress_request("GET", f"{server.url}/").content == b"conn0"
    _wait_until(
        lambda: (end := server.client_end(0)) is None or end[0] != "01",
        "the close reached the client's end",
    )
    assert egress_request("GET", f"{server.url}/").content == b"conn1"
    assert server.accepted == 2


def test_bytes_arriving_on_an_idle_connection_are_not_taken_for_the_next_answer(
    raw_server: Callable[..., _RawServer],
) -> None:
    # After its first answer the server writes an unasked-for answer and keeps the
    # connection open. Reusing it would hand "garbage" to the next caller.
    first_answer_read = threading.Event()

    server: _RawServer  # set below; serve() runs only once it is

    def serve(connection: socket.socket, reader: BufferedReader, index: int) -> None:
        requests = 0
        while server.read_request(reader, index):
            connection.sendall(_answer(b"conn%d-req%d" % (index, requests)))
            if index == 0 and requests == 0:
                first_answer_read.wait(timeout=10)
                connection.sendall(_answer(b"garbage"))
            requests += 1

    server = raw_server(serve)
    assert egress_request("GET", f"{server.url}/").content == b"conn0-req0"
    first_answer_read.set()
    _wait_until(
        lambda: (end := server.client_end(0)) is not None and end[2] > 0,
        "the unasked-for answer waits at the client's end",
    )
    assert egress_request("GET", f"{server.url}/").content == b"conn1-req0"
    assert egress_request("GET", f"{server.url}/").content == b"conn1-req1"
    assert server.accepted == 2


def _dropping_the_second_request(raw_server: Callable[..., _RawServer]) -> _RawServer:
    """A server whose connection 0 answers once, then takes the second request and
    closes without a byte of answer (an idle-timeout race, or a server that acted on
    the request and then died)."""

    server: _RawServer  # set below; serve() runs only once it is

    def serve(connection: socket.socket, reader: BufferedReader, index: int) -> None:
        requests = 0
        while server.read_request(reader, index):
            if index == 0 and requests == 1:
                return
            connection.sendall(_answer(b"conn%d-req%d" % (index, requests)))
            requests += 1

    server = raw_server(serve)
    return server


@pytest.mark.parametrize("method", ["GET", "OPTIONS"])
def test_a_safe_request_on_a_reused_connection_dropped_without_an_answer_is_retried_once(
    raw_server: Callable[..., _RawServer],
    method: str,
) -> None:
    server = _dropping_the_second_request(raw_server)
    assert egress_request("GET", f"{server.url}/").content == b"conn0-req0"
    assert egress_request(method, f"{server.url}/").content == b"conn1-req0"
    assert server.accepted == 2
    assert server.requests == {0: 2, 1: 1}


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_any_other_request_on_a_reused_connection_is_never_sent_twice(
    raw_server: Callable[..., _RawServer],
    method: str,
) -> None:
    # The server may have redeemed the code or rotated the refresh token before it
    # closed; a second copy would trip reuse detection and revoke the grant.
    server = _dropping_the_second_request(raw_server)
    assert egress_request("GET", f"{server.url}/").content == b"conn0-req0"
    with pytest.raises(EgressConnectError):
        egress_request(method, f"{server.url}/token", data={"refresh_token": "rt-1"})
    server.settle()
    assert server.accepted == 1
    assert server.requests == {0: 2}


def test_a_new_connection_dropped_without_an_answer_is_not_retried(
    raw_server: Callable[..., _RawServer],
) -> None:
    server: _RawServer  # set below; serve() runs only once it is

    def serve(_connection: socket.socket, reader: BufferedReader, index: int) -> None:
        server.read_request(reader, index)  # and close without answering

    server = raw_server(serve)
    with pytest.raises(EgressConnectError):
        egress_request("GET", f"{server.url}/")
    server.settle()
    assert server.accepted == 1


def _reset(connection: socket.socket) -> None:
    """Make the coming close a TCP reset (the client's read fails with ECONNRESET)."""
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_no_retry_once_an_answer_has_started(raw_server: Callable[..., _RawServer]) -> None:
    # The reset comes after part of the status line: the request may have been acted
    # on, so it is not sent again.
    server: _RawServer  # set below; serve() runs only once it is

    def serve(connection: socket.socket, reader: BufferedReader, index: int) -> None:
        requests = 0
        while server.read_request(reader, index):
            if requests == 1:
                connection.sendall(b"HTTP/1.1 20")
                server.wait_until_read(index)
                _reset(connection)
                return
            connection.sendall(_answer(b"ok"))
            requests += 1

    server = raw_server(serve)
    assert egress_request("GET", f"{server.url}/").content == b"ok"
    with pytest.raises(EgressConnectError):
        egress_request("GET", f"{server.url}/")
    server.settle()
    assert server.accepted == 1


def test_a_body_shorter_than_its_content_length_is_an_error(
    raw_server: Callable[..., _RawServer],
) -> None:
    server: _RawServer  # set below; serve() runs only once it is

    def serve(connection: socket.socket, reader: BufferedReader, index: int) -> None:
        server.read_request(reader, index)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")

    server = raw_server(serve)
    with pytest.raises(EgressConnectError, match="broke off"):
        egress_request("GET", f"{server.url}/")


def test_headers_dripping_past_the_deadline_time_out(raw_server: Callable[..., _RawServer]) -> None:
    # Every header line comes well within the read timeout; all of them do not.
    server: _RawServer  # set below; serve() runs only once it is

    def serve(connection: socket.socket, reader: BufferedReader, index: int) -> None:
        server.read_request(reader, index)
        connection.sendall(b"HTTP/1.1 200 OK\r\n")
        for _ in range(80):
            connection.sendall(b"X-Drip: 1\r\n")
            time.sleep(0.1)

    server = raw_server(serve)
    started = time.monotonic()
    with pytest.raises(EgressTimeout):
        egress_request("GET", f"{server.url}/", timeout=0.8)
    assert time.monotonic() - started < 4  # the headers take 8 s in all


# --- Bodies: encodings, chunks, and what is sent ----------------------------


def test_a_chunked_answer_without_content_length(server: str) -> None:
    response = egress_request("GET", f"{server}/chunked-json")
    assert "Content-Length" not in response.headers
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.json() == {"items": [1, 2, 3], "done": True}


def test_gzip_and_deflate_answers_are_decoded(server: str) -> None:
    zipped = egress_request("GET", f"{server}/gzip")
    assert zipped.json() == {"zipped": True}
    assert zipped.headers.get("content-encoding") == "gzip"
    assert egress_request("GET", f"{server}/deflate").content == b"zlib-wrapped"
    assert egress_request("GET", f"{server}/deflate-raw").content == b"raw deflate"


@override_settings(GRANTRY_EGRESS_MAX_RESPONSE_BYTES=100_000)
def test_the_size_cap_applies_to_the_decoded_body(server: str) -> None:
    # The declared length (compressed, ~10 KB) is far under the cap; the body is not.
    # Nor is the bomb inflated in memory before the cap is noticed.
    tracemalloc.start()
    try:
        with pytest.raises(EgressTooLarge):
            egress_request("GET", f"{server}/gzip-bomb")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000
    with override_settings(GRANTRY_EGRESS_MAX_RESPONSE_BYTES=BOMB_SIZE):
        assert egress_request("GET", f"{server}/gzip-bomb").content == b"\0" * BOMB_SIZE


def _seen(response_body: bytes) -> tuple[str, str, dict[str, str], str]:
    seen = json.loads(response_body)
    return seen["method"], seen["path"], dict(seen["headers"]), seen["body"]


def test_default_headers_and_caller_headers(server: str) -> None:
    _, _, headers, _ = _seen(egress_request("GET", f"{server}/inspect").content)
    assert headers["User-Agent"] == "Grantry/1.0"
    assert headers["Accept-Encoding"] == "gzip, deflate"
    assert "Cookie" not in headers
    _, _, headers, _ = _seen(
        egress_request(
            "GET", f"{server}/inspect", headers={"user-agent": "Mine/2", "X-Custom-Name": "v"}
        ).content
    )
    assert headers["user-agent"] == "Mine/2"  # names travel as the caller wrote them
    assert "User-Agent" not in headers
    assert headers["X-Custom-Name"] == "v"


def test_params_join_the_query_and_replace_same_named_keys(server: str) -> None:
    _, path, _, _ = _seen(
        egress_request(
            "GET",
            f"{server}/inspect?keep=1&key=from-url",
            params={"key": "from-params", "many": ["a", "b c"], "flag": True},
        ).content
    )
    assert path == "/inspect?keep=1&key=from-params&many=a&many=b+c&flag=true"


def test_json_form_and_raw_bodies(server: str) -> None:
    method, _, headers, body = _seen(
        egress_request("POST", f"{server}/inspect", json={"é": [1, None]}).content
    )
    assert method == "POST"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body.encode("latin-1")) == {"é": [1, None]}
    _, _, headers, body = _seen(
        egress_request("POST", f"{server}/inspect", data={"a": "1 2", "b": ["x", "y"]}).content
    )
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert body == "a=1+2&b=x&b=y"
    _, _, headers, body = _seen(
        egress_request(
            "PUT",
            f"{server}/inspect",
            content="plain",
            headers={"Content-Type": "text/plain"},
        ).content
    )
    assert (headers["Content-Type"], body) == ("text/plain", "plain")


def test_errors_from_the_wire_do_not_carry_the_url(server: str) -> None:
    secret = "canary-secret-456"
    with pytest.raises(EgressTimeout) as timed_out:
        egress_request("GET", f"{server}/slow?key={secret}", timeout=0.3)
    with (
        override_settings(GRANTRY_EGRESS_MAX_RESPONSE_BYTES=100),
        pytest.raises(EgressTooLarge) as too_large,
    ):
        egress_request("GET", f"{server}/big-declared?key={secret}")
    with pytest.raises(EgressConnectError) as header_refused:
        egress_request("GET", f"{server}/ok?key={secret}", headers={"X-Bad": f"{secret}\r\nX: 1"})
    for caught in (timed_out, too_large, header_refused):
        assert secret not in str(caught.value)
        assert secret not in repr(caught.value)
    assert header_refused.value.__cause__ is None  # the header's text is not chained either


def test_the_http_library_logs_no_request_target(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    # urllib3 logs each request line at DEBUG; a path or query may hold a credential.
    secret = "canary-secret-654"
    with caplog.at_level(logging.DEBUG, logger="urllib3"):
        egress_request("GET", f"{server}/ok?key={secret}")
    assert any(record.name.startswith("urllib3") for record in caplog.records)
    assert secret not in caplog.text
    assert "/ok" not in caplog.text


# --- TLS: the connection goes to the checked address, the name is verified ----


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    """A throwaway CA (PEM text) and a certificate for tls.example signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Grantry test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tls.example")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("tls.example")]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca.public_bytes(serialization.Encoding.PEM).decode(), cert_file, key_file


@pytest.fixture
def tls_server(
    tls_files: tuple[str, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[_CountingServer, list[str | None]]]:
    """An HTTPS server with the tls.example certificate, recording the SNI names it
    was asked for; the egress client trusts the test CA for the test's duration."""
    ca_pem, cert_file, key_file = tls_files
    client_context = egress._make_tls_context()
    client_context.load_verify_locations(cadata=ca_pem)
    monkeypatch.setattr(egress, "_tls", client_context)
    monkeypatch.setattr(egress, "_managers", {})  # pools made from now on use it

    server_names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)

    def record_sni(_sock: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        server_names.append(name)

    context.sni_callback = record_sni
    httpd = _CountingServer()
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd, server_names
    httpd.shutdown()
    httpd.server_close()


def test_tls_verifies_the_name_and_connects_to_the_checked_address(
    tls_server: tuple[_CountingServer, list[str | None]], monkeypatch: pytest.MonkeyPatch
) -> None:
    httpd, server_names = tls_server
    port = httpd.server_address[1]
    # Answered once: a second lookup would fail, so the kept-alive connection is reused.
    _fake_dns(monkeypatch, {"tls.example": ["127.0.0.1"]})
    for _ in range(3):
        response = egress_request("GET", f"https://tls.example:{port}/host")
        assert response.content.decode() == f"tls.example:{port}"
    assert server_names == ["tls.example"]
    assert httpd.accepted == 1


def test_tls_refuses_a_certificate_for_another_name(
    tls_server: tuple[_CountingServer, list[str | None]], monkeypatch: pytest.MonkeyPatch
) -> None:
    httpd, _ = tls_server
    port = httpd.server_address[1]
    _fake_dns(monkeypatch, {"other.example": ["127.0.0.1"]})
    for url in (f"https://other.example:{port}/host", f"https://127.0.0.1:{port}/host"):
        with pytest.raises(EgressConnectError, match="SSLCertVerificationError"):
            egress_request("GET", url)
