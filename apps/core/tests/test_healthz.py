from __future__ import annotations

import pytest
from django.test import Client, override_settings


@pytest.mark.django_db
def test_healthz_reports_database_and_broker(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True
    assert body["broker"]["ok"] is True
    assert response["X-Request-Id"]


@pytest.mark.django_db
def test_healthz_reports_the_age_of_the_last_scheduler_heartbeat(client: Client) -> None:
    from apps.core.tasks import heartbeat

    assert client.get("/healthz").json()["scheduler"]["last_heartbeat_age_seconds"] is None
    heartbeat()
    age = client.get("/healthz").json()["scheduler"]["last_heartbeat_age_seconds"]
    assert age is not None
    assert 0 <= age < 5


@pytest.mark.django_db
def test_healthz_is_503_when_the_broker_is_down(client: Client) -> None:
    from grantry.celery import app

    original = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    try:
        with override_settings():
            response = client.get("/healthz")
    finally:
        app.conf.broker_url = original
    assert response.status_code == 503
    assert response.json()["broker"]["ok"] is False


def test_the_request_id_is_always_the_servers_own(client: Client) -> None:
    first = client.get("/healthz?checks=0", HTTP_X_REQUEST_ID="abc12345-trace")
    second = client.get("/healthz?checks=0", HTTP_X_REQUEST_ID="abc12345-trace")
    assert first["X-Request-Id"] != "abc12345-trace"
    assert first["X-Request-Id"] != second["X-Request-Id"]
    assert len(first["X-Request-Id"]) == 32
    bad = client.get("/healthz?checks=0", HTTP_X_REQUEST_ID="<script>")
    assert bad["X-Request-Id"] != "<script>"
    assert len(bad["X-Request-Id"]) == 32
