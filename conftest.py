"""Shared pytest fixtures for the whole suite (apps/*/tests and tests/)."""

from __future__ import annotations

import pytest

from tests.factories import MembershipFactory, OrganizationFactory, UserFactory


def pytest_report_header(config: pytest.Config) -> list[str]:
    from django.conf import settings

    return [settings.BACKENDS.describe()]


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ANN001
    from django.conf import settings

    terminalreporter.write_line(settings.BACKENDS.describe())


@pytest.fixture(autouse=True)
def _fresh_audit_context():
    """Each test starts with the system's audit context and leaves none behind (a view
    called without the middleware, e.g. through APIRequestFactory, binds an actor)."""
    from apps.core import audit_context

    token = audit_context.bind(audit_context.SYSTEM_CONTEXT)
    yield
    audit_context.unbind(token)


@pytest.fixture
def org(db):
    return OrganizationFactory(name="Acme", slug="acme")


@pytest.fixture
def other_org(db):
    return OrganizationFactory(name="Globex", slug="globex")


def _member(org, role, email):
    return MembershipFactory(organization=org, role=role, user=UserFactory(email=email)).user


@pytest.fixture
def owner(org):
    return _member(org, "owner", "owner@acme.test")


@pytest.fixture
def admin(org):
    return _member(org, "admin", "admin@acme.test")


@pytest.fixture
def reviewer(org):
    return _member(org, "reviewer", "reviewer@acme.test")


@pytest.fixture
def member(org):
    return _member(org, "member", "member@acme.test")


@pytest.fixture
def outsider(other_org):
    """An owner of another organization: must see none of `org`."""
    return _member(other_org, "owner", "owner@globex.test")


@pytest.fixture
def celery_worker(transactional_db):
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
def _browser_tests_allow_sync_orm(request, monkeypatch):
    """Playwright's sync API runs an event loop in the test thread; the test's own
    ORM calls are still plain synchronous code. Only for tests marked `browser`,
    and undone after each, so async-safety stays on for the rest of the suite."""
    if request.node.get_closest_marker("browser"):
        monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(autouse=True)
def _fresh_auth_failure_counters(monkeypatch):
    """Failed-authentication throttles and aggregates live in the shared cache for a
    window: give each test its own, so no test is throttled by another's failures."""
    import uuid

    from apps.workers import auth_failures

    monkeypatch.setattr(auth_failures, "namespace", f"authfail-{uuid.uuid4().hex}")
