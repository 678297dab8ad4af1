"""Streaming to SIEM sinks: OCSF events, a webhook receiver that dies and comes
back, a real rsyslog over TCP with TLS, dead letters, and the sink page."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.audit import ocsf
from apps.audit.models import AuditEvent, AuditSink, SinkStatus
from apps.audit.services import (
    audit_record,
    audit_sink_create,
    audit_sink_deliver,
    audit_sink_lag,
    audit_sink_retry,
)
from apps.audit.services import sinks as sink_services
from apps.audit.tests.helpers import broker_event
from apps.organizations.models import Organization
from tests.factories import PASSWORD
from tests.tls import self_signed

pytestmark = pytest.mark.django_db
SECRET = "hmac-key-that-never-shows"


class Receiver:
    """A local HTTP receiver that checks each request's signature and keeps the
    events it accepted, in arrival order. It can be stopped and started again
    on the same port."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.checkpoints: list[dict] = []
        self.bad_signatures = 0
        self.port = _free_port()
        self.server: HTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                stamp = self.headers["X-Grantry-Timestamp"]
                mac = hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256)
                if self.headers["X-Grantry-Signature"] != "sha256=" + mac.hexdigest():
                    receiver.bad_signatures += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                for line in body.splitlines():
                    doc = json.loads(line)
                    if "grantry_checkpoint" in doc:
                        receiver.checkpoints.append(doc)
                    else:
                        receiver.events.append(doc)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    def seqs(self) -> list[int]:
        return [e["unmapped"]["grantry"]["seq"] for e in self.events]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _webhook(org: Organization, receiver: Any, **kw: Any) -> Any:
    return audit_sink_create(
        organization=org,
        name=kw.pop("name", "siem"),
        kind="webhook",
        url=f"http://127.0.0.1:{receiver.port}/ingest",
        secret=SECRET,
        start=kw.pop("start", "beginning"),
        **kw,
    )


def test_ocsf_events_have_their_class_required_attributes_and_the_chain_link(
    org: Organization,
) -> None:
    call = broker_event(org, metadata={"action": "issues.list", "input": {"q": "x"}}, ip="10.1.2.3")
    denied = broker_event(org, action="broker.proxy", decision="denied", outcome="denied",
                          metadata={"method": "DELETE", "path": "repos/x"})  # fmt: skip
    minted = audit_record(action="token.minted", organization=org, target_label="tok")
    login = audit_record(action="auth.login", organization=org, actor_type="user", actor_id=3)
    expected = {
        call.pk: (ocsf.API_ACTIVITY, 99),
        denied.pk: (ocsf.API_ACTIVITY, 4),
        minted.pk: (ocsf.ACCOUNT_CHANGE, 1),
        login.pk: (ocsf.AUTHENTICATION, 1),
    }
    for event in AuditEvent.objects.filter(pk__in=expected):
        doc = ocsf.ocsf_dict(event)
        class_uid, activity = expected[event.pk]
        assert (doc["class_uid"], doc["activity_id"]) == (class_uid, activity)
        assert doc["type_uid"] == class_uid * 100 + activity
        assert doc["metadata"]["version"].startswith("1.")
        assert doc["metadata"]["product"]["vendor_name"] == "Grantry"
        for name in ocsf.REQUIRED[class_uid] + ("category_uid", "severity_id", "metadata"):
            assert name in doc, (class_uid, name)
        grantry = doc["unmapped"]["grantry"]
        assert (grantry["chain_key"], grantry["seq"], grantry["hash"]) == (
            event.chain_key,
            event.seq,
            event.hash,
        )
        assert "input" not in grantry["metadata"]  # stored broker input never leaves
        # Round trip through py-ocsf-models' own validation.
        assert ocsf.OCSFEvent.model_validate(doc).class_uid == class_uid
    assert ocsf.ocsf_dict(AuditEvent.objects.get(pk=denied.pk))["severity_id"] == 3


