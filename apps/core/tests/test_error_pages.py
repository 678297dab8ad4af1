"""`make run` runs with DEBUG on, yet a 404 or a failing view shows Grantry's own
pages, as production does, not Django's technical pages (which list the URL patterns
and the settings); the traceback still reaches the log."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client, override_settings

from apps.core.tests.test_settings import _manage
from apps.organizations.models import Organization

PRODUCT_PAGES = "apps.core.middleware.ProductErrorPagesMiddleware"


def with_product_pages() -> list[str]:
    middleware = list(settings.MIDDLEWARE)
    after = middleware.index("apps.core.middleware.RequestIdMiddleware")
    middleware.insert(after + 1, PRODUCT_PAGES)
    return middleware


@pytest.mark.django_db
@override_settings(DEBUG=True, MIDDLEWARE=with_product_pages())
def test_debug_404s_are_the_product_page(client: Client, org: Organization, member: User) -> None:
    unrouted = client.get("/no/such/page/")
    assert unrouted.status_code == 404
    body = unrouted.content.decode()
    assert "This page does not exist" in body
    assert "URLconf" not in body  # the technical page's "Using the URLconf defined in …"
    assert unrouted.headers["X-Request-Id"]  # still inside the request-id middleware
    client.force_login(member)
    missing_role = client.get(f"/o/{org.slug}/roles/999999999/")
    assert missing_role.status_code == 404
    assert "This page does not exist" in missing_role.content.decode()
    api = client.get("/api/v1/orgs/acme/workers/not-a-number/")
    assert api.status_code == 404
    assert api.json()["error"]["code"] == "not_found"  # the APIs keep their JSON body


@pytest.mark.django_db
@override_settings(
    DEBUG=True, MIDDLEWARE=with_product_pages(), ROOT_URLCONF="apps.core.tests.urls_raising"
)
def test_debug_500s_are_the_product_page_and_the_traceback_is_logged(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = client.get("/fails/")
    assert response.status_code == 500
    body = response.content.decode()
    assert "Something went wrong" in body
    assert "a bug in a view" not in body  # no traceback on the page
    logged = [r for r in caplog.records if r.name == "django.request"]
    assert logged
    assert logged[0].exc_info is not None
    assert "a bug in a view" in str(logged[0].exc_info[1])


def test_make_runs_settings_install_it_and_it_can_be_turned_off(tmp_path: Path) -> None:
    show = "from django.conf import settings; print(settings.MIDDLEWARE)"
    db = {"DATABASE_URL": "postgres://grantry@db.example.com:5432/grantry"}  # not connected to
    debug = _manage("shell", "-c", show, var_dir=tmp_path, DEBUG="1", **db)
    assert debug.returncode == 0, debug.stderr
    assert PRODUCT_PAGES in debug.stdout
    technical = _manage(
        "shell", "-c", show, var_dir=tmp_path, DEBUG="1", GRANTRY_TECHNICAL_ERROR_PAGES="1", **db
    )
    assert technical.returncode == 0, technical.stderr
    assert PRODUCT_PAGES not in technical.stdout
