"""Seed the demo organization used by `make run` (idempotent)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

DEMO_EMAIL = "demo@grantry.local"
DEMO_PASSWORD = "grantry-demo-password"  # a documented demo login, DEBUG only
DEMO_REVIEWER_EMAIL = "reviewer@grantry.local"


class Command(BaseCommand):
    help = "Create the demo organization, its users and its Sandbox connection."

    def handle(self, *args: Any, **options: Any) -> None:
        from apps.dashboard.demo import seed_demo

        summary = seed_demo(
            email=DEMO_EMAIL, password=DEMO_PASSWORD, reviewer_email=DEMO_REVIEWER_EMAIL
        )
        for line in summary:
            self.stdout.write(line)
        from django.conf import settings

        if settings.GRANTRY_SANDBOX_ENABLED:
            from apps.dashboard.demo import demo_organization_and_owner
            from apps.dashboard.demo_traffic import seed_demo_traffic

            org, owner = demo_organization_and_owner(email=DEMO_EMAIL)
            self.stdout.write(seed_demo_traffic(organization=org, user=owner))
