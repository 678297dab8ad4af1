"""The send window (`egress_request(send_by=)`, apps/workers/fence.py): the connect and
every write of the request end by `send_by`; the answer keeps the whole deadline."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from apps.core.egress import EgressNotSent, egress_request


class _Listener:
    """A raw TCP server: counts connections; `answer_after` seconds after reading a
    request head it answers 200, or it never reads at all (`read=False`)."""

    def __init__(self, *, read: bool = True, answer_after: float = 0.0) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.read, self.answer_after = read, answer_after
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.held.append(conn)
            if self.read:
                threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        time.sleep(self.answer_after)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def listener(request: pytest.FixtureRequest) -> Iterator[_Listener]:
    server = _Listener(**getattr(request, "param", {}))
    yield server
    server.close()


def test_a_window_that_has_ended_connects_to_nothing(listener: _Listener) -> None:
    with pytest.raises(EgressNotSent) as caught:
        egress_request(
            "POST",
            f"http://127.0.0.1:{listener.port}/x",
            json={"a": 1},
            send_by=time.monotonic() - 0.001,
        )
    assert "send window" in str(caught.value)
    time.sleep(0.1)
    assert listener.accepted == 0


@pytest.mark.parametrize("listener", [{"read": False}], indirect=True)
def test_a_server_that_does_not_read_cannot_keep_the_write_going_past_the_window(
    listener: _Listener,
) -> None:
    started = time.monotonic()
    with pytest.raises(EgressNotSent):
        egress_request(
            "POST",
            f"http://127.0.0.1:{listener.port}/x",
            content=b"x" * 64_000_000,  # far more than the socket buffers hold
            timeout=10,
            send_by=started + 0.3,
        )
    assert time.monotonic() - started < 5  # not the 10 s timeout
    assert listener.accepted == 1


@pytest.mark.parametrize("listener", [{"answer_after": 0.6}], indirect=True)
def test_the_answer_may_take_longer_than_the_window(listener: _Listener) -> None:
    response = egress_request(
        "POST",
        f"http://127.0.0.1:{listener.port}/x",
        json={"a": 1},
        timeout=5,
        send_by=time.monotonic() + 0.3,
    )
    assert response.status_code == 200
    assert response.content == b"ok"
