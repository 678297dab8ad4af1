"""Database timeouts: short for web requests, long for Celery and management commands.

With the audit table locked by another transaction, a management write gives up
after the lock timeout and answers 503 `audit_unavailable` instead of waiting."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from rest_framework.test import APIClient

from apps.organizations.models import Organization
from apps.workers.models import Worker
from apps.workers.tests.conftest import make_role

ROOT = Path(__file__).resolve().parents[3]


def _show(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SHOW {name}")
        return cursor.fetchone()[0]


def _database_url() -> str:
    db = connection.settings_dict
    host, port = db.get("HOST") or "127.0.0.1", db.get("PORT") or 5432
    return f"postgres://{db.get('USER') or 'postgres'}@{host}:{port}/{db['NAME']}"


SHOW_TIMEOUTS = (
    "from django.db import connection\n"
    "c = connection.cursor()\n"
    "c.execute('SHOW statement_timeout'); s = c.fetchone()[0]\n"
    "c.execute('SHOW lock_timeout'); print(s, c.fetchone()[0])\n"
)


def _run(argv: list[str], **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DB_")}
    result = subprocess.run(  # fixed argv
        argv,
        cwd=ROOT,
        env={
            **clean,
            "DJANGO_SETTINGS_MODULE": "grantry.settings_test",
            "DATABASE_URL": _database_url(),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.django_db
def test_web_connections_have_short_timeouts() -> None:
    assert _show("lock_timeout") == f"{settings.DB_LOCK_TIMEOUT_MS // 1000}s"
    # The suite itself runs without a statement timeout (settings_test.py); the
    # production defaults, as a web process gets them:
    script = "import django; django.setup()\n" + SHOW_TIMEOUTS
    production = {
        "DJANGO_SETTINGS_MODULE": "grantry.settings",
        "SECRET_KEY": "test-only",
        "GRANTRY_ENCRYPTION_KEY": "test-only",
    }
    assert _run([sys.executable, "-c", script], **production) == "5s 3s"


@pytest.mark.django_db
def test_management_commands_get_the_background_timeouts() -> None:
    out = _run(
        [sys.executable, "manage.py", "shell", "-c", SHOW_TIMEOUTS],
        DB_BACKGROUND_LOCK_TIMEOUT_MS="61000",
    )
    assert out == "0 61s"


@pytest.mark.django_db
def test_a_celery_worker_switches_to_the_background_timeouts() -> None:
    script = (
        "import django; django.setup()\n"
        "from django.db import connection\n"
        "connection.ensure_connection()\n"
        "from celery import signals\n"
        "from grantry.celery import app\n"
        "signals.celeryd_init.send(sender='w@host', instance=None, conf=app.conf, options={})\n"
        + SHOW_TIMEOUTS
    )
    out = _run([sys.executable, "-c", script], DB_BACKGROUND_STATEMENT_TIMEOUT_MS="120000")
    assert out == "2min 1min"


@pytest.mark.django_db(transaction=True)
def test_a_locked_audit_table_answers_503_within_the_lock_timeout(
    org: Organization, admin: User
) -> None:
    role = make_role(org, "reader")
    locked, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with psycopg.connect(_database_url()) as other:
            other.execute("LOCK TABLE audit_auditevent IN EXCLUSIVE MODE")
            locked.set()
            # Held until the request has answered (or long after any sane lock timeout).
            release.wait(timeout=60)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        assert locked.wait(timeout=30)
        api = APIClient()
        api.force_login(admin)
        response = api.post(
            f"/api/v1/orgs/{org.slug}/workers/",
            {"name": "ci-bot", "default_role": role.pk},
            format="json",
        )
    finally:
        release.set()
        holder.join(timeout=60)
    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "audit_unavailable"
    assert not Worker.objects.filter(name="ci-bot").exists()


@pytest.mark.usefixtures("celery_worker")
def test_an_embedded_celery_worker_leaves_this_process_alone() -> None:
    """Only `celery worker` switches to the background timeouts, never a worker running
    inside another process (the test suite's own)."""
    assert _show("lock_timeout") == f"{settings.DB_LOCK_TIMEOUT_MS // 1000}s"


@pytest.mark.django_db(transaction=True)
def test_a_read_behind_a_locked_table_answers_503_not_500(org: Organization, admin: User) -> None:
    make_role(org, "reader")
    locked, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with psycopg.connect(_database_url()) as other:
            other.execute("LOCK TABLE workers_worker IN ACCESS EXCLUSIVE MODE")
            locked.set()
            release.wait(timeout=60)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        assert locked.wait(timeout=30)
        api = APIClient()
        api.force_login(admin)
        response = api.get(f"/api/v1/orgs/{org.slug}/workers/")
        page = api.get(f"/o/{org.slug}/workers/")
    finally:
        release.set()
        holder.join(timeout=60)
    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "database_timeout"
    assert page.status_code == 503
    assert "database_timeout" in page.content.decode()
