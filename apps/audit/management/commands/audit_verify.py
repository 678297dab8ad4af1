"""`manage.py audit_verify [--org SLUG]`: verify the audit hash chains."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.audit.verify import verify_chains
from apps.organizations.models import Organization


class Command(BaseCommand):
    help = "Walk the audit hash chain(s); exit non-zero at the first broken event."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", metavar="SLUG", help="Verify only this organization.")

    def handle(self, *args: Any, **options: Any) -> None:
        org_ids = None
        if options["org"]:
            org = Organization.objects.filter(slug=options["org"]).first()
            if org is None:
                raise CommandError(f"No organization with slug {options['org']!r}.")
            org_ids = [org.pk]
        started = time.monotonic()
        reports = verify_chains(organization_ids=org_ids)
        elapsed = time.monotonic() - started
        total = sum(r.count for r in reports)
        for report in reports:
            (self.stdout if report.ok else self.stderr).write(str(report))
        rate = total / elapsed if elapsed > 0 else 0.0
        self.stdout.write(
            f"{len(reports)} chain(s), {total} events in {elapsed:.2f}s ({rate:,.0f} events/s)"
        )
        broken = [r for r in reports if not r.ok]
        if broken:
            raise CommandError(f"{len(broken)} chain(s) broken.")
        if not reports:
            self.stdout.write("No audit chains yet.")
