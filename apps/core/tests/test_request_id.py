"""The server always chooses the request id; a client's X-Request-Id is kept apart."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.core.audit_context import CLIENT_REQUEST_ID_MAX, sanitize_client_request_id

pytestmark = pytest.mark.django_db


@pytest.mark.usefixtures("org")
def test_two_clients_sending_the_same_id_get_distinct_audit_request_ids() -> None:
    ids = []
    for _ in range(2):
        response = APIClient().get(
            "/api/v1/whoami",
            HTTP_AUTHORIZATION="Bearer gry_" + "B" * 49,
            HTTP_X_REQUEST_ID="victim-request-0001",
        )
        assert response.status_code == 401
        assert response["X-Request-Id"] != "victim-request-0001"
        assert response.json()["error"]["request_id"] == response["X-Request-Id"]
        ids.append(response["X-Request-Id"])
    assert ids[0] != ids[1]
    assert not AuditEvent.objects.filter(request_id="victim-request-0001").exists()
    failed = AuditEvent.objects.get(request_id=ids[0])
    assert failed.action == "auth.failed"
    assert failed.metadata["client_request_id"] == "victim-request-0001"


def test_client_request_id_is_sanitised_and_capped() -> None:
    assert sanitize_client_request_id("trace-42") == "trace-42"
    assert sanitize_client_request_id("a\\nb<script>\\x00c") == "anbscriptx00c"
    assert sanitize_client_request_id("é\r\n\t ok") == "ok"
    assert len(sanitize_client_request_id("x" * 10_000)) == CLIENT_REQUEST_ID_MAX
