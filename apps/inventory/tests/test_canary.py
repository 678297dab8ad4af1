"""A canary key taken through every inventory path (upload, import, a refused import, a
new key, a refused and a successful confirm) appears in no page, API answer, error
message, model repr, audit event or log line; and hostile upload bodies never get a
server error or leave half of an upload behind."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from apps.accounts.services import personal_token_mint
from apps.audit.models import AuditEvent
from apps.connections.models import Connection, RetiredCredential
from apps.inventory.models import Finding, FindingLocation
from apps.inventory.tests.conftest import FakeGitHub
from apps.inventory.tests.test_api import place
from apps.organizations.models import Organization

CANARY = "CANARY7d1e0fDoNotLeak"
OLD = "ghp_" + CANARY + "k3Jd9QwLm2Xz8Rt"
NEW = "ghp_" + CANARY + "Yp5vBn1Hc4Pg7Fa"
BASE = "/api/v1/orgs/acme/inventory/"


@pytest.mark.django_db
def test_the_canary_appears_nowhere(
    org: Organization, admin: User, github: FakeGitHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _token, raw = personal_token_mint(user=admin, organization=org, name="cli")
    api = APIClient(HTTP_AUTHORIZATION=f"Bearer {raw}")
    page = Client()
    page.force_login(admin)
    seen: list[str] = []

    def keep(response: Any) -> Any:
        assert response.status_code < 500, response.content
        seen.append(f"{response.status_code} {dict(response.headers)}\n{response.content.decode()}")
        return response

    keep(
        api.post(
            f"{BASE}scans/",
            {"host": "laptop", "files_scanned": ["/f"], "findings": [place(OLD, file="/f")]},
            format="json",
        )
    )
    finding = Finding.objects.get()
    url = f"{BASE}findings/{finding.public_id}/"
    body = {"secret": OLD, "connection_name": "gh"}
    keep(api.post(f"{url}import/", body, format="json"))  # refused: the provider does not know it
    github.accepted.add(OLD)
    keep(api.post(f"{url}import/", {**body, "secret": OLD + "x"}, format="json"))  # wrong key
    keep(api.post(f"{url}import/", body, format="json"))
    keep(api.post(f"{url}new-key/", {"api_key": NEW}, format="json"))  # refused: unknown
    keep(api.post(f"{url}new-key/", {"api_key": OLD}, format="json"))  # the same key
    github.accepted.add(NEW)
    keep(api.post(f"{url}new-key/", {"api_key": NEW}, format="json"))
    keep(api.post(f"{url}confirm-rotated/"))  # still live
    for path in (
        url,
        f"{BASE}findings/",
        f"{BASE}summary/",
        f"{url}role-proposal/",
        "/api/v1/orgs/acme/connections/",
        "/api/v1/orgs/acme/audit/events/",
    ):
        keep(api.get(path))
    for path in (
        "/o/acme/inventory/",
        f"/o/acme/inventory/{finding.public_id}/",
        f"/o/acme/inventory/{finding.public_id}/role/",
        "/o/acme/connections/",
    ):
        keep(page.get(path))
    keep(
        page.post(
            f"/o/acme/inventory/{finding.public_id}/", {"step": "confirm_rotated"}, follow=True
        )
    )
    github.accepted.discard(OLD)
    done = keep(
        page.post(
            f"/o/acme/inventory/{finding.public_id}/", {"step": "confirm_rotated"}, follow=True
        )
    )
    retired = RetiredCredential.objects.get()
    seen += [
        repr(finding),
        str(finding),
        repr(retired),
        str(retired),
        *(repr(x) + str(x) for x in FindingLocation.objects.all()),
    ]
    seen += [repr(e.__dict__) for e in AuditEvent.objects.all()]
    seen += [r.getMessage() + str(r.__dict__) for r in caplog.records]
    everything = "\n".join(seen)
    assert len(seen) > 25
    assert CANARY not in everything
    # The secrets were really there (so their absence above means something).
    assert Connection.objects.get(name="gh").api_key == NEW
    assert retired.secret == ""
    assert retired.purged_at is not None
    assert "Old key rotated" in done.content.decode()  # /f still holds it: not yet unused


hostile_text = st.one_of(
    st.text(max_size=50),
    st.sampled_from(["\ud800", "a\x00b", "x" * 5000, "fp_" + "0" * 24, "ghp_" + "A" * 36]),
)
hostile_value: Any = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        hostile_text,
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(hostile_text, inner, max_size=4)
    ),
    max_leaves=30,
)


def _place_like(draw: st.DrawFn) -> Any:
    item = place("ghp_" + "B" * 36)
    key = draw(st.sampled_from([*item, "check"]))
    item[key] = draw(hostile_value)
    return item


@st.composite
def uploads(draw: st.DrawFn) -> Any:
    body: Any = {"host": "laptop", "files_scanned": ["/f"], "findings": [_place_like(draw)]}
    if draw(st.booleans()):
        body[draw(st.sampled_from(["host", "files_scanned", "findings"]))] = draw(hostile_value)
    return body


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=uploads())
def test_hostile_uploads_get_a_clear_answer_and_leave_nothing_half_written(
    body: Any, org: Organization, admin: User
) -> None:
    _token, raw = personal_token_mint(user=admin, organization=org, name="h")
    client = APIClient(HTTP_AUTHORIZATION=f"Bearer {raw}")
    before = (Finding.objects.count(), FindingLocation.objects.count())
    response = client.post(
        f"{BASE}scans/", json.dumps(body, allow_nan=False), content_type="application/json"
    )
    assert response.status_code in (201, 400), response.content
    if response.status_code == 400:
        # The serializer's field errors, or the JSON gate's (NUL, lone surrogates).
        assert response.json()["error"]["code"] in ("invalid_input", "parse_error")
        assert (Finding.objects.count(), FindingLocation.objects.count()) == before
    else:
        # Whatever was accepted was stored whole: the answer names exactly the new rows.
        answer = response.json()
        assert Finding.objects.count() == before[0] + answer["findings_new"]
        for item in answer["findings"]:
            assert Finding.objects.filter(
                public_id=item["id"], fingerprint=item["fingerprint"]
            ).exists()
