"""The inventory's management API, each step of a key's way out against a local GitHub:
upload (no secret), import checked at the provider, config replaced, new key, confirm
rotated (the provider must refuse the old key), the proposed role, the summary."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from apps.accounts.services import personal_token_mint
from apps.audit.models import AuditEvent
from apps.connections.models import Connection, RetiredCredential
from apps.inventory.models import Finding, FindingState, fingerprint
from apps.inventory.tests.conftest import FakeGitHub, github_key
from apps.organizations.models import Organization
from apps.policies.models import Role

pytestmark = pytest.mark.django_db
BASE = "/api/v1/orgs/acme/inventory/"


def api(user: Any, org: Organization) -> APIClient:
    _token, raw = personal_token_mint(user=user, organization=org, name="cli")
    return APIClient(HTTP_AUTHORIZATION=f"Bearer {raw}")


def place(key: str, *, file: str = "/home/me/.cursor/mcp.json", **extra: Any) -> dict[str, Any]:
    return {
        "fingerprint": fingerprint(key),
        "provider": "github",
        "kind": "github_classic_pat",
        "label": "GitHub personal access token (classic)",
        "file": file,
        "location": "mcpServers.github.env.GITHUB_PERSONAL_ACCESS_TOKEN",
        "line": 7,
        "client": "cursor",
        "name": "GITHUB_PERSONAL_ACCESS_TOKEN",
        "server": "github",
        "program": "npx @modelcontextprotocol/server-github",
        **extra,
    }


def upload(
    client: APIClient, *places: dict[str, Any], host: str = "laptop", files: Any = None
) -> Any:
    body = {
        "host": host,
        "files_scanned": files or sorted({p["file"] for p in places}),
        "findings": list(places),
    }
    response = client.post(f"{BASE}scans/", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_the_cli_and_the_server_fingerprint_alike() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "cli"))
    from grantry_cli.detect import fingerprint as cli_fingerprint

    key = github_key()
    assert cli_fingerprint(key) == fingerprint(key)
    assert fingerprint(key) != "fp_" + hashlib.sha256(key.encode()).hexdigest()[:24]


def test_upload_then_list_by_host_provider_state_and_file(org: Organization, admin: User) -> None:
    client = api(admin, org)
    one, two = github_key(), github_key()
    answer = upload(
        client,
        place(one),
        place(one, file="/srv/app/.env", location="line 3"),
        place(two, check={"status": "live", "scopes": ["read:user"], "note": ""}),
    )
    assert (answer["findings_new"], answer["findings_seen"]) == (2, 0)
    listed = client.get(f"{BASE}findings/").json()["results"]
    assert {f["fingerprint"] for f in listed} == {fingerprint(one), fingerprint(two)}
    assert client.get(f"{BASE}findings/?file=/srv/app").json()["results"][0][
        "fingerprint"
    ] == fingerprint(one)
    assert client.get(f"{BASE}findings/?scope=read:user").json()["results"][0]["scopes"] == [
        "read:user"
    ]
    assert (
        len(
            client.get(f"{BASE}findings/?host=laptop&provider=github&state=found").json()["results"]
        )
        == 2
    )
    assert client.get(f"{BASE}findings/?host=elsewhere").json()["results"] == []
    assert client.get(f"{BASE}findings/?state=bogus").status_code == 400
    # A second scan of the same files without the key: its places are gone.
    again = upload(client, place(two), files=["/home/me/.cursor/mcp.json", "/srv/app/.env"])
    assert again["locations_gone"] == 2
    event = AuditEvent.objects.filter(action="inventory.scan_uploaded").order_by("id").last()
    assert event.metadata["places_gone"] == 2


def test_import_is_checked_at_the_provider_and_bound_to_the_fingerprint(
    org: Organization, admin: User, github: FakeGitHub
) -> None:
    client = api(admin, org)
    key = github_key()
    finding_id = upload(client, place(key))["findings"][0]["id"]
    url = f"{BASE}findings/{finding_id}/import/"
    wrong = client.post(url, {"secret": github_key(), "connection_name": "gh"}, format="json")
    assert wrong.json()["error"]["details"]["fields"]["secret"] == [
        "This is not the key of this finding (the fingerprints differ)."
    ]
    dead = client.post(url, {"secret": key, "connection_name": "gh"}, format="json")
    assert dead.status_code == 400
    assert (
        "rejected the credential (HTTP 401)"
        in dead.json()["error"]["details"]["fields"]["secret"][0]
    )
    assert not Connection.objects.exists()
    github.accepted.add(key)
    done = client.post(url, {"secret": key, "connection_name": "gh"}, format="json")
    assert done.status_code == 201, done.content
    assert done.json()["state"] == "imported"
    assert done.json()["connection_name"] == "gh"
    assert key not in done.content.decode()
    assert Connection.objects.get(name="gh").api_key == key
    assert AuditEvent.objects.filter(action="inventory.finding_imported").count() == 1
    again = client.post(url, {"secret": key, "connection_name": "gh2"}, format="json")
    assert again.status_code == 409


def _imported(client: APIClient, github: FakeGitHub, key: str) -> str:
    github.accepted.add(key)
    finding_id = upload(client, place(key))["findings"][0]["id"]
    response = client.post(
        f"{BASE}findings/{finding_id}/import/",
        {"secret": key, "connection_name": "gh"},
        format="json",
    )
    assert response.status_code == 201, response.content
    return str(finding_id)


def test_the_way_out_ends_when_the_provider_refuses_the_old_key(
    org: Organization, admin: User, github: FakeGitHub
) -> None:
    client = api(admin, org)
    old, new = github_key(), github_key()
    finding_id = _imported(client, github, old)
    detail = f"{BASE}findings/{finding_id}/"
    # Rewritten: no place holds it any more.
    replaced = client.post(
        f"{detail}config-replaced/",
        {"host": "laptop", "file": "/home/me/.cursor/mcp.json"},
        format="json",
    )
    assert replaced.json()["state"] == "config_replaced"
    # Confirming before the connection has a new key would break it: refused.
    early = client.post(f"{detail}confirm-rotated/")
    assert early.status_code == 409
    assert "still uses the old key" in early.json()["error"]["message"]
    github.accepted.add(new)
    assert client.post(f"{detail}new-key/", {"api_key": new}, format="json").status_code == 200
    connection = Connection.objects.get(name="gh")
    assert connection.api_key == new
    [retired] = RetiredCredential.objects.all()
    assert retired.secret == old
    # The provider still takes the old key: recorded, not moved.
    live = client.post(f"{detail}confirm-rotated/")
    assert live.status_code == 409
    assert live.json()["error"]["code"] == "still_live"
    assert AuditEvent.objects.filter(action="inventory.rotation_unconfirmed").count() == 1
    github.accepted.discard(old)  # revoked at the provider
    done = client.post(f"{detail}confirm-rotated/")
    assert done.status_code == 200, done.content
    assert done.json()["state"] == "confirmed_unused"
    retired.refresh_from_db()
    assert (retired.secret, retired.purged_at is not None) == ("", True)
    assert AuditEvent.objects.filter(action="connection.retired_key_purged").count() == 1
    assert AuditEvent.objects.filter(action="inventory.finding_confirmed_unused").count() == 1
    summary = client.get(f"{BASE}summary/").json()
    assert (summary["keys"], summary["live"], summary["done"]) == (1, 0, 1)


def test_a_rotated_key_still_in_a_file_waits_for_a_scan(
    org: Organization, admin: User, github: FakeGitHub
) -> None:
    client = api(admin, org)
    old, new = github_key(), github_key()
    finding_id = _imported(client, github, old)
    github.accepted.add(new)
    client.post(f"{BASE}findings/{finding_id}/new-key/", {"api_key": new}, format="json")
    github.accepted.discard(old)
    rotated = client.post(f"{BASE}findings/{finding_id}/confirm-rotated/").json()
    assert rotated["state"] == "rotated"
    upload(client, files=["/home/me/.cursor/mcp.json"])
    finding = Finding.objects.get(public_id=finding_id)
    assert finding.state == FindingState.CONFIRMED_UNUSED


def test_a_proposed_role_reads_freely_and_writes_behind_approval(
    org: Organization, admin: User
) -> None:
    client = api(admin, org)
    narrow = github_key()
    answer = upload(
        client,
        place(github_key()),
        place(narrow, check={"status": "live", "scopes": ["read:user"], "note": ""}),
    )
    wide, small = (
        f["id"]
        for f in sorted(answer["findings"], key=lambda f: f["fingerprint"] == fingerprint(narrow))
    )
    draft = client.get(f"{BASE}findings/{wide}/role-proposal/").json()
    by_action = {r["action_pattern"]: r for r in draft["rules"]}
    assert "approval" not in by_action["github.list_repos"]
    assert by_action["github.create_issue"]["approval"] == "required"
    only = client.get(f"{BASE}findings/{small}/role-proposal/").json()
    assert [r["action_pattern"] for r in only["rules"]] == ["github.get_authenticated_user"]
    draft["name"] = "github-agent"
    draft["rules"] = draft["rules"][:3]
    saved = client.post(f"{BASE}findings/{wide}/role-proposal/", draft, format="json")
    assert saved.status_code == 201, saved.content
    assert Role.objects.get(name="github-agent").rules.count() == 3
    assert Finding.objects.get(public_id=wide).role.name == "github-agent"
    bad = client.post(
        f"{BASE}findings/{wide}/role-proposal/",
        {"name": "x", "rules": [{"kind": "action", "provider_key": "nope"}]},
        format="json",
    )
    assert bad.status_code == 400


def test_reviewers_read_and_do_not_write(org: Organization, reviewer: User) -> None:
    client = api(reviewer, org)
    assert client.get(f"{BASE}summary/").status_code == 200
    response = client.post(
        f"{BASE}scans/", {"host": "h", "files_scanned": [], "findings": []}, format="json"
    )
    assert response.status_code == 403


def test_an_upload_is_checked_field_by_field(org: Organization, admin: User) -> None:
    client = api(admin, org)
    bad = place(github_key(), fingerprint="ghp_not-a-fingerprint")
    response = client.post(
        f"{BASE}scans/", {"host": "h", "files_scanned": [], "findings": [bad]}, format="json"
    )
    assert response.status_code == 400
    assert "fingerprint" in str(response.json()["error"]["details"]["fields"]["findings"])
    assert not Finding.objects.exists()
    nul = place(github_key(), file="/a\x00b")
    response = client.post(
        f"{BASE}scans/", {"host": "h", "files_scanned": [], "findings": [nul]}, format="json"
    )
    assert response.status_code == 400


def test_an_upload_larger_than_the_server_reads_is_413_not_500(
    org: Organization, admin: User
) -> None:
    """Found by schemathesis: a body past DATA_UPLOAD_MAX_MEMORY_SIZE raised
    RequestDataTooBig inside the view, a 500."""
    client = api(admin, org)
    body = {"host": "h", "files_scanned": ["/x" * 500] * 4000, "findings": []}
    response = client.post(f"{BASE}scans/", body, format="json")
    assert response.status_code == 413, response.status_code
    assert response.json()["error"]["code"] == "body_too_large"
    assert not Finding.objects.exists()


def test_disconnecting_destroys_an_old_key_held_for_its_check(
    org: Organization, admin: User, github: FakeGitHub
) -> None:
    from apps.connections.services import connection_disconnect

    client = api(admin, org)
    old, new = github_key(), github_key()
    finding_id = _imported(client, github, old)
    github.accepted.add(new)
    client.post(f"{BASE}findings/{finding_id}/new-key/", {"api_key": new}, format="json")
    connection = Connection.objects.get(name="gh")
    connection_disconnect(connection_id=connection.pk, organization=org)
    retired = RetiredCredential.objects.get()
    assert (retired.secret, retired.purged_at is not None) == ("", True)
    answer = client.post(f"{BASE}findings/{finding_id}/confirm-rotated/")
    assert answer.status_code == 409
    assert "destroyed the old key" in answer.json()["error"]["message"]


def test_a_line_number_beyond_the_column_is_a_clear_400_and_nothing_is_written(
    org: Organization, admin: User
) -> None:
    """Found by the schema fuzz in CI: a line of 2**31 made the insert fail (500)."""
    client = api(admin, org)
    key = github_key()
    body = {"host": "h", "files_scanned": ["/srv/.env"], "findings": [place(key, line=2**31)]}
    response = client.post(f"{BASE}scans/", body, format="json")
    assert response.status_code == 400, response.content
    assert "line" in json.dumps(response.json())
    assert client.get(f"{BASE}findings/").json()["results"] == []
    assert upload(client, place(key, line=2**31 - 1))["findings_new"] == 1
