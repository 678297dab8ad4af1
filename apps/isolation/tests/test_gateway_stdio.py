"""The hostile stdio server through the gateway's client: a call it never answers is
a bounded `upstream_timeout` and the stuck child is stopped (the next call gets a
fresh one); a 50 MB message is `upstream_response_too_large`; malformed JSON-RPC is
`upstream_protocol_error`."""

from __future__ import annotations

import os
import time

import pytest
from pytest_django.fixtures import Settings

from apps.connections.gateway import client
from apps.connections.gateway.client import Upstream, UpstreamError
from apps.isolation.tests.conftest import attacker_command

pytestmark = pytest.mark.usefixtures("attacker_prefix")


def attacker(connection_id: int) -> Upstream:
    return Upstream(
        connection_id=connection_id,
        transport="stdio",
        label="grantry-attacker@1.0.0",
        command=attacker_command(),
    )


def child_of(connection_id: int) -> int:
    [session] = [s for k, s in client._pool.sessions.items() if k[0] == connection_id]
    pid = session.seen.stdio.pid
    assert pid is not None
    return pid


def gone(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_a_hung_child_is_a_bounded_timeout_and_is_stopped(settings: Settings) -> None:
    settings.GRANTRY_MCP_CALL_TIMEOUT = 2
    upstream = attacker(-9101)
    assert client.call_tool(upstream, "probe", {})["isError"] is False
    pid = child_of(-9101)
    started = time.monotonic()
    with pytest.raises(UpstreamError) as hung:
        client.call_tool(upstream, "hang", {})
    assert hung.value.code == "upstream_timeout"
    assert hung.value.message == "grantry-attacker@1.0.0 did not answer within 2 s."
    assert time.monotonic() - started < 8
    assert gone(pid)
    assert client.call_tool(upstream, "probe", {})["isError"] is False  # a fresh child
    assert child_of(-9101) != pid
    client.close_sessions(-9101)


@pytest.mark.parametrize(
    ("tool", "code"),
    [
        ("flood", "upstream_response_too_large"),
        ("endless_line", "upstream_response_too_large"),
        ("garbage", "upstream_protocol_error"),
    ],
)
def test_hostile_answers_are_clear_errors(tool: str, code: str) -> None:
    upstream = attacker(-9102)
    with pytest.raises(UpstreamError) as refused:
        client.call_tool(upstream, tool, {})
    assert refused.value.code == code
    assert "grantry-attacker@1.0.0" in refused.value.message
    client.close_sessions(-9102)
