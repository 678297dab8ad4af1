"""Exports that prove themselves: chain links, signed checkpoints, offline checks."""

from __future__ import annotations

import base64
import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from apps.audit import chain, offline
from apps.audit import fields as audit_fields
from apps.audit.models import AuditChainHead, AuditEvent, AuditSigningKeypair
from apps.audit.services import audit_record
from apps.audit.signing import signing_key
from apps.audit.tests.helpers import broker_event
from apps.audit.verify import verify_chains
from apps.organizations.models import Organization
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[3]


def login(client: Any, user: Any) -> Any:
    assert client.login(username=user.username, password=PASSWORD)
    return client


def shard_event(org: Organization, shard: int, **fields: Any) -> Any:
    """An event on shard `shard` of the org's trail ("org:<id>:<n>"), linked exactly
    as the append links it (the lead's sharded append writes the same rows)."""
    from django.utils import timezone

    key = f"{chain.chain_key_for(org.pk)}:{shard}"
    head, _ = AuditChainHead.objects.get_or_create(
        pk=key, defaults={"seq": 0, "hash": chain.GENESIS_HASH}
    )
    values = {name: audit_fields.BY_NAME[name].default() for name in chain.HASHED_FIELDS}
    values.update(
        chain_key=key,
        created_at=timezone.now(),
        organization_id=org.pk,
        actor_type="system",
        action=fields.pop("action", "org.updated"),
        target_label=fields.pop("target_label", ""),
        metadata=fields.pop("metadata", {}),
    )
    assert not fields
    seq = head.seq + 1
    hash_ = chain.link_hash(head.hash, seq, chain.content_digest(values))
    event = AuditEvent(seq=seq, prev_hash=head.hash, hash=hash_, **values)
    event.save(force_insert=True)
    AuditChainHead.objects.filter(pk=key).update(seq=seq, hash=hash_)
    return event


def seed(org: Organization) -> None:
    audit_record(action="org.created", organization=org, target_label="=HYPERLINK(1)")
    broker_event(org, metadata={"action": "issues.list", "note": 'naïve, "quoted"\nline'})
    shard_event(org, 1, target_label="+1 shard")
    broker_event(org, decision="denied", reason="-nope", ip="10.0.0.7")
    shard_event(org, 1, metadata={"n": 1.5, "list": [1, "a"]})
    shard_event(org, 2)
    audit_record(action="org.updated", organization=org, target_label="@home\ttab")


def export(client: Any, org: Organization, fmt: str = "jsonl", **params: Any) -> Any:
    url = reverse("org_api:audit-export", kwargs={"org_slug": org.slug, "fmt": fmt})
    response = client.get(url, {"proof": "1", **params})
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content).decode()


def public_key(org: Organization) -> Any:
    return AuditSigningKeypair.objects.get(organization=org).public_key