def test_webhook_receiver_killed_during_a_burst_gets_everything_in_order_once(
    org: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sink_services, "SINK_BATCH", 4)
    receiver = Receiver()
    receiver.start()
    sink = _webhook(org, receiver)
    for n in range(10):
        broker_event(org, reason=f"first {n}")
    audit_sink_deliver(sink_id=sink.pk, max_batches=2)  # part of the burst
    delivered = len(receiver.events)
    assert delivered == 8
    receiver.stop()
    for n in range(10):
        broker_event(org, reason=f"second {n}")
    sink = audit_sink_deliver(sink_id=sink.pk)
    assert sink.attempts == 1
    assert sink.next_attempt_at > timezone.now()
    assert "Could not" in sink.last_error or "connect" in sink.last_error.lower()
    assert len(receiver.events) == delivered  # nothing acknowledged, cursor unchanged
    assert audit_sink_lag(sink) == AuditEvent.objects.filter(organization=org).count() - 8
    # Backing off: a run before next_attempt_at sends nothing.
    audit_sink_deliver(sink_id=sink.pk)
    receiver.start()
    AuditSink.objects.filter(pk=sink.pk).update(next_attempt_at=timezone.now())
    sink = audit_sink_deliver(sink_id=sink.pk)
    assert sink.attempts == 0
    assert sink.last_success_at is not None
    total = AuditEvent.objects.filter(organization=org).count()
    assert receiver.seqs() == list(range(1, total + 1))  # all, in order, none twice
    assert receiver.bad_signatures == 0
    assert audit_sink_lag(sink) == 0
    receiver.stop()


def test_dead_letter_after_repeated_failures_then_resume_loses_nothing(
    org: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sink_services, "SINK_MAX_ATTEMPTS", 2)
    receiver = Receiver()  # not started: connections are refused
    sink = _webhook(org, receiver)
    broker_event(org)
    for _ in range(2):
        AuditSink.objects.filter(pk=sink.pk).update(next_attempt_at=None)
        sink = audit_sink_deliver(sink_id=sink.pk)
    assert sink.status == SinkStatus.DEAD_LETTER
    assert AuditEvent.objects.filter(action="audit.sink_dead_letter").count() == 1
    assert audit_sink_deliver(sink_id=sink.pk) is None  # stopped
    receiver.start()
    audit_sink_retry(sink=sink, actor=None)
    audit_sink_deliver(sink_id=sink.pk)
    assert receiver.seqs() == list(range(1, len(receiver.seqs()) + 1))
    assert AuditEvent.objects.get(action="audit.sink_dead_letter").seq in receiver.seqs()
    receiver.stop()


def test_start_now_skips_the_past_and_other_orgs_never_leak(
    org: Organization, other_org: Organization
) -> None:
    broker_event(org, reason="before")
    broker_event(other_org, reason="elsewhere")
    receiver = Receiver()
    receiver.start()
    sink = _webhook(org, receiver, start="now")
    broker_event(org, reason="after")
    audit_sink_deliver(sink_id=sink.pk)
    reasons = [e["unmapped"]["grantry"]["reason"] for e in receiver.events]
    assert "after" in reasons
    assert "before" not in reasons
    assert "elsewhere" not in reasons
    assert {e["metadata"]["tenant_uid"] for e in receiver.events} == {str(org.pk)}
    receiver.stop()


RSYSLOG = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"


