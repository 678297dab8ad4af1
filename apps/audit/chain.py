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
from typing import Any

GENESIS_HASH = "0" * 64

HASHED_FIELDS = (
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
    doc = {name: values.get(name) for name in HASHED_FIELDS}
    created_at = doc["created_at"]
    # A datetime, or already its canonical text (audit_verify has PostgreSQL format it).
    if created_at is not None and not isinstance(created_at, str):
        doc["created_at"] = created_at.isoformat(timespec="microseconds")
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode()


def content_digest(values: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(values)).hexdigest()


def link_hash(prev_hash: str, seq: int, content: str) -> str:
    return hashlib.sha256(f"{prev_hash}:{seq}:{content}".encode()).hexdigest()


def event_hash(values: dict[str, Any]) -> str:
    """The hash an event with these field values (incl. seq and prev_hash) must carry."""
    return link_hash(str(values["prev_hash"]), int(values["seq"]), content_digest(values))
