"""Management API for workers and tokens: roles, tenancy, shapes, audit."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from apps.accounts.services import personal_token_mint
from apps.audit.models import AuditEvent
from apps.organizations.models import Organization
from apps.workers.models import Worker, WorkerToken
from apps.workers.services import token_mint, worker_create
from apps.workers.tests.conftest import make_role

pytestmark = pytest.mark.django_db


def client_for(user: Any) -> Any:
    client = APIClient()
    client.force_login(user)
    return client


def base(org: Organization) -> Any:
    return f"/api/v1/orgs/{org.slug}"


def test_admin_creates_a_worker_and_mints_a_token_shown_once(
    org: Organization, admin: User, role: Any
) -> None:
    api = client_for(admin)
    response = api.post(
        f"{base(org)}/workers/",
        {"name": "ci-bot", "description": "CI", "default_role": role.pk, "owner": admin.pk},
        format="json",
    )
    assert response.status_code == 201, response.content
    worker_id = response.json()["id"]
    assert Worker.objects.get(pk=worker_id).organization == org

    minted = api.post(
        f"{base(org)}/workers/{worker_id}/tokens/", {"expires_in_days": 7}, format="json"
    )
    assert minted.status_code == 201, minted.content
    assert minted["Cache-Control"] == "no-store"
    body = minted.json()
    raw = body["token"]
    assert raw.startswith("gry_")
    assert body["role_name"] == "sandbox-reader"

    # The token works, and no later read shows it again.
    assert APIClient().get("/api/v1/whoami", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200
    for url in (f"{base(org)}/workers/{worker_id}/tokens/", f"{base(org)}/tokens/"):
        listing = api.get(url)
        assert listing.status_code == 200
        assert raw not in listing.content.decode()
        assert "token" not in listing.json()["results"][0]
        assert "digest" not in listing.json()["results"][0]
        assert listing.json()["results"][0]["id"] == body["id"]
    assert AuditEvent.objects.filter(action="token.minted", token_id=body["id"]).exists()


def test_validation_errors_use_the_standard_shape(
    org: Organization, admin: User, role: Any, other_org: Organization
) -> None:
    api = client_for(admin)
    theirs = make_role(other_org, "theirs")
    response = api.post(
        f"{base(org)}/workers/", {"name": "x", "default_role": theirs.pk}, format="json"
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert "default_role" in error["details"]["fields"]
    worker_create(organization=org, name="dup", default_role=role)
    response = api.post(
        f"{base(org)}/workers/", {"name": "dup", "default_role": role.pk}, format="json"
    )
    assert response.status_code == 400
    assert "name" in response.json()["error"]["details"]["fields"]


def test_the_organization_never_comes_from_the_body(
    org: Organization, other_org: Organization, admin: User, role: Any
) -> None:
    api = client_for(admin)
    response = api.post(
        f"{base(org)}/workers/",
        {"name": "bot", "default_role": role.pk, "organization": other_org.pk},
        format="json",
    )
    assert response.status_code == 201
    assert Worker.objects.get(name="bot").organization == org


def test_reviewer_reads_but_cannot_write(
    org: Organization, reviewer: User, worker: Worker, minted: tuple[WorkerToken, str]
) -> None:
    api = client_for(reviewer)
    assert api.get(f"{base(org)}/workers/").status_code == 200
    assert api.get(f"{base(org)}/workers/{worker.pk}/tokens/").status_code == 200
    assert api.get(f"{base(org)}/tokens/").status_code == 200
    token, _ = minted
    for url in (
        f"{base(org)}/workers/",
        f"{base(org)}/workers/{worker.pk}/disable/",
        f"{base(org)}/workers/{worker.pk}/tokens/",
        f"{base(org)}/workers/{worker.pk}/tokens/{token.public_id}/revoke/",
        f"{base(org)}/workers/{worker.pk}/tokens/{token.public_id}/roll/",
        f"{base(org)}/workers/{worker.pk}/revoke-all-tokens/",
        f"{base(org)}/kill-switch/",
    ):
        response = api.post(url, {"confirm": org.slug}, format="json")
        assert response.status_code == 403, url
        assert response.json()["error"]["code"] == "permission_denied"
    assert api.delete(f"{base(org)}/workers/{worker.pk}/").status_code == 403
    assert WorkerToken.objects.get(pk=token.pk).revoked_at is None


@pytest.mark.usefixtures("worker")
def test_plain_member_cannot_even_read(org: Organization, member: User) -> None:
    assert client_for(member).get(f"{base(org)}/workers/").status_code == 403


def test_outsider_gets_404_everywhere(
    org: Organization, outsider: User, worker: Worker, minted: tuple[WorkerToken, str]
) -> None:
    token, _ = minted
    api = client_for(outsider)
    urls = [
        f"{base(org)}/workers/",
        f"{base(org)}/workers/{worker.pk}/",
        f"{base(org)}/workers/{worker.pk}/tokens/",
        f"{base(org)}/workers/{worker.pk}/tokens/{token.public_id}/",
        f"{base(org)}/tokens/",
    ]
    for url in urls:
        assert api.get(url).status_code == 404, url
    assert api.post(f"{base(org)}/kill-switch/", {"confirm": org.slug}).status_code == 404


@pytest.mark.usefixtures("outsider")
def test_another_orgs_worker_is_404_inside_my_org(
    org: Organization, other_org: Organization, admin: User, worker: Worker
) -> None:
    theirs_role = make_role(other_org, "theirs")
    theirs = worker_create(organization=other_org, name="theirs", default_role=theirs_role)
    their_token, _ = token_mint(worker=theirs)
    api = client_for(admin)
    assert api.get(f"{base(org)}/workers/{theirs.pk}/").status_code == 404
    assert api.get(f"{base(org)}/workers/{theirs.pk}/tokens/").status_code == 404
    assert api.post(f"{base(org)}/workers/{theirs.pk}/disable/").status_code == 404
    url = f"{base(org)}/workers/{worker.pk}/tokens/{their_token.public_id}/revoke/"
    assert api.post(url).status_code == 404
    assert WorkerToken.objects.get(pk=their_token.pk).revoked_at is None


def test_revoke_roll_disable_enable_and_kill_switches(
    org: Organization, admin: User, worker: Worker, minted: tuple[WorkerToken, str]
) -> None:
    token, _raw = minted
    api = client_for(admin)
    prefix = f"{base(org)}/workers/{worker.pk}"
    rolled = api.post(f"{prefix}/tokens/{token.public_id}/roll/", {"overlap": "1h"}, format="json")
    assert rolled.status_code == 201, rolled.content
    new_raw = rolled.json()["token"]
    assert rolled.json()["rolled_from"] == token.public_id
    bad = api.post(f"{prefix}/tokens/{token.public_id}/roll/", {"overlap": "2h"}, format="json")
    assert bad.status_code == 400

    revoked = api.post(
        f"{prefix}/tokens/{token.public_id}/revoke/", {"reason": "rotated"}, format="json"
    )
    assert revoked.status_code == 200
    assert revoked.json()["status"] == "revoked"

    assert api.post(f"{prefix}/disable/").json()["status"] == "disabled"
    whoami = APIClient().get("/api/v1/whoami", HTTP_AUTHORIZATION=f"Bearer {new_raw}")
    assert whoami.json()["error"]["code"] == "worker_disabled"
    assert api.post(f"{prefix}/enable/").json()["status"] == "active"

    assert api.post(f"{prefix}/revoke-all-tokens/").json() == {"revoked": 1}
    refused = api.post(f"{base(org)}/kill-switch/", {"confirm": "nope"}, format="json")
    assert refused.status_code == 400
    token_mint(worker=worker)
    assert api.post(f"{base(org)}/kill-switch/", {"confirm": org.slug}, format="json").json() == {
        "revoked": 1
    }
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {
        "token.rolled",
        "token.revoked",
        "worker.disabled",
        "worker.enabled",
        "killswitch.worker",
        "killswitch.org",
    } <= actions


def test_update_and_delete(
    org: Organization, admin: User, worker: Worker, minted: tuple[WorkerToken, str]
) -> None:
    _, raw = minted
    api = client_for(admin)
    response = api.patch(
        f"{base(org)}/workers/{worker.pk}/", {"description": "changed"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["description"] == "changed"
    assert api.delete(f"{base(org)}/workers/{worker.pk}/").status_code == 204
    assert not Worker.objects.filter(pk=worker.pk).exists()
    assert APIClient().get("/api/v1/whoami", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401
    assert AuditEvent.objects.filter(action="worker.deleted", worker_id=worker.pk).exists()


def test_lists_are_paginated(org: Organization, admin: User, worker: Worker) -> None:
    for _ in range(3):
        token_mint(worker=worker)
    api = client_for(admin)
    page = api.get(f"{base(org)}/tokens/?page_size=2").json()
    assert len(page["results"]) == 2
    assert page["next"]
    rest = api.get(page["next"]).json()
    assert len(rest["results"]) == 1


def test_personal_token_drives_the_api_and_is_bound_to_its_org(
    org: Organization, other_org: Organization, admin: User, role: Any
) -> None:
    from tests.factories import MembershipFactory

    MembershipFactory(organization=other_org, user=admin, role="admin")
    _, raw = personal_token_mint(user=admin, organization=org, name="automation")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.get(f"{base(org)}/workers/").status_code == 200
    created = api.post(
        f"{base(org)}/workers/", {"name": "from-ci", "default_role": role.pk}, format="json"
    )
    assert created.status_code == 201  # no CSRF for token auth
    # Same user is admin of other_org too, but the token was minted for org: 404.
    assert api.get(f"{base(other_org)}/workers/").status_code == 404


def test_worker_token_never_authenticates_to_the_management_api(
    org: Organization, minted: tuple[WorkerToken, str]
) -> None:
    _, raw = minted
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    response = api.get(f"{base(org)}/workers/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_invalid"


def test_session_writes_need_csrf(org: Organization, admin: User, role: Any) -> None:
    api = APIClient(enforce_csrf_checks=True)
    api.force_login(admin)
    response = api.post(
        f"{base(org)}/workers/", {"name": "nope", "default_role": role.pk}, format="json"
    )
    assert response.status_code == 403
    assert not Worker.objects.filter(name="nope").exists()


def test_no_credentials_is_401(org: Organization) -> None:
    response = APIClient().get(f"{base(org)}/workers/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_openapi_schema_documents_the_worker_routes_and_token_auth(client: Client) -> None:
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = response.json()
    paths = schema["paths"]
    assert "/api/v1/orgs/{org_slug}/workers/{worker_id}/tokens/" in paths
    assert "/api/v1/orgs/{org_slug}/kill-switch/" in paths
    assert "/api/v1/whoami" in paths
    assert "personalToken" in schema["components"]["securitySchemes"]
    mint = paths["/api/v1/orgs/{org_slug}/workers/{worker_id}/tokens/"]["post"]
    assert "201" in mint["responses"]


def test_no_raw_token_in_any_audit_event_or_log_after_a_full_lifecycle(
    org: Organization, admin: User, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    import json
    import logging

    caplog.set_level(logging.DEBUG)
    api = client_for(admin)
    prefix = f"{base(org)}/workers/{worker.pk}"
    raws = [api.post(f"{prefix}/tokens/", {}, format="json").json()["token"]]
    first_id = api.get(f"{prefix}/tokens/").json()["results"][0]["id"]
    raws.append(
        api.post(f"{prefix}/tokens/{first_id}/roll/", {"overlap": "1h"}, format="json").json()[
            "token"
        ]
    )
    _, personal = personal_token_mint(user=admin, organization=org, name="ops")
    for raw in raws:
        APIClient().get("/api/v1/whoami", HTTP_AUTHORIZATION=f"Bearer {raw}")
        APIClient().get("/api/v1/whoami", HTTP_AUTHORIZATION=f"Bearer {raw[:-1]}x")
    api.post(f"{prefix}/tokens/{first_id}/revoke/", {}, format="json")
    APIClient().get("/api/v1/whoami", HTTP_AUTHORIZATION=f"Bearer {raws[0]}")
    api.post(f"{base(org)}/kill-switch/", {"confirm": org.slug}, format="json")

    secrets = [raw[4:47] for raw in raws] + [personal[5:48]]
    digests = list(WorkerToken.objects.values_list("digest", flat=True))
    events = list(AuditEvent.objects.all())
    assert len(events) >= 8
    for event in events:
        dumped = json.dumps(
            {f.name: str(getattr(event, f.attname)) for f in event._meta.concrete_fields}
        )
        for secret in secrets + digests:
            assert secret not in dumped, event.action
    for secret in secrets:
        assert secret not in caplog.text
