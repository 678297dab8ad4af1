"""The egress client against raw socket servers on 127.0.0.1 that send what a lax
client would misread (interim answers, ambiguous framing, folded headers), and the
rules on what it sends, where it connects and how long it may take."""

from __future__ import annotations

import itertools
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from io import BufferedReader
from typing import Any

import certifi
import pytest
from django.http import HttpResponse

from apps.core import egress
from apps.core.egress import EgressBlocked, EgressConnectError, EgressTimeout, egress_request
from apps.core.tests.test_egress import _answer, _RawServer

Serve = Callable[[socket.socket, BufferedReader, int], None]


@pytest.fixture
def raw_server() -> Iterator[Callable[[Serve], _RawServer]]:
    servers: list[_RawServer] = []

    def start(serve: Serve) -> _RawServer:
        servers.append(_RawServer(serve))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _scripted(raw_server: Callable[[Serve], _RawServer], *answers: bytes) -> _RawServer:
    """A server whose connections keep alive and send `answers` in turn, one for each
    request, whichever connection it arrives on; the last one repeats."""
    turns = itertools.count()  # counted before the answer goes out: no race with the next

    def serve(connection: socket.socket, reader: BufferedReader, index: int) -> None:
        while server.read_request(reader, index):
            connection.sendall(answers[min(next(turns), len(answers) - 1)])

    server = raw_server(serve)
    return server


# --- 1xx: an interim answer is not the answer ---------------------------------


@pytest.mark.parametrize(
    "interim",
    [
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n",
        b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\n",
    ],
)
def test_interim_answers_are_skipped_and_the_connection_stays_in_step(
    raw_server: Callable[[Serve], _RawServer], interim: bytes
) -> None:
    # Were the 103 taken for the answer, the kept-alive connection would hand "A" to
    # the next caller, who may act for another organization.
    server = _scripted(raw_server, interim + _answer(b"A"), _answer(b"B"))
    first = egress_request("GET", f"{server.url}/")
    assert (first.status_code, first.content) == (200, b"A")
    assert "link" not in first.headers
    assert egress_request("GET", f"{server.url}/").content == b"B"
    assert server.accepted == 1


def test_an_interim_answer_written_apart_from_the_final_one(
    raw_server: Callable[[Serve], _RawServer],
) -> None:
    def serve(connection: socket.socket, reader: BufferedReader, index: int) -> None:
        server.read_request(reader, index)
        connection.sendall(b"HTTP/1.1 103 Early Hints\r\n\r\n")
        server.wait_until_read(index)
        connection.sendall(_answer(b"A"))

    server = raw_server(serve)
    assert egress_request("POST", f"{server.url}/", json={}).content == b"A"


def test_101_switching_protocols_is_refused_and_its_connection_dropped(
    raw_server: Callable[[Serve], _RawServer],
) -> None:
    server = _scripted(
        raw_server,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        _answer(b"fresh"),
    )
    with pytest.raises(EgressConnectError, match="101"):
        egress_request("GET", f"{server.url}/")
    assert egress_request("GET", f"{server.url}/").content == b"fresh"
    assert server.accepted == 2


def test_interim_answers_without_end_stop_at_the_deadline(
    raw_server: Callable[[Serve], _RawServer],
) -> None:
    def serve(connection: socket.socket, reader: BufferedReader, index: int) -> None:
        server.read_request(reader, index)
        for _ in range(80):
            connection.sendall(b"HTTP/1.1 102 Processing\r\n\r\n")
            time.sleep(0.05)

    server = raw_server(serve)
    started = time.monotonic()
    with pytest.raises(EgressTimeout):
        egress_request("GET", f"{server.url}/", timeout=0.5)
    assert time.monotonic() - started < 2.5  # the interim answers go on for 4 s


# --- Framing: one reading of where an answer ends -----------------------------


@pytest.mark.parametrize(
    "head",
    [
        b"Transfer-Encoding: gzip, chunked\r\nContent-Length: 5",
        b"Transfer-Encoding: identity\r\nContent-Length: 5",
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
        b"Content-Length: 5\r\nContent-Length: 6",
        b"Content-Length: 5, 6",
        b"Content-Length: +5",
        b"Content-Length: 0x5",
    ],
)
def test_ambiguous_framing_is_refused(
    raw_server: Callable[[Serve], _RawServer], head: bytes
) -> None:
    server = _scripted(
        raw_server, b"HTTP/1.1 200 OK\r\n%s\r\n\r\n5\r\nhello\r\n0\r\n\r\n" % head, _answer(b"next")
    )
    with pytest.raises(EgressConnectError, match="Refused the answer"):
        egress_request("GET", f"{server.url}/")
    assert egress_request("GET", f"{server.url}/").content == b"next"
    assert server.accepted == 2  # the refused answer's connection was not reused


