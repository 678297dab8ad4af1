"""Binding a token to a key at mint (management API and dashboard), requiring DPoP on a
worker (audited, shown, editable), and the roll keeping the binding. The proof checks on
every agent surface are apps/broker/tests/test_dpop.py."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.organizations.models import Organization
from apps.workers.models import Worker, WorkerToken
from apps.workers.services import token_mint, token_roll, worker_update
from apps.workers.tests.dpop_proofs import jkt, new_key, proof, public_jwk

pytestmark = pytest.mark.django_db


def api_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def page_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def whoami(raw: str, key: Any = None, settings: Any = None) -> Any:
    if key is None:
        return APIClient().get("/api/v1/whoami", HTTP_AUTHORIZATION=f"Bearer {raw}")
    url = f"{settings.GRANTRY_BASE_URL}/api/v1/whoami"
    return APIClient().get(
        "/api/v1/whoami",
        HTTP_AUTHORIZATION=f"DPoP {raw}",
        HTTP_DPOP=proof(key, "GET", url, raw),
    )


def tokens_url(org: Organization, worker: Worker) -> str:
    return f"/api/v1/orgs/{org.slug}/workers/{worker.pk}/tokens/"


def test_the_mint_api_binds_a_token_to_a_public_jwk(
    org: Organization, admin: User, worker: Worker, settings: Any
) -> None:
    key = new_key()
    response = api_for(admin).post(
        tokens_url(org, worker), {"name": "laptop", "dpop_jwk": public_jwk(key)}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["dpop_jkt"] == jkt(key)
    raw = body["token"]
    assert WorkerToken.objects.get(public_id=body["id"]).dpop_jkt == jkt(key)
    assert whoami(raw).status_code == 401  # the token alone
    assert whoami(raw, key, settings).status_code == 200
    assert whoami(raw, new_key(), settings).status_code == 401
    event = AuditEvent.objects.get(action="token.minted", token_id=body["id"])
    assert event.metadata["dpop_jkt"] == jkt(key)
    listed = api_for(admin).get(tokens_url(org, worker)).json()["results"]
    assert listed[0]["dpop_jkt"] == jkt(key)


def test_the_mint_api_binds_by_thumbprint_too(
    org: Organization, admin: User, worker: Worker, settings: Any
) -> None:
    key = new_key()
    response = api_for(admin).post(
        tokens_url(org, worker), {"name": "ci", "dpop_jkt": jkt(key)}, format="json"
    )
    assert response.status_code == 201, response.content
    assert whoami(response.json()["token"], key, settings).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"dpop_jwk": {"kty": "oct", "k": "c2VjcmV0"}}, "dpop_jwk"),
        ({"dpop_jwk": "not json"}, "dpop_jwk"),
        ({"dpop_jwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}}, "dpop_jwk"),
        ({"dpop_jkt": "short"}, "dpop_jkt"),
        ({"dpop_jkt": "!" * 43}, "dpop_jkt"),
    ],
)
def test_the_mint_api_refuses_what_is_no_public_key(
    org: Organization, admin: User, worker: Worker, body: dict[str, Any], field: str
) -> None:
    response = api_for(admin).post(tokens_url(org, worker), {"name": "x", **body}, format="json")
    assert response.status_code == 400, response.content
    assert field in json.dumps(response.json())
    assert not WorkerToken.objects.filter(worker=worker).exists()


def test_a_private_key_is_refused_and_never_stored(
    org: Organization, admin: User, worker: Worker
) -> None:
    key = new_key()
    private = dict(key.as_dict(private=True))
    response = api_for(admin).post(
        tokens_url(org, worker), {"name": "x", "dpop_jwk": private}, format="json"
    )
    assert response.status_code == 400
    assert private["d"] not in response.content.decode()
    assert not WorkerToken.objects.filter(worker=worker).exists()


def test_requiring_dpop_is_audited_and_a_worker_that_requires_it_gets_no_unbound_token(
    org: Organization, admin: User, worker: Worker
) -> None:
    _, old_raw = token_mint(worker=worker, name="old bearer")
    api = api_for(admin)
    detail = f"/api/v1/orgs/{org.slug}/workers/{worker.pk}/"
    assert api.get(detail).json()["require_dpop"] is False
    changed = api.patch(detail, {"require_dpop": True}, format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json()["require_dpop"] is True
    event = AuditEvent.objects.get(action="worker.dpop_changed")
    assert event.metadata["changes"]["require_dpop"] == {"from": False, "to": True}
    assert event.metadata["unbound_live_tokens"] == 1
    assert event.actor_id == str(admin.pk)
    assert not AuditEvent.objects.filter(action="worker.changed").exists()

    refused = api.post(tokens_url(org, worker), {"name": "bearer"}, format="json")
    assert refused.status_code == 400
    assert "dpop_jkt" in refused.json()["error"]["details"]["fields"]
    assert whoami(old_raw).json()["error"]["code"] == "dpop_required"
    key = new_key()
    bound = api.post(
        tokens_url(org, worker), {"name": "bound", "dpop_jkt": jkt(key)}, format="json"
    )
    assert bound.status_code == 201

    api.patch(detail, {"require_dpop": False}, format="json")
    assert whoami(old_raw).status_code == 200
    assert AuditEvent.objects.filter(action="worker.dpop_changed").count() == 2


def test_a_worker_can_require_dpop_from_the_start(
    org: Organization, admin: User, role: Any
) -> None:
    response = api_for(admin).post(
        f"/api/v1/orgs/{org.slug}/workers/",
        {"name": "strict", "default_role": role.pk, "require_dpop": True},
        format="json",
    )
    assert response.status_code == 201, response.content
    worker = Worker.objects.get(name="strict")
    assert worker.require_dpop is True
    assert AuditEvent.objects.get(action="worker.created").metadata["require_dpop"] is True


def test_the_roll_keeps_the_key(worker: Worker, settings: Any) -> None:
    key = new_key()
    old, _ = token_mint(worker=worker, name="bound", dpop_jkt=jkt(key))
    new, raw = token_roll(token=old)
    assert new.dpop_jkt == jkt(key)
    assert whoami(raw).status_code == 401
    assert whoami(raw, key, settings).status_code == 200


def test_an_unbound_token_of_a_worker_that_requires_dpop_cannot_be_rolled(
    worker: Worker,
) -> None:
    from django.core.exceptions import ValidationError

    old, _ = token_mint(worker=worker, name="bearer")
    worker_update(worker=worker, require_dpop=True)
    with pytest.raises(ValidationError):
        token_roll(token=old)


def test_the_dashboard_shows_edits_and_mints_with_a_key(
    org: Organization, admin: User, worker: Worker, role: Any, settings: Any
) -> None:
    client = page_for(admin)
    base = f"/o/{org.slug}/workers/{worker.pk}"
    assert "Not required" in client.get(f"{base}/").content.decode()
    edited = client.post(
        f"{base}/edit/",
        {
            "name": worker.name,
            "description": "",
            "owner": admin.pk,
            "default_role": role.pk,
            "require_dpop": "on",
        },
    )
    assert edited.status_code == 302
    worker.refresh_from_db()
    assert worker.require_dpop is True
    assert AuditEvent.objects.filter(action="worker.dpop_changed").exists()
    page = client.get(f"{base}/").content.decode()
    assert "Required" in page

    missing = client.post(f"{base}/mint/", {"name": "ci", "expires": "30"})
    assert missing.status_code == 400
    assert "requires DPoP" in missing.content.decode()
    assert not WorkerToken.objects.filter(worker=worker).exists()

    key = new_key()
    minted = client.post(
        f"{base}/mint/", {"name": "ci", "expires": "30", "dpop_key": json.dumps(public_jwk(key))}
    )
    assert minted.status_code == 302, minted.content
    once = client.get(minted["Location"]).content.decode()
    found = re.search(r"gry_[0-9A-Za-z]{49}", once)
    assert found is not None
    raw = found.group(0)
    assert "bound to a key" in once
    assert f"Bearer {raw}" not in once  # no snippet that cannot work
    assert whoami(raw, key, settings).status_code == 200
    assert jkt(key)[:12] in client.get(f"{base}/").content.decode()

    by_thumbprint = client.post(
        f"{base}/mint/", {"name": "ci2", "expires": "30", "dpop_key": jkt(new_key())}
    )
    assert by_thumbprint.status_code == 302
    bad = client.post(f"{base}/mint/", {"name": "ci3", "expires": "30", "dpop_key": "{nope"})
    assert bad.status_code == 400


def test_a_weak_rsa_key_is_refused(org: Organization, admin: User, worker: Worker) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from joserfc.jwk import RSAKey

    weak = RSAKey.import_key(
        rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    )
    response = api_for(admin).post(
        tokens_url(org, worker),
        {"name": "x", "dpop_jwk": dict(weak.as_dict(private=False))},
        format="json",
    )
    assert response.status_code == 400
    assert "2048" in json.dumps(response.json())
