"""The archive store and what is in it: reading an archive back and checking it.

Archives are exports with proof (apps.audit.proof) written by
apps.audit.services.archive into the storage named "audit_archive" (Django's
STORAGES: a directory under var/ by default, an S3-compatible bucket through
django-storages when configured). Checking one is the offline verifier's work
(apps.audit.offline) against the organization's own public key, plus the SHA-256
recorded when it was written and the chains and seqs it must cover."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterator, Mapping
from typing import Any

from django.core.files.storage import Storage, storages

from apps.audit import offline
from apps.audit.models import ArchiveStatus, AuditArchive, AuditSigningKeypair

ARCHIVE_STORAGE = "audit_archive"


def archive_storage() -> Storage:
    return storages[ARCHIVE_STORAGE]


class _StoreError(Exception):
    """Raised by the store itself while opening or reading (not by the check)."""


class ArchiveUnreadable(Exception):
    """The store could not be read (down, refusing, timing out): nothing is known about
    the archive, so it is neither verified nor failed."""


def archived_through(organization_id: int | None) -> dict[str, tuple[int, str]]:
    """{chain_key: (last seq, its hash)} covered by the organization's verified archives
    without a gap: a chain's archives taken by first seq from seq 1, stopping at the
    first gap or the first archive that is not verified (a FAILED archive keeps the
    seqs it held, so the chain is covered only up to where it begins)."""
    archives = AuditArchive.objects.all()
    archives = (
        archives.filter(organization__isnull=True)
        if organization_id is None
        else archives.filter(organization_id=organization_id)
    )
    pieces: dict[str, list[tuple[int, int, str, bool]]] = {}
    for status, chains in archives.values_list("status", "chains"):
        for key, entry in chains.items():
            pieces.setdefault(key, []).append(
                (
                    int(entry["first_seq"]),
                    int(entry["last_seq"]),
                    entry.get("last_hash", ""),
                    status == ArchiveStatus.VERIFIED,
                )
            )
    covered: dict[str, tuple[int, str]] = {}
    for key, runs in pieces.items():
        last, last_hash = 0, ""
        for first_seq, last_seq, hash_, verified in sorted(runs):
            if first_seq != last + 1 or not verified:
                break
            last, last_hash = last_seq, hash_
        if last:
            covered[key] = (last, last_hash)
    return covered


def archive_problems(
    archive: AuditArchive,
    *,
    expected: dict[str, tuple[int, int]] | None = None,
    watch: Mapping[str, Collection[int]] | None = None,
    raise_unreadable: bool = False,
) -> tuple[list[str], offline.Report]:
    """Read the archive back from the store and check it: the SHA-256 recorded when it
    was written, every link, the checkpoint's signature under the organization's own
    (pinned) key, and that it covers exactly the chains and seqs it should.

    A file the store says is not there is a problem. With `raise_unreadable`, a store
    that fails to open or read the file and does not answer that it is missing (down,
    refusing, timing out) raises ArchiveUnreadable instead: that says nothing about
    the archive."""
    owner = archive.organization_id
    keys = AuditSigningKeypair.objects.defer("private_key")
    key = (
        keys.filter(organization_id=owner).first()
        if owner is not None
        else keys.filter(organization__isnull=True).first()  # the installation's key
    )
    digest = hashlib.sha256()

    try:
        report = offline.verify_bytes(
            _chunks(archive.path, digest), public_key=key.public_key if key else "", watch=watch
        )
    except Exception as exc:  # a missing object, a store that is down: not verified
        cause = exc.__cause__ if isinstance(exc, _StoreError) else exc
        reason = f"cannot read {archive.path}: {type(cause).__name__}"
        if raise_unreadable and isinstance(exc, _StoreError) and not _missing(archive.path):
            raise ArchiveUnreadable(reason) from cause
        report = offline.Report()
        report.problem(None, reason)
        return [str(p) for p in report.problems], report
    problems = [str(p) for p in report.problems]
    if archive.sha256 and digest.hexdigest() != archive.sha256:
        problems.append("the file's SHA-256 is not the one recorded when it was written")
    signed_for = (report.checkpoint or {}).get("organization_id")
    if report.checkpoint is not None and signed_for != archive.organization_id:
        problems.append("the checkpoint was issued for another organization")
    wanted = expected or {k: (v["first_seq"], v["last_seq"]) for k, v in archive.chains.items()}
    found = {k: (c.first_seq, c.last_seq) for k, c in report.chains.items()}
    if not problems and found != wanted:
        problems.append(f"the file covers {found}, the archive should cover {wanted}")
    return problems, report


def _chunks(path: str, digest: Any) -> Iterator[bytes]:
    """The file from the store, hashed as it is read; the store's own errors as _StoreError."""
    try:
        handle = archive_storage().open(path, "rb")
    except Exception as exc:
        raise _StoreError(exc) from exc
    with handle:
        while True:
            try:
                chunk = handle.read(1 << 20)
            except Exception as exc:
                raise _StoreError(exc) from exc
            if not chunk:
                break
            digest.update(chunk)
            yield chunk


def _missing(path: str) -> bool:
    """The store answers that the file is not there (not: the store did not answer)."""
    try:
        return not archive_storage().exists(path)
    except Exception:
        return False
