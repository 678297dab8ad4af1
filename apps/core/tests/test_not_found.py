"""An API URL that no route matches answers with the standard JSON error body."""

from __future__ import annotations

import pytest
from django.test import Client


@pytest.mark.django_db
def test_unrouted_api_url_is_a_json_404(client: Client) -> None:
    response = client.get("/api/v1/orgs/acme/workers/not-a-number/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.django_db
def test_unrouted_page_is_still_html(client: Client) -> None:
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
