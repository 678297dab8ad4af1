"""Streaming the trail to a SIEM: encodings and transports of `AuditSink`s.

The ONLY module that reads `AuditSink.secret` (HMAC key or SIEM token); it is
never logged or put in an error text.

* Webhook (through the egress guard, like every outbound call): JSON lines of
  OCSF events signed with `X-Grantry-Signature: sha256=<hex>` =
  HMAC-SHA256(secret, "<X-Grantry-Timestamp>.<body>"); or Splunk HEC
  (`Authorization: Splunk <token>`); or Datadog (`DD-API-KEY`).
* Syslog: RFC 5424 messages over TCP with TLS, octet-counting framing
  (RFC 5425); structured data `[grantry@32473 chain=… seq=… hash=…]`, the OCSF
  event as MSG. The destination is checked by the same egress guard.

Any failure raises SinkError with a message safe to show on the sink page."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import socket
import ssl
import time
from collections.abc import Sequence
from typing import Any

from django.conf import settings

from apps.audit.models import AuditSink, SinkFormat, SinkKind
from apps.audit.ocsf import ocsf_dict
from apps.core.egress import egress_request
from apps.core.egress.errors import EgressError
from apps.core.egress.guard import check_destination

SYSLOG_FACILITY = 13  # log audit
ENTERPRISE_ID = 32473  # the documentation number of RFC 5612 until Grantry registers one


class SinkError(Exception):
    """Delivery failed; the message names the cause and never a secret."""


def _secret(sink: AuditSink) -> str:
    return str(AuditSink.objects.filter(pk=sink.pk).values_list("secret", flat=True).first() or "")


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def webhook_body(fmt: str, events: Sequence[dict[str, Any]]) -> tuple[bytes, str]:
    if fmt == SinkFormat.SPLUNK_HEC:
        body = "".join(
            json.dumps({"time": e["time"] / 1000, "sourcetype": "ocsf", "event": e}) for e in events
        )
        return body.encode(), "application/json"
    if fmt == SinkFormat.DATADOG:
        items = [
            {"ddsource": "grantry", "service": "grantry", "message": json.dumps(e)} for e in events
        ]
        return json.dumps(items).encode(), "application/json"
    return ("".join(json.dumps(e) + "\n" for e in events)).encode(), "application/x-ndjson"


def _post(sink: AuditSink, events: Sequence[dict[str, Any]]) -> None:
    body, content_type = webhook_body(sink.format, events)
    secret = _secret(sink)
    headers = {"Content-Type": content_type, "User-Agent": "Grantry-audit-stream/1"}
    if sink.format == SinkFormat.SPLUNK_HEC:
        headers["Authorization"] = f"Splunk {secret}"
    elif sink.format == SinkFormat.DATADOG:
        headers["DD-API-KEY"] = secret
    else:
        stamp = str(int(time.time()))
        headers["X-Grantry-Timestamp"] = stamp
        headers["X-Grantry-Signature"] = signature(secret, stamp, body)
    try:
        response = egress_request("POST", sink.url, headers=headers, content=body, timeout=15)
    except EgressError as exc:
        raise SinkError(str(exc)[:300]) from None
    if not 200 <= response.status_code < 300:
        raise SinkError(f"The webhook answered HTTP {response.status_code}.")


def syslog_message(event: dict[str, Any], hostname: str) -> bytes:
    grantry = event["unmapped"]["grantry"]
    severity = 4 if event.get("severity_id", 1) >= 3 else 6
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(event["time"] / 1000))
    stamp += f".{event['time'] % 1000:03d}Z"

    def param(value: Any) -> str:
        return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")

    data = (
        f'[grantry@{ENTERPRISE_ID} chain="{param(grantry["chain_key"])}" '
        f'seq="{grantry["seq"]}" hash="{grantry["hash"]}"]'
    )
    msgid = str(event.get("class_uid", "-"))
    header = f"<{SYSLOG_FACILITY * 8 + severity}>1 {stamp} {hostname} grantry - {msgid} {data} "
    return header.encode() + json.dumps(event, separators=(",", ":")).encode()


def _tls_context(sink: AuditSink) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if sink.ca_pem.strip():
        context.load_verify_locations(cadata=sink.ca_pem)
    return context


def _send_syslog(sink: AuditSink, events: Sequence[dict[str, Any]]) -> None:
    hostname = getattr(settings, "GRANTRY_SYSLOG_HOSTNAME", "") or "grantry"
    frames = b"".join(
        f"{len(message)} ".encode() + message
        for message in (syslog_message(e, hostname) for e in events)
    )
    _write_syslog(sink, frames)


def _write_syslog(sink: AuditSink, frames: bytes) -> None:
    port = int(sink.port or 6514)
    try:
        address = check_destination(sink.host, port)
        with (
            socket.create_connection((address, port), timeout=15) as raw,
            _tls_context(sink).wrap_socket(raw, server_hostname=sink.host) as tls,
        ):
            tls.sendall(frames)
            # Send close_notify so the server knows every frame arrived. Syslog
            # over TLS has no acknowledgement; rsyslog answers the close with a
            # bare TCP close, which is fine once our frames are written.
            with contextlib.suppress(ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError):
                tls.unwrap()
    except EgressError as exc:
        raise SinkError(str(exc)[:300]) from None
    except ssl.SSLError as exc:
        raise SinkError(f"TLS with {sink.host}:{port} failed: {exc.reason or exc}"[:300]) from None
    except OSError as exc:
        raise SinkError(
            f"Could not deliver to {sink.host}:{port}: {exc.strerror or exc}"[:300]
        ) from None


def send_checkpoint(sink: AuditSink, checkpoint: dict[str, Any]) -> None:
    """Publish a signed checkpoint (apps.audit.proof.signed_checkpoint): a webhook
    gets it as one JSON line like an export's last line (JSON-lines format only;
    the Splunk/Datadog formats carry OCSF events only), syslog as MSGID
    "checkpoint"."""
    if sink.kind == SinkKind.WEBHOOK:
        if sink.format != SinkFormat.JSONL:
            return
        body = (json.dumps(checkpoint) + "\n").encode()
        secret, stamp = _secret(sink), str(int(time.time()))
        headers = {
            "Content-Type": "application/x-ndjson",
            "User-Agent": "Grantry-audit-stream/1",
            "X-Grantry-Timestamp": stamp,
            "X-Grantry-Signature": signature(secret, stamp, body),
        }
        try:
            response = egress_request("POST", sink.url, headers=headers, content=body, timeout=15)
        except EgressError as exc:
            raise SinkError(str(exc)[:300]) from None
        if not 200 <= response.status_code < 300:
            raise SinkError(f"The webhook answered HTTP {response.status_code}.")
        return
    hostname = getattr(settings, "GRANTRY_SYSLOG_HOSTNAME", "") or "grantry"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    message = (
        f"<{SYSLOG_FACILITY * 8 + 5}>1 {stamp} {hostname} grantry - checkpoint - ".encode()
        + json.dumps(checkpoint, separators=(",", ":")).encode()
    )
    _write_syslog(sink, f"{len(message)} ".encode() + message)


def send(sink: AuditSink, events: Sequence[Any]) -> None:
    """Deliver these AuditEvents (in this order) or raise SinkError."""
    payload = [ocsf_dict(event) for event in events]
    if sink.kind == SinkKind.WEBHOOK:
        _post(sink, payload)
    else:
        _send_syslog(sink, payload)