def test_a_real_rsyslog_over_tcp_with_tls_receives_rfc5424_ocsf_events(
    org: Organization, tmp_path: Path
) -> None:
    assert Path(RSYSLOG).exists(), "apt-get install rsyslog rsyslog-gnutls (Debian) for this test"
    cert, _key = self_signed(tmp_path, host="localhost")
    pem = cert.read_text()
    port = _free_port()
    out = tmp_path / "received.log"
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(
        f"""
global(workDirectory="{tmp_path}"
       DefaultNetstreamDriver="gtls"
       DefaultNetstreamDriverCAFile="{tmp_path}/cert.pem"
       DefaultNetstreamDriverCertFile="{tmp_path}/cert.pem"
       DefaultNetstreamDriverKeyFile="{tmp_path}/key.pem")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1"
       StreamDriver.AuthMode="anon")
input(type="imtcp" port="{port}")
template(name="grantry" type="string"
         string="%syslogfacility%|%syslogseverity%|%app-name%|%msgid%|%structured-data%|%msg%\\n")
action(type="omfile" file="{out}" template="grantry")
"""
    )
    daemon = subprocess.Popen(  # fixed arguments
        [RSYSLOG, "-n", "-f", str(conf), "-i", str(tmp_path / "rsyslog.pid")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "rsyslogd did not start"
                assert daemon.poll() is None, daemon.stdout.read().decode()
                time.sleep(0.2)
        sink = audit_sink_create(
            organization=org,
            name="rsyslog",
            kind="syslog",
            host="localhost",
            port=port,
            ca_pem=pem,
            start="beginning",
        )
        broker_event(org, decision="denied", outcome="denied", reason="nope")
        broker_event(org, reason="fine")
        sink = audit_sink_deliver(sink_id=sink.pk)
        assert sink.last_error == ""
        assert sink.last_success_at is not None
        total = sink.delivered
        assert total == AuditEvent.objects.filter(organization=org).count()
        deadline = time.monotonic() + 20
        while not out.exists() or out.read_text().count("\n") < total + 1:  # + checkpoint
            assert time.monotonic() < deadline, "rsyslog did not write every event"
            time.sleep(0.2)
    finally:
        daemon.terminate()
        daemon.wait(timeout=20)
    lines = out.read_text().splitlines()
    seqs, checkpoints = [], []
    for line in lines:
        facility, severity, app, msgid, data, msg = line.split("|", 5)
        if msgid == "checkpoint":
            checkpoints.append(json.loads(msg))
            continue
        event = json.loads(msg)
        grantry = event["unmapped"]["grantry"]
        assert (facility, app, msgid) == ("13", "grantry", str(event["class_uid"]))
        assert f'seq="{grantry["seq"]}"' in data
        assert grantry["hash"] in data
        assert severity == ("4" if grantry["decision"] == "denied" else "6")
        seqs.append(grantry["seq"])
    assert seqs == list(range(1, total + 1))
    [checkpoint] = checkpoints
    assert checkpoint["grantry_checkpoint"]["chains"][0]["last_seq"] == total


def test_a_syslog_sink_refuses_an_untrusted_certificate(org: Organization, tmp_path: Path) -> None:
    import ssl

    self_signed(tmp_path, host="localhost")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            context.wrap_socket(conn, server_side=True).close()
        except (ssl.SSLError, OSError):
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    sink = audit_sink_create(
        organization=org, name="strict", kind="syslog", host="localhost", port=port
    )
    broker_event(org)
    sink = audit_sink_deliver(sink_id=sink.pk)
    listener.close()
    assert "TLS" in sink.last_error
    assert sink.attempts == 1
    assert sink.delivered == 0


def login(client: Any, user: Any) -> None:
    assert client.login(username=user.username, password=PASSWORD)


def test_sink_page_shows_lag_and_errors_sends_a_test_event_and_hides_the_secret(
    client: Client, org: Organization, admin: User, reviewer: User, outsider: User
) -> None:
    receiver = Receiver()
    receiver.start()
    login(client, admin)
    created = client.post(
        reverse("audit:sinks", kwargs={"org_slug": org.slug}),
        {
            "name": "splunk-ish",
            "kind": "webhook",
            "format": "jsonl",
            "url": f"http://127.0.0.1:{receiver.port}/x",
            "secret": SECRET,
            "start": "beginning",
        },
    )
    assert created.status_code == 302
    sink = AuditSink.objects.get(organization=org)
    page_url = reverse("audit:sink", kwargs={"org_slug": org.slug, "pk": sink.pk})
    page = client.get(page_url)
    assert page.status_code == 200
    assert page.context["lag"] >= 1
    assert SECRET not in page.content.decode()
    listing = client.get(reverse("audit:sinks", kwargs={"org_slug": org.slug}))
    assert SECRET not in listing.content.decode()
    client.post(page_url, {"action": "test"})
    assert [e["unmapped"]["grantry"]["action"] for e in receiver.events] == ["audit.sink_test"]
    receiver.stop()
    client.post(page_url, {"action": "test"})
    follow = client.get(page_url)
    assert "not delivered" in " ".join(str(m) for m in follow.context["messages"])
    created_event = AuditEvent.objects.get(action="audit.sink_created")
    assert SECRET not in json.dumps(created_event.metadata)
    bad = client.post(
        reverse("audit:sinks", kwargs={"org_slug": org.slug}),
        {"name": "x", "kind": "webhook", "url": "ftp://nope", "secret": ""},
    )
    assert bad.status_code == 400
    assert "url" in bad.context["errors"]
    login(client, reviewer)
    assert client.get(page_url).status_code == 403
    login(client, outsider)
    assert client.get(page_url).status_code == 404


def test_deleting_a_sink_asks_on_the_confirmation_page_first(
    client: Client, org: Organization, admin: User
) -> None:
    receiver = Receiver()
    sink = _webhook(org, receiver, name="to-delete")
    login(client, admin)
    page_url = reverse("audit:sink", kwargs={"org_slug": org.slug, "pk": sink.pk})
    asked = client.post(page_url, {"action": "delete"})
    html = asked.content.decode()
    assert asked.status_code == 200
    assert 'name="confirmed" value="yes"' in html
    assert "Events stop streaming to" in html
    assert 'name="action" value="delete"' in html
    assert AuditSink.objects.filter(pk=sink.pk).exists()
    done = client.post(page_url, {"action": "delete", "confirmed": "yes"})
    assert done.status_code == 302
    assert not AuditSink.objects.filter(pk=sink.pk).exists()
    assert AuditEvent.objects.filter(action="audit.sink_deleted", target_id=sink.pk).exists()


def test_splunk_hec_and_datadog_bodies(org: Organization) -> None:
    from apps.audit.sinks import webhook_body

    event = ocsf.ocsf_dict(broker_event(org))
    body, content_type = webhook_body("splunk_hec", [event, event])
    decoder, text, docs = json.JSONDecoder(), body.decode(), []
    while text:
        doc, end = decoder.raw_decode(text)
        docs.append(doc)
        text = text[end:]
    assert [d["sourcetype"] for d in docs] == ["ocsf", "ocsf"]
    assert docs[0]["event"] == event
    body, _ = webhook_body("datadog", [event])
    [item] = json.loads(body)
    assert item["ddsource"] == "grantry"
    assert json.loads(item["message"]) == event
    assert content_type == "application/json"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
def test_the_beat_task_delivers_through_a_real_celery_worker(org: Organization) -> None:
    from apps.audit.tasks import deliver_audit_sinks

    receiver = Receiver()
    receiver.start()
    sink = _webhook(org, receiver)
    broker_event(org)
    assert deliver_audit_sinks() == 1
    deadline = time.monotonic() + 30
    total = AuditEvent.objects.filter(organization=org).count()
    while len(receiver.events) < total:
        assert time.monotonic() < deadline, "the worker did not deliver"
        time.sleep(0.2)
    assert receiver.seqs() == list(range(1, total + 1))
    deadline = time.monotonic() + 10
    while audit_sink_lag(AuditSink.objects.get(pk=sink.pk)):
        assert time.monotonic() < deadline, "the cursor did not move"
        time.sleep(0.2)
    receiver.stop()


def test_the_sink_api_creates_lists_and_tests_without_showing_the_secret(
    client: Client, org: Organization, admin: User, reviewer: User, outsider: User
) -> None:
    receiver = Receiver()
    receiver.start()
    login(client, admin)
    url = reverse("org_api:audit-sink-list", kwargs={"org_slug": org.slug})
    created = client.post(
        url,
        {
            "name": "hec",
            "kind": "webhook",
            "format": "jsonl",
            "url": f"http://127.0.0.1:{receiver.port}/x",
            "secret": SECRET,
            "start": "beginning",
        },
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    assert SECRET not in created.content.decode()
    assert created.json()["lag"] >= 1
    listed = client.get(url)
    assert [s["name"] for s in listed.json()["results"]] == ["hec"]
    assert SECRET not in listed.content.decode()
    test_url = reverse(
        "org_api:audit-sink-test", kwargs={"org_slug": org.slug, "pk": created.json()["id"]}
    )
    assert client.post(test_url).json() == {"delivered": True, "error": ""}
    bad = client.post(
        url, {"name": "x", "kind": "syslog", "ca_pem": "junk"}, content_type="application/json"
    )
    assert bad.status_code == 400
    assert {"host", "port", "ca_pem"} <= set(bad.json()["error"]["details"]["fields"])
    login(client, reviewer)
    assert client.get(url).status_code == 403
    login(client, outsider)
    assert client.get(url).status_code == 404
    assert client.post(test_url).status_code == 404
    receiver.stop()


def test_a_signed_checkpoint_is_published_after_delivery_at_most_once_an_interval(
    org: Organization,
) -> None:
    from apps.audit import offline
    from apps.audit.models import AuditSigningKeypair

    receiver = Receiver()
    receiver.start()
    sink = _webhook(org, receiver)
    broker_event(org)
    audit_sink_deliver(sink_id=sink.pk)
    [published] = receiver.checkpoints
    body = published["grantry_checkpoint"]
    key = AuditSigningKeypair.objects.get(organization=org).public_key
    assert offline._signature_ok(key, published["signature"], body)
    [chain] = body["chains"]
    last = receiver.events[-1]["unmapped"]["grantry"]
    assert (chain["last_seq"], chain["last_hash"]) == (last["seq"], last["hash"])
    broker_event(org)
    audit_sink_deliver(sink_id=sink.pk)
    assert len(receiver.checkpoints) == 1  # not again within the interval
    AuditSink.objects.filter(pk=sink.pk).update(
        checkpoint_at=timezone.now() - dt.timedelta(hours=2)
    )
    broker_event(org)
    audit_sink_deliver(sink_id=sink.pk)
    assert len(receiver.checkpoints) == 2
    assert (
        receiver.checkpoints[1]["grantry_checkpoint"]["chains"][0]["last_seq"] > chain["last_seq"]
    )
    receiver.stop()


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"url": "http://siem.example.com/ingest"}, "url", "https"),
        ({"url": "https://10.1.2.3/ingest"}, "url", "private address"),
        ({"url": "https://169.254.169.254/latest"}, "url", "metadata"),
        ({"url": "https://127.0.0.1:8443/ingest"}, "url", "loopback"),
        ({"secret": "token\r\nX-Injected: 1"}, "secret", "line break"),
        ({"kind": "syslog", "url": "", "host": "192.168.1.20", "port": 6514}, "host", "private"),
    ],
)
def test_a_sink_that_could_never_deliver_is_refused_when_saved(
    org: Organization, settings: Any, fields: dict[str, Any], field: str, words: str
) -> None:
    """Issue 21 item 10: refused with the reason at save, not only at send. The
    addresses are the egress guard's policy (production: no loopback, https only)."""
    from django.core.exceptions import ValidationError

    from apps.audit.models import AuditSink

    settings.GRANTRY_EGRESS_ALLOW_LOOPBACK = False
    values: dict[str, Any] = {
        "kind": "webhook",
        "url": "https://93.184.215.14/ingest",  # a public address: no DNS needed
        "secret": SECRET,
        **fields,
    }
    with pytest.raises(ValidationError) as info:
        audit_sink_create(organization=org, name="siem", **values)
    assert words in " ".join(info.value.message_dict[field])
    assert not AuditSink.objects.exists()
    assert audit_sink_create(
        organization=org, name="ok", kind="webhook", url="https://93.184.215.14/x", secret=SECRET
    )
