"""Shared pytest fixtures for the whole suite (apps/*/tests and tests/)."""

from __future__ import annotations

import os
from asyncio import AbstractEventLoop, events
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import User
from pytest_django.live_server_helper import LiveServer

from apps.organizations.models import Organization
from tests.chromium import CHROMIUM, CHROMIUM_ARGS, session_cookie
from tests.factories import MembershipFactory, OrganizationFactory, UserFactory


def pytest_report_header() -> list[str]:
    from django.conf import settings

    return [settings.BACKENDS.describe()]


# `make test` runs the suite in two passes: everything else on two pytest-xdist workers,
# then these modules alone, one test at a time. They measure time or race many threads
# and processes (revocation deadlines, send windows, quotas over two nodes, a dead web
# worker replaced under load): a second worker's load beside them would test the machine,
# not Grantry. The list: the modules that failed in a whole-suite `-n 2` run at load 7 (or
# under load in an engineer's run), plus the ones that stop services or count connections.
SERIAL_MODULES = frozenset(
    {
        "apps/approvals/tests/test_long_poll_bounds.py",
        "apps/broker/tests/test_connections_while_waiting.py",
        "apps/broker/tests/test_mcp_gateway.py",
        "apps/broker/tests/test_mcp_gateway_hostile.py",
        "apps/broker/tests/test_mcp_gateway_refresh.py",
        "apps/broker/tests/test_revocation_exact.py",
        "apps/core/tests/test_egress_send_window.py",
        "apps/organizations/tests/test_concurrency.py",
        "tests/test_cluster.py",
        "tests/test_outages.py",
        "tests/test_revocation_fence.py",
        "tests/test_run_dev.py",
        "tests/test_scheduler_lock.py",
    }
)


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    root = config.rootpath
    for item in items:
        if item.path.relative_to(root).as_posix() in SERIAL_MODULES:
            item.add_marker(pytest.mark.serial)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from django.conf import settings

    terminalreporter.write_line(settings.BACKENDS.describe())


@pytest.fixture(scope="session", autouse=True)
def _urlconf_imported_with_the_test_settings() -> None:
    """grantry.urls mounts the Sandbox if GRANTRY_SANDBOX_ENABLED is on when it is first
    imported. Import it before any test overrides that setting, so the routes do not
    depend on which test a process (or an xdist worker) happens to run first."""
    import importlib

    from django.conf import settings

    importlib.import_module(settings.ROOT_URLCONF)


@pytest.fixture(autouse=True)
def _fresh_audit_context() -> Iterator[None]:
    """Each test starts with the system's audit context and leaves none behind (a view
    called without the middleware, e.g. through APIRequestFactory, binds an actor)."""
    from apps.core import audit_context

    token = audit_context.bind(audit_context.SYSTEM_CONTEXT)
    yield
    audit_context.unbind(token)
    assert audit_context.current() is audit_context.SYSTEM_CONTEXT


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


@dataclass(frozen=True)
class _Chromium:
    browser: Any  # playwright.sync_api.Browser
    loop: AbstractEventLoop  # the loop Playwright's sync API runs in this thread


@pytest.fixture(scope="session")
def chromium_session() -> Iterator[Any]:
    """Playwright and one headless Chromium for the whole run (per xdist worker),
    started by the first test that asks for `browser`. Tests use `browser`, never this.

    Playwright's sync API marks its event loop as running in this thread after every
    call. Between browser tests the mark is taken off again, so the rest of the suite
    runs as plain synchronous code (Django's async-safety checks stay on)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail("Chromium is missing: run `make browser`.")
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    chromium = playwright.chromium.launch(
        executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
    )
    session = _Chromium(browser=chromium, loop=events.get_running_loop())
    events._set_running_loop(None)
    yield session
    events._set_running_loop(session.loop)
    chromium.close()
    playwright.stop()


@pytest.fixture
def browser(
    chromium_session: Any, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """The session's Chromium, for one test marked `browser`. Every context the test
    opens (`browser.new_context()`, `browser.new_page()`) is closed after it.

    While Playwright's loop is marked as running, Django keeps its connections apart
    from the thread's plain ones and refuses sync ORM calls; the test's own ORM calls
    are still synchronous, so they are allowed for this test only, and the connections
    they opened are closed before the mark is taken off."""
    if request.node.get_closest_marker("browser") is None:
        pytest.fail("A test that drives Chromium is marked `browser`.")
    from django.db import connections

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    events._set_running_loop(chromium_session.loop)
    try:
        yield chromium_session.browser
    finally:
        try:
            for context in chromium_session.browser.contexts:
                context.close()
        finally:
            connections.close_all()
            events._set_running_loop(None)


@pytest.fixture
def open_as(browser: Any, live_server: LiveServer) -> Any:
    """`open_as(user, width=1280)` → a page of its own browser context, logged in as
    `user` on the live server."""
    from django.conf import settings

    def open_page(user: Any, width: int = 1280) -> Any:
        context = browser.new_context(viewport={"width": width, "height": 900})
        context.add_cookies(
            [
                {
                    "name": settings.SESSION_COOKIE_NAME,
                    "value": session_cookie(user),
                    "url": live_server.url,
                }
            ]
        )
        return context.new_page()

    return open_page


class ManualClock:
    """A wall clock that stands still until the test moves it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def ratelimit_clock(monkeypatch: pytest.MonkeyPatch) -> ManualClock:
    """The clock of the rate limits and quotas, standing 10 s into the current UTC day
    (so 10 s into a minute and an hour too): a test's calls share one window, whatever
    the real time, until the test moves the clock."""
    import time

    from apps.policies import ratelimit

    clock = ManualClock(time.time() // 86400 * 86400 + 10)
    monkeypatch.setattr(ratelimit, "clock", clock)
    return clock


@pytest.fixture(autouse=True)
def _fresh_auth_failure_counters(monkeypatch: pytest.MonkeyPatch) -> None:
    """Failed-authentication throttles and aggregates live in the shared cache for a
    window: give each test its own, so no test is throttled by another's failures."""
    import uuid

    from apps.accounts import auth_failures

    monkeypatch.setattr(auth_failures, "namespace", f"authfail-{uuid.uuid4().hex}")
