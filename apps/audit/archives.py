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

from django.core.files.storage import Storage, storages

from apps.audit import offline
from apps.audit.models import ArchiveStatus, AuditArchive, AuditSigningKeypair

ARCHIVE_STORAGE = "audit_archive"


def archive_storage() -> Storage:
    return storages[ARCHIVE_STORAGE]


def archived_through(organization_id: int | None) -> dict[str, tuple[int, str]]:
    """{chain_key: (last seq, its hash)} covered by the organization's verified archives."""
    covered: dict[str, tuple[int, str]] = {}
    archives = AuditArchive.objects.filter(status=ArchiveStatus.VERIFIED)
    archives = (
        archives.filter(organization__isnull=True)
        if organization_id is None
        else archives.filter(organization_id=organization_id)
    )
    for chains in archives.values_list("chains", flat=True):
        for key, entry in chains.items():
            if entry["last_seq"] > covered.get(key, (0, ""))[0]:
                covered[key] = (entry["last_seq"], entry["last_hash"])
    return covered


def archive_problems(
    archive: AuditArchive,
    *,
    expected: dict[str, tuple[int, int]] | None = None,
    watch: Mapping[str, Collection[int]] | None = None,
) -> tuple[list[str], offline.Report]:
    """Read the archive back from the store and check it: the SHA-256 recorded when it
    was written, every link, the checkpoint's signature under the organization's own
    (pinned) key, and that it covers exactly the chains and seqs it should."""
    owner = archive.organization_id
    keys = AuditSigningKeypair.objects.defer("private_key")
    key = (
        keys.filter(organization_id=owner).first()
        if owner is not None
        else keys.filter(organization__isnull=True).first()  # the installation's key
    )
    digest = hashlib.sha256()

    def chunks() -> Iterator[bytes]:
        with archive_storage().open(archive.path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
                yield chunk

    try:
        report = offline.verify_bytes(
            chunks(), public_key=key.public_key if key else "", watch=watch
        )
    except Exception as exc:  # a missing object, a store that is down: not verified
        report = offline.Report()
        report.problem(None, f"cannot read {archive.path}: {type(exc).__name__}")
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