@pytest.mark.parametrize(
    "head",
    [
        b"Content-Length: 5\r\nContent-Length: 5",
        b"Content-Length: 5, 5",
        b"Transfer-Encoding:  Chunked ",
    ],
)
def test_unambiguous_variants_are_read(
    raw_server: Callable[[Serve], _RawServer], head: bytes
) -> None:
    body = b"5\r\nhello\r\n0\r\n\r\n" if b"Chunked" in head else b"hello"
    server = _scripted(raw_server, b"HTTP/1.1 200 OK\r\n%s\r\n\r\n%s" % (head, body))
    for _ in range(2):
        assert egress_request("GET", f"{server.url}/").content == b"hello"


def test_a_repeated_identical_content_length_keeps_the_connection(
    raw_server: Callable[[Serve], _RawServer],
) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"
    server = _scripted(raw_server, answer)
    for _ in range(2):
        assert egress_request("GET", f"{server.url}/").content == b"hello"
    assert server.accepted == 1


def test_chunked_wins_over_content_length_and_the_connection_is_not_reused(
    raw_server: Callable[[Serve], _RawServer],
) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
    server = _scripted(raw_server, answer + b"5\r\nhello\r\n0\r\n\r\n")
    for _ in range(2):
        assert egress_request("GET", f"{server.url}/").content == b"hello"
    assert server.accepted == 2


def test_a_204_has_no_body_whatever_its_headers_say(
    raw_server: Callable[[Serve], _RawServer],
) -> None:
    server = _scripted(
        raw_server, b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n", _answer(b"B")
    )
    assert egress_request("DELETE", f"{server.url}/", timeout=1.0).status_code == 204
    assert egress_request("GET", f"{server.url}/", timeout=1.0).content == b"B"
    assert server.accepted == 1


# --- Header values: what comes in, what goes out --------------------------------