def test_the_offline_script_names_the_edited_line_as_a_separate_process(
    client: Client, org: Organization, reviewer: User, tmp_path: Path
) -> None:
    seed(org)
    login(client, reviewer)
    body = export(client, org)
    lines = body.splitlines()
    assert json.loads(lines[-1])["grantry_checkpoint"]["organization_id"] == org.pk
    # The script alone, copied out of the project: standard library + cryptography.
    script = tmp_path / "verify_audit_export.py"
    shutil.copy(ROOT / "scripts" / "verify_audit_export.py", script)
    good = tmp_path / "export.jsonl"
    good.write_text(body, encoding="utf-8")

    def run(path: Any) -> Any:
        return subprocess.run(  # our own script, fixed arguments
            [sys.executable, "-I", str(script), str(path), "--public-key", public_key(org)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
        )

    ok = run(good)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK: 9 events in 3 chain(s)" in ok.stdout  # 7 + key created + export

    edited_at = next(i for i, line in enumerate(lines) if json.loads(line).get("reason") == "-nope")
    record = json.loads(lines[edited_at])
    record["reason"] = "-yes"
    tampered = lines[:]
    tampered[edited_at] = json.dumps(record)
    bad = tmp_path / "edited.jsonl"
    bad.write_text("\n".join(tampered) + "\n", encoding="utf-8")
    failed = run(bad)
    assert failed.returncode == 1
    assert f"line {edited_at + 1}: event id={record['id']}" in failed.stderr
    assert "edited" in failed.stderr
    assert failed.stderr.count("PROBLEM") == 1


def test_every_shard_is_in_the_export_grouped_by_chain_in_seq_order(
    client: Client, org: Organization, reviewer: User
) -> None:
    seed(org)
    login(client, reviewer)
    rows = [json.loads(line) for line in export(client, org).splitlines()[:-1]]
    keys = [r["chain_key"] for r in rows]
    base = chain.chain_key_for(org.pk)
    assert keys == sorted(keys, key=lambda k: (k != base, k))
    assert {f"{base}:1", f"{base}:2", base} == set(keys)
    for key in set(keys):
        seqs = [r["seq"] for r in rows if r["chain_key"] == key]
        assert seqs == list(range(1, len(seqs) + 1))
    assert all(r["content_digest"] == chain.content_digest(r) for r in rows)
    reports = verify_chains(organization_ids=[org.pk])
    assert {r.chain_key for r in reports} == set(keys)
    assert all(r.ok for r in reports)


def test_truncation_reordering_and_a_re_hashed_forgery_are_caught(
    client: Client, org: Organization, reviewer: User
) -> None:
    seed(org)
    login(client, reviewer)
    lines = export(client, org).splitlines()
    key = public_key(org)
    assert offline.verify_lines(lines, public_key=key).ok

    cut = offline.verify_lines(lines[:2] + lines[3:], public_key=key)
    assert not cut.ok
    assert "line 3" in str(cut.problems[0])

    swapped = offline.verify_lines([lines[1], lines[0], *lines[2:]], public_key=key)
    assert not swapped.ok

    # Rewrite event 1's reason and re-hash the rest of its chain: every link holds,
    # but the signed checkpoint names the old last hash.
    rows = [json.loads(line) for line in lines[:-1]]
    base = chain.chain_key_for(org.pk)
    prev = chain.GENESIS_HASH
    for row in rows:
        if row["chain_key"] != base:
            continue
        if row["seq"] == 1:
            row["target_label"] = "forged"
        row["prev_hash"] = prev
        row["content_digest"] = chain.content_digest(row)
        row["hash"] = prev = chain.link_hash(prev, row["seq"], row["content_digest"])
    forged = [json.dumps(r) for r in rows] + [lines[-1]]
    report = offline.verify_lines(forged, public_key=key)
    assert [str(p) for p in report.problems]
    assert "signed checkpoint" in str(report.problems[0])

    # Re-signing with another key does not help when the key is pinned.
    stranger = signing_key(AuditSigningKeypair.objects.get(organization=org).organization)
    assert stranger.public_key == key
    assert not offline.verify_lines(lines, public_key=base64.b64encode(b"\1" * 32).decode()).ok


def test_csv_with_proof_verifies_including_neutralised_formulas(
    client: Client, org: Organization, reviewer: User
) -> None:
    seed(org)
    login(client, reviewer)
    body = export(client, org, "csv")
    key = public_key(org)
    rows = list(csv.reader(io.StringIO(body, newline="")))
    header = rows[0]
    labels = [r[header.index("target_label")] for r in rows[1:-1]]
    assert "'=HYPERLINK(1)" in labels
    assert "'@home\ttab" in labels
    assert rows[-1][0] == offline.CSV_CHECKPOINT_MARK
    report = offline.verify_bytes(body.encode(), public_key=key)
    assert report.ok, report.lines()

    reason_at = header.index("reason")
    edited = [list(r) for r in rows]
    target = next(i for i, r in enumerate(edited) if r[reason_at] == "'-nope")
    edited[target][reason_at] = "'-maybe"
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(edited)
    report = offline.verify_bytes(out.getvalue().encode(), public_key=key)
    assert not report.ok
    assert f"line {target + 1}:" in str(report.problems[0])


def test_proof_exports_refuse_filters_that_would_leave_gaps(
    client: Client, org: Organization, reviewer: User
) -> None:
    login(client, reviewer)
    url = reverse("org_api:audit-export", kwargs={"org_slug": org.slug, "fmt": "jsonl"})
    response = client.get(url, {"proof": "1", "decision": "denied"})
    assert response.status_code == 400
    assert "contiguous" in response.json()["error"]["message"]


def test_a_time_slice_is_cut_by_seq_and_its_checkpoint_matches(
    client: Client, org: Organization, reviewer: User
) -> None:
    first = audit_record(action="role.created", organization=org)
    middle = audit_record(action="role.changed", organization=org)
    audit_record(action="role.deleted", organization=org)
    login(client, reviewer)
    body = export(
        client, org, start=middle.created_at.isoformat(), end=middle.created_at.isoformat()
    )
    lines = body.splitlines()
    rows = [json.loads(line) for line in lines[:-1]]
    assert [r["id"] for r in rows] == [middle.pk]
    entry = json.loads(lines[-1])["grantry_checkpoint"]["chains"][0]
    assert entry["first_seq"] == middle.seq
    assert entry["first_prev_hash"] == first.hash
    assert entry["head_seq"] > middle.seq
    assert offline.verify_lines(lines, public_key=public_key(org)).ok


def test_the_signing_key_is_generated_once_audited_and_kept_in_custody(org: Organization) -> None:
    key = signing_key(org)
    assert signing_key(org).pk == key.pk
    created = AuditEvent.objects.filter(organization=org, action="audit.signing_key_created")
    assert created.count() == 1
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT private_key FROM audit_auditsigningkeypair WHERE id = %s", [key.pk])
        stored = bytes(cursor.fetchone()[0])
    plain = AuditSigningKeypair.objects.values_list("private_key", flat=True).get(pk=key.pk)
    assert base64.b64decode(plain)
    assert plain.encode() not in stored
    assert plain not in repr(key) + str(key)
    assert plain not in json.dumps(created.get().metadata)


def test_well_known_serves_the_public_key_that_checks_signatures(
    client: Client, org: Organization, reviewer: User
) -> None:
    seed(org)
    login(client, reviewer)
    checkpoint = json.loads(export(client, org).splitlines()[-1])
    client.logout()
    response = client.get(f"/.well-known/grantry-audit-keys/{checkpoint['key_id']}")
    assert response.status_code == 200
    document = response.json()
    assert document["jwk"]["crv"] == "Ed25519"
    Ed25519PublicKey.from_public_bytes(base64.b64decode(document["public_key"])).verify(
        base64.b64decode(checkpoint["signature"]),
        offline.checkpoint_message(checkpoint["grantry_checkpoint"]),
    )
    assert "private" not in json.dumps(document)
    assert client.get("/.well-known/grantry-audit-keys/nope").status_code == 404


def test_settings_page_shows_the_public_key_never_the_private(
    client: Client, org: Organization, member: User
) -> None:
    login(client, member)
    response = client.get(reverse("orgs:settings", kwargs={"org_slug": org.slug}))
    assert response.status_code == 200
    key = AuditSigningKeypair.objects.get(organization=org)
    assert key.public_key in response.content.decode()
    assert key.private_key not in response.content.decode()


def test_dashboard_verifies_an_upload_and_the_trail(
    client: Client, org: Organization, reviewer: User, member: User, outsider: User
) -> None:
    seed(org)
    login(client, reviewer)
    body = export(client, org)
    url = reverse("audit:verify", kwargs={"org_slug": org.slug})
    ok = client.post(url, {"file": SimpleUploadedFile("e.jsonl", body.encode())})
    assert ok.status_code == 200
    assert ok.context["file_report"].ok
    bad = client.post(
        url, {"file": SimpleUploadedFile("e.jsonl", body.replace("-nope", "-yes").encode())}
    )
    assert not bad.context["file_report"].ok
    assert "FAILED" in bad.content.decode()
    trail = client.post(url, {"trail": "1"})
    assert [r.ok for r in trail.context["trail_reports"]] == [True, True, True]
    verified = AuditEvent.objects.filter(organization=org, action="audit.verified")
    assert [e.metadata["ok"] for e in verified.order_by("id")] == [True, False, True]
    login(client, member)
    assert client.get(url).status_code == 403
    login(client, outsider)
    assert client.get(url).status_code == 404


def test_api_verifies_an_upload_and_the_trail(
    client: Client, org: Organization, other_org: Organization, reviewer: User, outsider: User
) -> None:
    seed(org)
    login(client, reviewer)
    body = export(client, org)
    url = reverse("org_api:audit-verify", kwargs={"org_slug": org.slug})
    response = client.post(url, {"file": SimpleUploadedFile("e.jsonl", body.encode())})
    assert response.status_code == 200
    assert response.json()["ok"] is True
    lines = body.splitlines()
    response = client.post(
        url, {"file": SimpleUploadedFile("e.jsonl", "\n".join(lines[1:]).encode())}
    )
    assert response.json()["ok"] is False
    trail = client.post(url).json()
    assert trail["kind"] == "trail"
    assert trail["ok"]
    assert len(trail["chains"]) == 3
    # Another organization's export does not pass as this one's.
    login(client, outsider)
    foreign = reverse("org_api:audit-verify", kwargs={"org_slug": other_org.slug})
    assert (
        client.post(foreign, {"file": SimpleUploadedFile("e.jsonl", body.encode())}).json()["ok"]
        is False
    )
    assert client.post(url).status_code == 404


def test_manage_py_audit_verify_file_names_the_line(
    client: Client, org: Organization, reviewer: User, tmp_path: Path
) -> None:
    seed(org)
    login(client, reviewer)
    body = export(client, org)
    path = tmp_path / "export.jsonl"
    path.write_text(body)
    out = io.StringIO()
    call_command("audit_verify", file=str(path), stdout=out)
    assert "OK: 9 events" in out.getvalue()
    lines = body.splitlines()
    record = json.loads(lines[0])
    record["action"] = "org.deleted"
    path.write_text("\n".join([json.dumps(record), *lines[1:]]))
    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command("audit_verify", file=str(path), stdout=io.StringIO(), stderr=err)
    assert "line 1: event id=" in err.getvalue()


def test_the_offline_module_agrees_with_the_chain_module() -> None:
    # offline.py keeps a copy of the one list (it runs without Django): held to it here.
    assert offline.DIGEST_V1_FIELDS == chain.DIGEST_V1_FIELDS
    assert offline.LATER_FIELDS == chain.LATER_FIELDS, "copy chain.LATER_FIELDS to offline.py"
    assert {*offline.DIGEST_V1_FIELDS, *offline.LATER_FIELDS} == set(audit_fields.HASHED)
    assert offline.EMPTY == chain.EMPTY
    # How offline.py reads CSV cells back: by the model fields' kinds.
    assert set(audit_fields.of_kind("int")) == offline.INT_FIELDS, "offline.INT_FIELDS"
    assert set(audit_fields.of_kind("json")) == offline.JSON_FIELDS, "offline.JSON_FIELDS"
    assert set(audit_fields.of_kind("ip")) == offline.IP_FIELDS, "offline.IP_FIELDS"
    values = {"chain_key": "org:1", "created_at": "2026-01-01T00:00:00.000000+00:00"}
    assert offline.content_digest(values) == chain.content_digest(values)
    assert offline.link_hash("a", 2, "b") == chain.link_hash("a", 2, "b")
    import ast

    tree = ast.parse((ROOT / "apps" / "audit" / "offline.py").read_text())
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported - set(sys.stdlib_module_names) - {"__future__"} == {"cryptography"}


def test_a_large_export_with_proof_runs_as_a_job_and_verifies(
    org: Organization, reviewer: User
) -> None:
    from django.core.files.storage import default_storage

    from apps.audit.services import audit_export_request, audit_export_run

    seed(org)
    job = audit_export_request(organization=org, actor=reviewer, params={}, fmt="csv", proof=True)
    done = audit_export_run(export_id=job.pk)
    assert done.status == "done"
    assert done.proof
    with default_storage.open(done.file_path, "rb") as handle:
        report = offline.verify_bytes(handle.read(), public_key=public_key(org))
    assert report.ok, report.lines()
    assert report.events >= 8


def test_the_list_page_shows_every_shard_head(
    client: Client, org: Organization, reviewer: User
) -> None:
    audit_record(action="org.created", organization=org)
    last = shard_event(org, 3)
    login(client, reviewer)
    page = client.get(reverse("audit:list", kwargs={"org_slug": org.slug})).content.decode()
    assert f"org:{org.pk}:3" in page
    assert last.hash in page
