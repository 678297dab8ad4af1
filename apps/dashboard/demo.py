"""The demo organization of `make run`. Each app adds its part of the story
through its own services, so the demo exercises the real code paths."""

from __future__ import annotations

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import transaction

from apps.core.ports import Port
from apps.organizations.models import Membership, Organization, OrgRole

# The Sandbox is imported by no app: when installed it plugs this in (apps.core.ports).
sandbox_seed_user_data: Port[..., None] = Port(
    "sandbox_seed_user_data", answered_by="apps.sandbox.services.sandbox_seed_user_data"
)

DEMO_SLUG = "demo"


def _user(email: str, password: str) -> User:
    User = get_user_model()
    user, created = User.objects.get_or_create(username=email, defaults={"email": email})
    if created:
        user.set_password(password)
        user.save()
    EmailAddress.objects.get_or_create(
        user=user, email=email, defaults={"verified": True, "primary": True}
    )
    return user


def demo_organization_and_owner(*, email: str) -> tuple[Organization, User]:
    org = Organization.objects.get(slug=DEMO_SLUG)
    return org, get_user_model().objects.get(username=email)


@transaction.atomic
def seed_demo(*, email: str, password: str, reviewer_email: str) -> list[str]:
    org, _ = Organization.objects.get_or_create(slug=DEMO_SLUG, defaults={"name": "Demo Org"})
    owner = _user(email, password)
    reviewer = _user(reviewer_email, password)
    Membership.objects.get_or_create(organization=org, user=owner, defaults={"role": OrgRole.OWNER})
    Membership.objects.get_or_create(
        organization=org, user=reviewer, defaults={"role": OrgRole.REVIEWER}
    )
    summary = [f"Demo organization '{org.name}' (/o/{org.slug}/) is ready."]
    if settings.GRANTRY_SANDBOX_ENABLED:
        # The demo owner is also a Sandbox user with projects and tasks to connect to.
        sandbox_seed_user_data(user=owner)
        summary.append("Sandbox demo SaaS (/sandbox/) has projects and tasks for the demo owner.")
        from apps.connections.demo import seed_sandbox_connection

        summary.append(seed_sandbox_connection(organization=org, user=owner))
        from apps.dashboard.demo_worker import seed_demo_worker

        summary.append(seed_demo_worker(organization=org, user=owner))
    return summary
