#!/usr/bin/env python3
"""Verify a Grantry audit export offline: contiguous, unedited, signed.

Standalone on purpose: this one file needs only the Python standard library
and `cryptography` (pip install cryptography). Copy it anywhere (it is also
scripts/verify_audit_export.py) and run

    python verify_audit_export.py export.jsonl --public-key <base64>

with the export downloaded "with proof" (CSV or JSON Lines) and the
organization's public key from its Settings page or from
https://<grantry>/.well-known/grantry-audit-keys/<key_id>. Exit status 0
means every check passed; 1 names each problem with its line number.

What is checked, per chain (an organization's trail is one or more chains,
"org:<id>" and "org:<id>:<n>"):
* every event's contents hash to its content digest, and
  hash = sha256("<prev_hash>:<seq>:<content digest>")  (edits);
* seq runs without gaps and each prev_hash is the previous event's hash
  (deletions, insertions, reordering);
* the slice's first and last links are the ones in the checkpoint, and the
  checkpoint's Ed25519 signature is valid (truncation, a re-hashed forgery).

Without --public-key the key embedded in the checkpoint is used and a
warning says so: anyone who rewrites an export can also re-sign it with a
key of their own, so pin the key you got from Grantry.

Several files (archives from Grantry's archive store, then an export of the
live table) are checked as one history, oldest first:

    python verify_audit_export.py 2026-01.jsonl 2026-02.jsonl live.jsonl --public-key <base64>

each file as above, and each chain running on from one file into the next with no
seq missing and, where files overlap, the same events.

Inside Grantry, `manage.py audit_verify --file`, the dashboard and the API
run this same module.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import itertools
import json
import sys
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

# Copies of the one list of audit fields (apps.audit.fields, the AuditEvent
# model), kept here so this file runs without Django; a test holds them equal.
# The fields every digest has covered since the first event (chain.DIGEST_V1_FIELDS).
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
# Fields added later: hashed only when they hold a value (chain.LATER_FIELDS).
LATER_FIELDS: tuple[str, ...] = ("on_behalf_of_id", "on_behalf_of_label")
EMPTY: tuple[Any, ...] = (None, "", {}, [])
# How CSV cells come back as values (every other field is text).
INT_FIELDS = frozenset(
    {
        "id",
        "seq",
        "organization_id",
        "worker_id",
        "connection_id",
        "upstream_status",
        "latency_ms",
        "on_behalf_of_id",
    }
)
JSON_FIELDS = frozenset({"metadata"})
IP_FIELDS = frozenset({"ip"})
CHECKPOINT_KEY = "grantry_checkpoint"
CHECKPOINT_FORMAT = "grantry-audit-checkpoint/1"
CSV_CHECKPOINT_MARK = "#grantry-checkpoint"
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
MAX_PROBLEMS = 100


def canonical(values: dict[str, Any]) -> bytes:
    doc = {name: values.get(name) for name in DIGEST_V1_FIELDS}
    for name in LATER_FIELDS:
        value = values.get(name)
        if value not in EMPTY:
            doc[name] = value
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode()


def content_digest(values: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(values)).hexdigest()


def link_hash(prev_hash: str, seq: int, content: str) -> str:
    return hashlib.sha256(f"{prev_hash}:{seq}:{content}".encode()).hexdigest()


def checkpoint_message(body: dict[str, Any]) -> bytes:
    """The exact bytes a checkpoint's signature covers."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@dataclass
class ChainState:
    chain_key: str
    first_seq: int | None = None
    first_prev_hash: str | None = None
    last_seq: int | None = None
    last_hash: str | None = None
    count: int = 0


@dataclass
class Problem:
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


@dataclass
class Report:
    events: int = 0
    chains: dict[str, ChainState] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    key_id: str = ""
    checkpoint: dict[str, Any] | None = None
    # {(chain_key, seq): hash} of the events asked for with `watch` (joining files).
    watched: dict[tuple[str, int], str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, line: int | None, message: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(line, message))

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events": self.events,
            "key_id": self.key_id,
            "chains": [
                {
                    "chain_key": c.chain_key,
                    "count": c.count,
                    "first_seq": c.first_seq,
                    "last_seq": c.last_seq,
                    "last_hash": c.last_hash,
                }
                for c in self.chains.values()
            ],
            "problems": [{"line": p.line, "message": p.message} for p in self.problems],
            "warnings": list(self.warnings),
        }

    def lines(self) -> list[str]:
        out = [f"WARNING {w}" for w in self.warnings]
        for chain in self.chains.values():
            out.append(
                f"chain {chain.chain_key}: {chain.count} events, seq {chain.first_seq}"
                f"..{chain.last_seq}, last hash {chain.last_hash}"
            )
        out.extend(f"PROBLEM {p}" for p in self.problems)
        verdict = "OK" if self.ok else f"FAILED ({len(self.problems)} problem(s))"
        out.append(f"{verdict}: {self.events} events in {len(self.chains)} chain(s)")
        return out