def test_folded_and_nul_header_values_come_out_clean(
    raw_server: Callable[[Serve], _RawServer],
) -> None:
    server = _scripted(
        raw_server,
        b"HTTP/1.1 200 OK\r\nX-Folded: one\r\n two\r\n\tthree\r\nX-Nul: a\0b\r\n"
        b"Content-Length: 2\r\n\r\nok",
    )
    headers = egress_request("GET", f"{server.url}/").headers
    assert headers["x-folded"] == "one two three"
    assert headers["x-nul"] == "ab"
    # What the broker's proxy view does with an allow-listed header: no BadHeaderError.
    proxied = HttpResponse()
    for name, value in headers.items():
        proxied[name] = value


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Token", "canary-secret-789\r\n\tX-Injected: 1"),
        ("X-Token", "canary-secret-789\nX-Injected: 1"),
        ("X-Token", "canary-secret-789\0"),
        ("X-Token", "canary-secret-789\x07"),
        ("X-Token: canary-secret-789", "v"),
        ("X Token canary-secret-789", "v"),
        ("", "canary-secret-789"),
    ],
)
def test_headers_that_would_change_the_request_are_refused_before_sending(
    raw_server: Callable[[Serve], _RawServer], name: str, value: str
) -> None:
    server = _scripted(raw_server, _answer(b"ok"))
    with pytest.raises(EgressConnectError, match="invalid header") as caught:
        egress_request("GET", f"{server.url}/", headers={name: value})
    assert "canary-secret-789" not in str(caught.value)
    assert "canary-secret-789" not in repr(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    server.settle()
    assert server.accepted == 0
    # A tab inside a value is fine.
    assert egress_request("GET", f"{server.url}/", headers={"X-Tab": "a\tb"}).content == b"ok"


# --- Host names: IDNA 2008 ----------------------------------------------------


def _dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, str], delay: float = 0.0) -> None:
    """DNS is the one thing that cannot be real here; the HTTP side stays real. Names
    not listed fail, so no test depends on (or leaks to) a real resolver."""

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        time.sleep(delay)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "not a test name")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def _host_echo(raw_server: Callable[[Serve], _RawServer]) -> _RawServer:
    def serve(connection: socket.socket, reader: BufferedReader, _index: int) -> None:
        reader.readline()
        host = b""
        while (line := reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"host":
                host = value.strip()
        connection.sendall(_answer(host))

    return raw_server(serve)


def test_non_ascii_names_use_idna_2008(
    raw_server: Callable[[Serve], _RawServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    # IDNA 2003 maps faß.de to fass.de, another registrable name than xn--fa-hia.de.
    server = _host_echo(raw_server)
    port = server.url.rsplit(":", 1)[1]
    _dns(monkeypatch, {"xn--fa-hia.de": "127.0.0.1", "fass.de": "127.0.0.1"})
    response = egress_request("GET", f"http://faß.de:{port}/")
    assert response.content.decode() == f"xn--fa-hia.de:{port}"


def test_a_name_idna_2008_refuses_is_not_called(
    raw_server: Callable[[Serve], _RawServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = _host_echo(raw_server)
    port = server.url.rsplit(":", 1)[1]
    _dns(monkeypatch, {"xn--n3h.net": "127.0.0.1"})  # what IDNA 2003 makes of it
    with pytest.raises(EgressConnectError) as caught:
        egress_request("GET", f"http://☃.net:{port}/?key=canary-secret-789")
    assert "canary-secret-789" not in str(caught.value)
    assert caught.value.__cause__ is None
    server.settle()
    assert server.accepted == 0


# --- The deadline covers the connect and the TLS handshake ----------------------


def _silent(raw_server: Callable[[Serve], _RawServer]) -> _RawServer:
    """Accepts and says nothing: a TLS handshake waits for its ServerHello."""

    def serve(_connection: socket.socket, reader: BufferedReader, _index: int) -> None:
        reader.read()  # until the client hangs up

    return raw_server(serve)


def test_the_tls_handshake_gets_only_the_time_left(
    raw_server: Callable[[Serve], _RawServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = _silent(raw_server)
    port = server.url.rsplit(":", 1)[1]
    _dns(monkeypatch, {"slow.example": "127.0.0.1"}, delay=2.0)
    started = time.monotonic()
    with pytest.raises(EgressTimeout):
        egress_request("GET", f"https://slow.example:{port}/", timeout=2.4)
    # 2 s went on the lookup; the handshake must not get another full 2.4 s (4.4 s in
    # all), only the 0.4 s left.
    assert time.monotonic() - started < 3.4


def test_no_connection_is_opened_once_the_deadline_has_passed(
    raw_server: Callable[[Serve], _RawServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = _silent(raw_server)
    port = server.url.rsplit(":", 1)[1]
    _dns(monkeypatch, {"slow.example": "127.0.0.1"}, delay=0.3)
    with pytest.raises(EgressTimeout):
        egress_request("GET", f"http://slow.example:{port}/", timeout=0.2)
    server.settle()
    assert server.accepted == 0


# --- Pools: per destination, least recently used dropped ------------------------


def test_failed_calls_elsewhere_leave_a_kept_alive_connection_alone(
    raw_server: Callable[[Serve], _RawServer],
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        refused_port = probe.getsockname()[1]
    server = _scripted(raw_server, _answer(b"ok"))
    assert egress_request("GET", f"{server.url}/").content == b"ok"
    with pytest.raises(EgressBlocked):
        egress_request("GET", "http://10.0.0.1/")
    with pytest.raises(EgressConnectError):
        egress_request("GET", f"http://127.0.0.1:{refused_port}/")
    assert egress_request("GET", f"{server.url}/").content == b"ok"
    assert server.accepted == 1


def test_the_least_recently_used_pool_is_the_one_dropped(
    raw_server: Callable[[Serve], _RawServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(egress, "MAX_POOLS", 2)
    monkeypatch.setattr(egress, "_managers", {})  # made anew with room for two destinations
    a, b, c = (_scripted(raw_server, _answer(b"ok")) for _ in range(3))
    for server in (a, b, a, c):  # a was used after b: b is the least recently used
        egress_request("GET", f"{server.url}/")
    egress_request("GET", f"{a.url}/")
    assert a.accepted == 1
    egress_request("GET", f"{b.url}/")
    assert b.accepted == 2


# --- Trust store --------------------------------------------------------------


def test_certificates_are_checked_against_certifi() -> None:
    context = egress._make_tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    with open(certifi.where(), encoding="ascii") as bundle:
        expected = bundle.read().count("-----BEGIN CERTIFICATE-----")
    assert context.cert_store_stats()["x509_ca"] == expected
