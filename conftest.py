"""Shared pytest fixtures for the whole suite (apps/*/tests and tests/)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User

from apps.organizations.models import Organization
from tests.factories import MembershipFactory, OrganizationFactory, UserFactory


def pytest_report_header() -> list[str]:
    from django.conf import settings

    return [settings.BACKENDS.describe()]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from django.conf import settings

    terminalreporter.write_line(settings.BACKENDS.describe())


@pytest.fixture(autouse=True)
def _fresh_audit_context() -> Iterator[None]:
    """Each test starts with the system's audit context and leaves none behind (a view
    called without the middleware, e.g. through APIRequestFactory, binds an actor)."""
    from apps.core import audit_context

    token = audit_context.bind(audit_context.SYSTEM_CONTEXT)
    yield
    audit_context.unbind(token)


@pytest.fixture
def org(db: None) -> Organization:  # noqa: ARG001 - database access
    return OrganizationFactory(name="Acme", slug="acme")


@pytest.fixture
def other_org(db: None) -> Organization:  # noqa: ARG001 - database access
    return OrganizationFactory(name="Globex", slug="globex")


def _member(org: Organization, role: Any, email: Any) -> User:
    return MembershipFactory(organization=org, role=role, user=UserFactory(email=email)).user


@pytest.fixture
def owner(org: Organization) -> User:
    return _member(org, "owner", "owner@acme.test")


@pytest.fixture
def admin(org: Organization) -> User:
    return _member(org, "admin", "admin@acme.test")


@pytest.fixture
def reviewer(org: Organization) -> User:
    return _member(org, "reviewer", "reviewer@acme.test")


@pytest.fixture
def member(org: Organization) -> User:
    return _member(org, "member", "member@acme.test")


@pytest.fixture
def outsider(other_org: Organization) -> User:
    """An owner of another organization: must see none of `org`."""
    return _member(other_org, "owner", "owner@globex.test")


@pytest.fixture
def celery_worker(transactional_db: None) -> Iterator[Any]:  # noqa: ARG001 - database access
    """A real Celery worker (in a thread) consuming this run's queue on the real
    broker (Redis when it answers). Tests enqueue normally and wait for results
    in the database."""
    from celery.contrib.testing.worker import start_worker

    from grantry.celery import app

    with start_worker(
        app,
        pool="threads",
        concurrency=2,
        perform_ping_check=False,
        loglevel="WARNING",
        shutdown_timeout=20,
    ) as worker:
        yield worker


@pytest.fixture(autouse=True)
def _browser_tests_allow_sync_orm(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Playwright's sync API runs an event loop in the test thread; the test's own
    ORM calls are still plain synchronous code. Only for tests marked `browser`,
    and undone after each, so async-safety stays on for the rest of the suite."""
    if request.node.get_closest_marker("browser"):
        monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(autouse=True)
def _fresh_auth_failure_counters(monkeypatch: pytest.MonkeyPatch) -> None:
    """Failed-authentication throttles and aggregates live in the shared cache for a
    window: give each test its own, so no test is throttled by another's failures."""
    import uuid

    from apps.accounts import auth_failures

    monkeypatch.setattr(auth_failures, "namespace", f"authfail-{uuid.uuid4().hex}")
