"""Django admin screens never show a token digest or raw value."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from apps.accounts.services import personal_token_mint
from apps.organizations.models import Organization
from apps.workers.models import WorkerToken
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser_client() -> Client:
    user = UserFactory(email="root@example.test", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(user)
    return client


def test_token_admin_pages_show_metadata_but_no_secret(
    superuser_client: Client, minted: tuple[WorkerToken, str], org: Organization, admin: User
) -> None:
    token, raw = minted
    personal, personal_raw = personal_token_mint(user=admin, organization=org, name="ops")
    pages = [
        "/admin/workers/workertoken/",
        f"/admin/workers/workertoken/{token.pk}/change/",
        f"/admin/workers/worker/{token.worker_id}/change/",
        "/admin/accounts/personalapitoken/",
        f"/admin/accounts/personalapitoken/{personal.pk}/change/",
    ]
    for url in pages:
        response = superuser_client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        for secret in (raw, token.digest, personal_raw, personal.digest):
            assert secret not in html, url
    assert token.public_id in superuser_client.get(pages[1]).content.decode()


def test_admin_revoke_action_goes_through_the_service(
    superuser_client: Client, minted: tuple[WorkerToken, str]
) -> None:
    from apps.audit.models import AuditEvent

    token, _ = minted
    response = superuser_client.post(
        "/admin/workers/workertoken/",
        {"action": "revoke_tokens", "_selected_action": [token.pk]},
    )
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert AuditEvent.objects.filter(action="token.revoked", token_id=token.public_id).exists()
