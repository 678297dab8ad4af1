"""OpenTelemetry traces, set up once per process (the web server's and Celery's).

Off by default. The standard OTEL variables turn it on: any of
`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
`OTEL_TRACES_EXPORTER` (`otlp`, or `console` to print spans), unless
`OTEL_SDK_DISABLED=true`. `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_TRACES_SAMPLER`… apply as the SDK documents them
(OTLP over HTTP/protobuf).

What is traced: Django's requests, psycopg's statements, urllib3's requests (every
call Grantry makes upstream, through apps.core.egress, carries `traceparent`), Celery's
tasks (the producer's trace continues in the worker), and a tool call to an upstream
MCP server carries `traceparent`/`tracestate` in its request `_meta`
(apps.core.tracing.trace_meta(), read by apps/connections/gateway/client.py).

What is never in a span: a URL's query string or user info (server and client spans
keep only the path: a token sent in a query by mistake, or a credential a provider
takes in its query, stays out), statement parameters (psycopg's spans carry the SQL
text with placeholders), and the credential headers, should an operator ask for request
headers to be captured (`OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*`): they are
always in `OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS`.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit, urlunsplit

_SANITIZE = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS"
_ALWAYS_SANITIZED = (
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    ".*token.*",
    ".*secret.*",
    "dpop",
)
# The URL attributes of the old and the new HTTP semantic conventions.
_URL_ATTRIBUTES = ("http.url", "url.full")
_TARGET_ATTRIBUTES = ("http.target",)
_QUERY_ATTRIBUTES = ("url.query",)

_started = False


def tracing_requested(environ: Any = os.environ) -> bool:
    if str(environ.get("OTEL_SDK_DISABLED", "")).strip().lower() == "true":
        return False
    exporter = str(environ.get("OTEL_TRACES_EXPORTER", "")).strip().lower()
    if exporter == "none":
        return False
    return bool(
        exporter
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def without_query(url: str) -> str:
    """The URL without its query, fragment and user info."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _scrub_server_span(span: Any, request: Any) -> None:
    """Django's request hook: the span keeps the path, never the query."""
    if not span.is_recording():
        return
    for name in _URL_ATTRIBUTES:
        span.set_attribute(name, without_query(request.build_absolute_uri(request.path)))
    for name in _TARGET_ATTRIBUTES:
        span.set_attribute(name, request.path)
    for name in _QUERY_ATTRIBUTES:
        span.set_attribute(name, "")


def setup_tracing(service: str) -> bool:
    """Start tracing for this process if the environment asks; True if it did. Safe to
    call more than once."""
    global _started
    if _started or not tracing_requested():
        return _started
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    requested = [v.strip() for v in os.environ.get(_SANITIZE, "").split(",") if v.strip()]
    os.environ[_SANITIZE] = ",".join(dict.fromkeys([*requested, *_ALWAYS_SANITIZED]))
    resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or service})
    provider = TracerProvider(resource=resource)
    exporter: SpanExporter
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console":
        exporter = ConsoleSpanExporter()
    else:
        exporter = OTLPSpanExporter()  # reads OTEL_EXPORTER_OTLP_*
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    DjangoInstrumentor().instrument(request_hook=_scrub_server_span)
    PsycopgInstrumentor().instrument(enable_commenter=False)
    URLLib3Instrumentor().instrument(url_filter=without_query)
    CeleryInstrumentor().instrument()
    _started = True
    return True
