"""The egress client against a real local HTTP server (no mocked HTTP client)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import override_settings

from apps.core.egress import (
    EgressBlocked,
    EgressConnectError,
    EgressTimeout,
    EgressTooLarge,
    check_destination,
    egress_request,
)


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

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/ok":
            self._send(200, b'{"hello": "world"}', {"Content-Type": "application/json"})
        elif self.path == "/latin1":
            self._send(
                200, "héllo".encode("latin-1"), {"Content-Type": "text/plain; charset=latin-1"}
            )
        elif self.path == "/set-cookie":
            self._send(200, b"", {"Set-Cookie": "session=org-a-secret; Path=/"})
        elif self.path == "/cookie":
            self._send(200, (self.headers.get("Cookie") or "").encode())
        elif self.path == "/host":
            self._send(200, self.headers["Host"].encode())
        elif self.path == "/redirect":
            self._send(302, b"", {"Location": "http://169.254.169.254/latest/meta-data/"})
        elif self.path == "/big-declared":
            self._send(200, b"x" * 4096)
        elif self.path == "/big-chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(64):
                chunk = b"y" * 1024
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/slow":
            time.sleep(2.0)
            self._send(200, b"late")
        elif self.path == "/drip":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(20):
                self.wfile.write(b"1\r\nz\r\n")
                self.wfile.flush()
                time.sleep(0.15)
            self.wfile.write(b"0\r\n\r\n")
        else:
            self._send(404, b"nope")

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        self._send(200, self.rfile.read(length))


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
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
    assert time.monotonic() - started < 1.8
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

    def getaddrinfo(host, port, *args, **kwargs):  # noqa: ANN001, ANN202
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

    def process_request(self, request, client_address):  # noqa: ANN001, ANN201
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
