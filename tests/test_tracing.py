"""OpenTelemetry traces (grantry/telemetry.py): off by default, on with the standard
OTEL variables; an agent's trace continues through Grantry into the upstream
(`traceparent`) and into an upstream MCP server's `_meta`; no secret, token or query
string reaches an exported span.

The web server is the Procfile's (granian) on the test database, exporting OTLP over
HTTP to a receiver the test runs; spans are decoded with opentelemetry-proto."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider

from apps.broker.tests.conftest import CONNECTION_SECRET, make_agent
from apps.broker.tests.upstream import RecordingUpstream
from apps.connections.gateway import client as mcp_client
from apps.connections.tests.hostile_mcp import HostileMcpServer
from apps.organizations.models import Organization
from apps.workers.tests.test_cross_process import Server
from grantry.telemetry import tracing_requested, without_query

QUERY_CANARY = "QUERYCANARY-5e1f"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


class OtlpReceiver:
    """An OTLP/HTTP trace receiver: keeps every export request's raw body."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                outer.bodies.append(self.rfile.read(length))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spans(self) -> list[Any]:
        found = []
        for body in list(self.bodies):
            request = ExportTraceServiceRequest.FromString(body)
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    found.extend(scope.spans)
        return found

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def attributes(span: Any) -> dict[str, Any]:
    out = {}
    for kv in span.attributes:
        value = kv.value
        out[kv.key] = value.string_value or value.int_value or value.bool_value
    return out


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    server = OtlpReceiver()
    yield server
    server.close()


def test_tracing_is_off_unless_the_standard_variables_ask() -> None:
    assert not tracing_requested({})
    assert tracing_requested({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing_requested({"OTEL_TRACES_EXPORTER": "console"})
    assert not tracing_requested({"OTEL_TRACES_EXPORTER": "none"})
    assert not tracing_requested(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}
    )
    assert (
        without_query("https://user:pw@api.example.com:8443/v1/x?api_key=s#f")
        == "https://api.example.com:8443/v1/x"
    )


@pytest.mark.django_db(transaction=True)
def test_an_agent_trace_continues_upstream_and_no_secret_is_exported(
    org: Organization, tmp_path: Path, receiver: OtlpReceiver
) -> None:
    agent = make_agent(org)
    with RecordingUpstream() as upstream:
        server = Server(
            tmp_path,
            "traced",
            extra_env={
                "GRANTRY_PROVIDER_URLS": f"sandbox={upstream.url}",
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
                "OTEL_SERVICE_NAME": "grantry-test",
                "OTEL_BSP_SCHEDULE_DELAY": "100",
                # An operator asking for every header: the credential ones stay out.
                "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST": ".*",
                "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST": ".*",
            },
        )
        try:
            server.wait_ready(timeout=120)
            response = httpx.post(
                f"{server.base}/api/v1/actions/sandbox.list_projects/execute?note={QUERY_CANARY}",
                json={"input": {}},
                headers={"Authorization": f"Bearer {agent.raw}", "traceparent": PARENT},
                timeout=30,
            )
            assert response.status_code == 200, response.text
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                kinds = {span.kind for span in receiver.spans() if span.trace_id.hex() == TRACE_ID}
                if {2, 3} <= kinds:  # SERVER and CLIENT
                    break
                time.sleep(0.2)
        finally:
            server.stop()
        [sent] = upstream.requests
    # The agent's trace went on upstream: same trace, a new parent (Grantry's span).
    traceparent = sent.headers.get("traceparent") or sent.headers.get("Traceparent") or ""
    assert traceparent.split("-")[1] == TRACE_ID
    assert traceparent != PARENT
    ours = [span for span in receiver.spans() if span.trace_id.hex() == TRACE_ID]
    server_spans = [s for s in ours if s.kind == 2]
    database = [s for s in ours if attributes(s).get("db.system") == "postgresql"]
    client_spans = [s for s in ours if s.kind == 3 and s not in database]
    assert server_spans
    assert client_spans
    assert database
    client_url = attributes(client_spans[0]).get("url.full") or attributes(client_spans[0]).get(
        "http.url"
    )
    assert client_url is not None
    assert client_url.startswith(upstream.url)
    assert "?" not in client_url
    exported = b"".join(receiver.bodies)
    for secret in (CONNECTION_SECRET, agent.raw, QUERY_CANARY, "gry_"):
        assert secret.encode() not in exported, secret


def test_a_tool_call_to_an_upstream_mcp_server_carries_the_trace_in_meta(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The gateway's MCP client sends the caller's trace context in `_meta` (a local
    tracer provider: this process's global tracing stays off)."""
    server = HostileMcpServer()
    received: list[dict[str, Any]] = []
    answer = server.answer

    def recording(message: dict[str, Any]) -> Any:
        received.append(message)
        return answer(message)

    monkeypatch.setattr(server, "answer", recording)
    try:
        upstream = mcp_client.Upstream(
            connection_id=987_654, transport="http", label="traced", url=server.url
        )
        tracer = TracerProvider().get_tracer("test")
        with tracer.start_as_current_span("agent call") as span:
            result = mcp_client.call_tool(upstream, "lookup", {"q": "x"})
            trace_id = format(span.get_span_context().trace_id, "032x")
        assert result["content"][0]["text"] == "found it"
        [call] = [m for m in received if m.get("method") == "tools/call"]
        meta = call["params"]["_meta"]
        assert meta["traceparent"].split("-")[1] == trace_id
        # Without a trace, nothing is added.
        mcp_client.call_tool(upstream, "lookup", {"q": "y"})
        last = [m for m in received if m.get("method") == "tools/call"][-1]
        assert "traceparent" not in json.dumps(last)
    finally:
        server.close()
