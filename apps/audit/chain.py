"""Canonical serialisation and hashing of audit events.

Each organization's events form a chain. An event's hash links three things:

    hash = sha256("<prev_hash>:<seq>:<content digest>")
    content digest = sha256(canonical JSON of every other field)

so editing, deleting or reordering any event breaks every later link. The
content digest is computed by the application before the chain is locked;
only the short link step runs under the lock (on PostgreSQL, inside the
single INSERT statement of `apps.audit.services`, with PostgreSQL's
built-in sha256 — the two must agree, and a test checks that they do)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from apps.audit import fields

GENESIS_HASH = "0" * 64

# The fields the first events hashed, frozen: every digest includes them (a null
# or "" too), so these are never to change. A field added to AuditEvent later is
# hashed as well (the model's list, below) but is in the canonical document only
# when it holds a value: existing rows, which the migration gives null, "" or {},
# keep their digests. `apps.audit.offline` hashes the same way.
DIGEST_V1_FIELDS = (
    "chain_key",
    "created_at",
    "organization_id",
    "actor_type",
    "actor_id",
    "actor_label",
    "action",
    "target_type",
    "target_id",
    "target_label",
    "outcome",
    "decision",
    "worker_id",
    "token_id",
    "connection_id",
    "provider",
    "upstream_status",
    "latency_ms",
    "reason",
    "metadata",
    "ip",
    "user_agent",
    "request_id",
)
HASHED_FIELDS = fields.HASHED
LATER_FIELDS = tuple(name for name in HASHED_FIELDS if name not in DIGEST_V1_FIELDS)
# Canonical text, not datetime's str(): see canonical().
TIME_FIELDS = fields.of_kind("time", HASHED_FIELDS)
EMPTY: tuple[Any, ...] = (None, "", {}, [])


def later_field_problems(audit_fields: Iterable[fields.AuditField]) -> list[str]:
    """Why a field added after the first events would break the existing chains:
    it is hashed, and the value existing rows get from the migration (its default)
    is not empty, so their canonical documents would change. (A Django system check.)"""
    return [
        f"AuditEvent.{field.name} is hashed and was added later, so its default must be "
        f"null, '' or {{}} (existing rows' digests would change), not {default!r}"
        for field in audit_fields
        if field.hashed
        and field.name not in DIGEST_V1_FIELDS
        and (default := field.default()) not in EMPTY
    ]


def missing_v1_fields(names: Iterable[str]) -> list[str]:
    """First-digest fields the model no longer declares: every event hashed them."""
    return [name for name in DIGEST_V1_FIELDS if name not in names]


def chain_key_for(organization_id: int | None, shard: int = 0) -> str:
    """The key of one of the organization's chains. Shard 0 keeps the original
    `org:<id>`; appends move to the others only while shard 0 is busy (see
    `apps.audit.services`), so a quiet organization's trail is one chain."""
    if organization_id is None:
        return "global"
    return f"org:{organization_id}" if shard == 0 else f"org:{organization_id}:{shard}"


def chain_keys_for(organization_id: int | None, shards: int) -> list[str]:
    """Every chain key the organization's events may carry."""
    if organization_id is None:
        return ["global"]
    return [chain_key_for(organization_id, n) for n in range(shards)]


def canonical(values: dict[str, Any]) -> bytes:
    # Hot in audit_verify and the bench seeder: one dict build, no per-field call.
    doc = {name: values.get(name) for name in DIGEST_V1_FIELDS}
    for name in LATER_FIELDS:
        value = values.get(name)
        if value not in EMPTY:
            doc[name] = value
    for name in TIME_FIELDS:
        moment = doc.get(name)
        # A datetime, or already its canonical text (audit_verify has PostgreSQL format it).
        if moment is not None and not isinstance(moment, str):
            doc[name] = moment.isoformat(timespec="microseconds")
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode()


def content_digest(values: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(values)).hexdigest()


def link_hash(prev_hash: str, seq: int, content: str) -> str:
    return hashlib.sha256(f"{prev_hash}:{seq}:{content}".encode()).hexdigest()


def event_hash(values: dict[str, Any]) -> str:
    """The hash an event with these field values (incl. seq and prev_hash) must carry."""
    return link_hash(str(values["prev_hash"]), int(values["seq"]), content_digest(values))
