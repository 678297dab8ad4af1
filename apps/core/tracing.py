"""The current trace context for what Grantry sends on (OpenTelemetry's API only: the
SDK, the exporters and the instrumentations are set up once per process in
grantry/telemetry.py, and when tracing is off everything here is a no-op)."""

from __future__ import annotations

from opentelemetry import propagate


def trace_meta() -> dict[str, str] | None:
    """The current trace context as W3C trace-context keys (`traceparent`,
    `tracestate`) for an MCP request's `_meta`, or None when no trace is recording.

    Read it in the thread that serves the call: the gateway's MCP client runs on
    another thread, where the request's context is not current."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None
