"""`manage.py audit_verify [--org SLUG] [--no-archives]`: verify the audit hash chains,
as one history: the months in the archive store (read back and checked), then the live
rows going on from them (apps.audit.history).

`manage.py audit_verify --file export.jsonl [--public-key B64]`: check an export
with proof offline (apps.audit.offline, the same code as
scripts/verify_audit_export.py). Without --public-key the key is looked up
here by the checkpoint's key id."""

from __future__ import annotations

import csv
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.audit import offline
from apps.audit.history import verify_history
from apps.audit.signing import public_key_by_id
from apps.organizations.models import Organization


class Command(BaseCommand):
    help = "Walk the audit hash chain(s); exit non-zero at the first broken event."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", metavar="SLUG", help="Verify only this organization.")
        parser.add_argument(
            "--file", metavar="PATH", help="Check an export with proof instead of the database."
        )
        parser.add_argument(
            "--public-key", metavar="B64", help="With --file: the Ed25519 key to check against."
        )
        parser.add_argument(
            "--no-archives",
            action="store_true",
            help="Do not read the archive store: trust the archives' recorded ends and check "
            "only that the live rows go on from them.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["file"]:
            self._check_file(options["file"], options["public_key"])
            return
        org_ids = None
        if options["org"]:
            org = Organization.objects.filter(slug=options["org"]).first()
            if org is None:
                raise CommandError(f"No organization with slug {options['org']!r}.")
            org_ids = [org.pk]
        started = time.monotonic()
        archives, reports = verify_history(
            organization_ids=org_ids, read_archives=not options["no_archives"]
        )
        elapsed = time.monotonic() - started
        total = sum(r.count for r in reports)
        for archive in archives:
            (self.stdout if archive.ok else self.stderr).write(str(archive))
        for report in reports:
            (self.stdout if report.ok else self.stderr).write(str(report))
        rate = total / elapsed if elapsed > 0 else 0.0
        self.stdout.write(
            f"{len(reports)} chain(s), {total} events in {elapsed:.2f}s ({rate:,.0f} events/s)"
        )
        broken = [r for r in reports if not r.ok]
        bad_archives = [a for a in archives if not a.ok]
        if broken or bad_archives:
            raise CommandError(
                f"{len(broken)} chain(s) broken, {len(bad_archives)} archive(s) broken."
            )
        if not reports:
            self.stdout.write("No audit chains yet.")

    def _check_file(self, path: str, public_key: str | None) -> None:
        if public_key is None:
            public_key = _key_named_in(path)
        try:
            report = offline.verify_file(path, public_key=public_key)
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"Cannot read {path}: {exc}") from None
        for line in report.lines():
            (self.stderr if line.startswith("PROBLEM") else self.stdout).write(line)
        if not report.ok:
            raise CommandError(f"{path}: {len(report.problems)} problem(s).")


def _key_named_in(path: str) -> str | None:
    """This installation's public key for the checkpoint's key id, if it holds it."""
    import json

    key_id = None
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            for line in handle:
                if offline.CHECKPOINT_KEY in line:
                    text = line.strip()
                    if text.startswith(offline.CSV_CHECKPOINT_MARK):
                        text = next(csv.reader([text]))[1]
                    key_id = json.loads(text).get("key_id")
    except (OSError, ValueError, IndexError):
        return None
    key = public_key_by_id(str(key_id))
    return key.public_key if key is not None else None