# --- reading -------------------------------------------------------------------


def records(lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """(line number, record or None, error) from JSON Lines or CSV text lines."""
    iterator = iter(lines)
    first = next(iterator, None)
    if first is None:
        return
    chained = itertools.chain([first], iterator)
    if first.lstrip("\ufeff").startswith("{"):
        yield from _jsonl(chained)
    else:
        yield from _csv(chained)


def _jsonl(lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        try:
            value = json.loads(text)
        except ValueError:
            yield number, None, "not valid JSON"
            continue
        if not isinstance(value, dict):
            yield number, None, "not a JSON object"
            continue
        yield number, value, ""


def _csv(lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    reader = csv.reader(lines)
    header: list[str] | None = None
    for row in reader:
        number = reader.line_num
        if header is None:
            header = row
            continue
        if row and row[0] == CSV_CHECKPOINT_MARK:
            try:
                yield number, json.loads(row[1]), ""
            except (IndexError, ValueError):
                yield number, None, "unreadable checkpoint row"
            continue
        if len(row) != len(header):
            yield number, None, f"{len(row)} cells where the header has {len(header)}"
            continue
        yield number, {"__csv__": True, **dict(zip(header, row, strict=True))}, ""


def _csv_candidates(cells: dict[str, str]) -> Iterator[dict[str, Any]]:
    """The event values a CSV row can stand for. Types come back by field; a cell
    exported as '=… (formula neutralised) may stand for =… or for '=… itself."""
    base: dict[str, Any] = {}
    ambiguous: list[str] = []
    for name, text in cells.items():
        if name == "__csv__":
            continue
        if name in INT_FIELDS:
            base[name] = int(text) if text else None
        elif name in JSON_FIELDS:
            base[name] = json.loads(text) if text else {}
        elif name in IP_FIELDS:
            base[name] = text or None
        else:
            base[name] = text
            if text.startswith("'") and text[1:].startswith(FORMULA_PREFIXES):
                ambiguous.append(name)
    for choice in itertools.product((True, False), repeat=min(len(ambiguous), 10)):
        values = dict(base)
        for name, strip in zip(ambiguous, choice, strict=False):
            if strip:
                values[name] = values[name][1:]
        yield values


# --- checking ------------------------------------------------------------------


def _event_digest(record: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
    """The record's values and the content digest its stored hash accepts, or None."""
    candidates: Iterable[dict[str, Any]]
    if record.get("__csv__"):
        try:
            candidates = list(_csv_candidates(record))
        except ValueError:
            return None
    else:
        candidates = [record]
    for values in candidates:
        digest = content_digest(values)
        if link_hash(str(values.get("prev_hash")), int(values.get("seq") or 0), digest) == (
            values.get("hash")
        ):
            return values, digest
    return None


def verify_lines(
    lines: Iterable[str],
    *,
    public_key: str | None = None,
    watch: Mapping[str, Collection[int]] | None = None,
) -> Report:
    """Check an export with proof, given its text lines (a file opened in text mode).
    `watch` ({chain_key: seqs}) keeps those events' hashes in `Report.watched`."""
    report = Report()
    checkpoint_line: int | None = None
    signed: dict[str, Any] | None = None
    for number, record, error in records(lines):
        if record is None:
            report.problem(number, error)
            continue
        if CHECKPOINT_KEY in record:
            if checkpoint_line is not None:
                report.problem(number, "a second checkpoint (only one is expected, at the end)")
            checkpoint_line, signed = number, record
            continue
        if checkpoint_line is not None:
            report.problem(number, "an event after the checkpoint (appended later)")
        _check_event(report, number, record)
        if watch and record.get("seq") in watch.get(str(record.get("chain_key")), ()):
            report.watched[(str(record["chain_key"]), int(record["seq"]))] = str(record["hash"])
    if signed is None:
        report.problem(None, "no signed checkpoint: export again with proof")
        return report
    _check_checkpoint(report, checkpoint_line, signed, public_key)
    return report


def _check_event(report: Report, number: int, record: dict[str, Any]) -> None:
    report.events += 1
    try:
        chain_key, seq = str(record["chain_key"]), int(record["seq"])
        prev_hash, hash_ = str(record["prev_hash"]), str(record["hash"])
    except (KeyError, TypeError, ValueError):
        report.problem(number, "no chain link (chain_key, seq, prev_hash, hash): export with proof")
        return
    where = f"event id={record.get('id')} {chain_key} seq {seq}"
    chain = report.chains.get(chain_key)
    if chain is None:
        chain = report.chains[chain_key] = ChainState(chain_key, seq, prev_hash)
    elif chain.last_seq is not None and seq != chain.last_seq + 1:
        report.problem(
            number,
            f"{where}: expected seq {chain.last_seq + 1} after the previous line "
            f"(events missing, added or reordered)",
        )
    elif prev_hash != chain.last_hash:
        report.problem(number, f"{where}: prev_hash is not the previous event's hash")
    verified = _event_digest(record)
    if verified is None:
        report.problem(number, f"{where}: the contents do not match the event's hash (edited)")
    elif record.get("content_digest") not in (None, "", verified[1]):
        report.problem(number, f"{where}: content_digest does not match the contents (edited)")
    chain.last_seq, chain.last_hash = seq, hash_
    chain.count += 1


def _check_checkpoint(
    report: Report, number: int | None, signed: dict[str, Any], public_key: str | None
) -> None:
    body = signed.get(CHECKPOINT_KEY)
    if not isinstance(body, dict) or body.get("format") != CHECKPOINT_FORMAT:
        report.problem(number, f"the checkpoint is not a {CHECKPOINT_FORMAT} document")
        return
    report.checkpoint, report.key_id = body, str(body.get("key_id", ""))
    embedded = str(signed.get("public_key", ""))
    if public_key is None:
        public_key = embedded
        report.warnings.append(
            f"the signature was checked with the key embedded in the export ({report.key_id}); "
            "pass --public-key with the key from Grantry's Settings page to pin it"
        )
    elif embedded and embedded != public_key:
        report.problem(number, "the checkpoint names a different public key than the pinned one")
    if not _signature_ok(public_key, str(signed.get("signature", "")), body):
        report.problem(number, "the checkpoint's signature is not valid for this public key")
        return
    _check_signed_chains(report, number, body)


def _check_signed_chains(report: Report, number: int | None, body: dict[str, Any]) -> None:
    """Each chain in the file runs exactly as the signed checkpoint says, and the checkpoint
    lists no events the file lacks."""
    listed: dict[str, dict[str, Any]] = {}
    for entry in body.get("chains") or []:
        if isinstance(entry, dict):
            listed[str(entry.get("chain_key"))] = entry
    for key, chain in report.chains.items():
        entry = listed.get(key)
        if entry is None:
            report.problem(number, f"chain {key} is in the file but not in the signed checkpoint")
            continue
        wanted = (
            entry.get("first_seq"),
            entry.get("first_prev_hash"),
            entry.get("last_seq"),
            entry.get("last_hash"),
        )
        found = (chain.first_seq, chain.first_prev_hash, chain.last_seq, chain.last_hash)
        if wanted != found:
            report.problem(
                number,
                f"chain {key}: the file runs seq {found[0]}..{found[2]} ending in hash "
                f"{found[3]}, the signed checkpoint seq {wanted[0]}..{wanted[2]} ending in "
                f"{wanted[3]} (events cut off, added or re-hashed)",
            )
    for key, entry in listed.items():
        if key not in report.chains and entry.get("count"):
            report.problem(
                number, f"chain {key}: the signed checkpoint lists events the file lacks"
            )


def _signature_ok(public_key: str, signature: str, body: dict[str, Any]) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key, validate=True))
        key.verify(base64.b64decode(signature, validate=True), checkpoint_message(body))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def verify_file(
    path: str, *, public_key: str | None = None, watch: Mapping[str, Collection[int]] | None = None
) -> Report:
    with open(path, encoding="utf-8", newline="") as handle:
        return verify_lines(handle, public_key=public_key, watch=watch)


def verify_bytes(
    data: bytes | Iterable[bytes],
    *,
    public_key: str | None = None,
    watch: Mapping[str, Collection[int]] | None = None,
) -> Report:
    """For uploads: bytes or an iterable of byte chunks (decoded as UTF-8)."""
    if isinstance(data, bytes):
        data = [data]
    stream = io.TextIOWrapper(io.BufferedReader(_ByteChunks(data)), encoding="utf-8", newline="")
    try:
        return verify_lines(stream, public_key=public_key, watch=watch)
    except UnicodeDecodeError:
        report = Report()
        report.problem(None, "the file is not UTF-8 text")
        return report


class _ByteChunks(io.RawIOBase):
    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks, self._pending = iter(chunks), b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = chunk
        size = min(len(buffer), len(self._pending))
        buffer[:size], self._pending = self._pending[:size], self._pending[size:]
        return size


# --- several files as one history ----------------------------------------------


@dataclass
class History:
    """Several exports with proof checked as one history: each file on its own, and
    each chain running on from one file into the next (oldest first): no seq missing
    between them, and where two files hold the same events (an archive and a later
    export of the live table) the same ones, proven at one seq by its hash (each
    file's own links prove the rest)."""

    files: list[tuple[str, Report]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    chains: dict[str, tuple[int, str]] = field(default_factory=dict)  # last seq, hash

    @property
    def ok(self) -> bool:
        return not self.problems and all(report.ok for _, report in self.files)

    def lines(self) -> list[str]:
        out: list[str] = []
        for name, report in self.files:
            out.extend(f"{name}: {line}" for line in report.lines())
        out.extend(f"PROBLEM {p}" for p in self.problems)
        for key, (seq, hash_) in self.chains.items():
            out.append(f"history {key}: seq 1..{seq}, last hash {hash_}")
        events = sum(report.events for _, report in self.files)
        verdict = "OK" if self.ok else "FAILED"
        out.append(f"{verdict}: {len(self.files)} file(s), {events} events as one history")
        return out


def verify_history(
    sources: list[tuple[str, Callable[[Mapping[str, Collection[int]] | None], Report]]],
) -> History:
    """`sources`: (name, check) oldest first; check(watch) verifies that file."""
    history = History()
    reports = [(name, check(None)) for name, check in sources]
    history.files = reports
    # Where a file overlaps what the earlier ones hold, the seq to compare at, per side.
    points: list[dict[str, set[int]]] = [{} for _ in reports]
    joins: list[tuple[str, int, int, int]] = []  # chain, earlier file, later file, seq
    holder: dict[str, list[tuple[int, int, int]]] = {}  # chain: (file, first, last)
    reach: dict[str, tuple[int, str]] = {}
    for index, (name, report) in enumerate(reports):
        for key, chain in report.chains.items():
            first, last = chain.first_seq or 0, chain.last_seq or 0
            seq, hash_ = reach.get(key, (0, GENESIS))
            if first > seq + 1:
                history.problems.append(
                    f"{name}: chain {key} starts at seq {first}, but the files before it end "
                    f"at seq {seq}: events {seq + 1}..{first - 1} are missing"
                )
            elif first == seq + 1 and chain.first_prev_hash != hash_:
                history.problems.append(
                    f"{name}: chain {key} seq {first} does not link to the previous file's "
                    f"last event (prev_hash differs)"
                )
            elif first <= seq:
                at = min(seq, last)
                earlier = next((i for i, lo, hi in holder[key] if lo <= at <= hi), index)
                points[index].setdefault(key, set()).add(at)
                points[earlier].setdefault(key, set()).add(at)
                joins.append((key, earlier, index, at))
            holder.setdefault(key, []).append((index, first, last))
            if last > seq:
                reach[key] = (last, chain.last_hash or "")
    watched: dict[int, Report] = {
        index: sources[index][1](points[index]) for index in range(len(reports)) if points[index]
    }
    for key, earlier, later, at in joins:
        before = watched[earlier].watched.get((key, at))
        after = watched[later].watched.get((key, at))
        if before is None or before != after:
            history.problems.append(
                f"{reports[later][0]}: chain {key} seq {at} differs from the same event in "
                f"{reports[earlier][0]} (the files disagree)"
            )
    history.chains = reach
    return history


GENESIS = "0" * 64


def verify_files(paths: list[str], *, public_key: str | None = None) -> History:
    def check(path: str) -> Callable[[Mapping[str, Collection[int]] | None], Report]:
        return lambda watch: verify_file(path, public_key=public_key, watch=watch)

    return verify_history([(path, check(path)) for path in paths])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "file",
        nargs="+",
        help="the export (.jsonl or .csv) downloaded with proof; several: archives and "
        "exports oldest first, checked as one history",
    )
    parser.add_argument("--public-key", help="the organization's Ed25519 public key (base64)")
    args = parser.parse_args(argv)
    try:
        if len(args.file) == 1:
            report: Report | History = verify_file(args.file[0], public_key=args.public_key)
        else:
            report = verify_files(args.file, public_key=args.public_key)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"cannot read: {exc}", file=sys.stderr)
        return 2
    for line in report.lines():
        print(line, file=sys.stdout if not line.startswith("PROBLEM") else sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
