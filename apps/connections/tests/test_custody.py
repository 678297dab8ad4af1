"""Credential placement and the throttled last-used mark."""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any

import pytest

from apps.connections.credentials import auth_for
from apps.connections.custody import NeedsReauth, place_credential
from apps.connections.models import Connection, ConnectionStatus
from apps.organizations.models import Organization
from apps.providers.catalog import Placement
from apps.providers.registry import get_provider


def _sandbox(**changes: Any) -> Any:
    return replace(get_provider("sandbox"), **changes)


def test_each_placement_puts_the_secret_where_the_provider_expects_it() -> None:
    assert place_credential(_sandbox(), "s3").headers == {"Authorization": "Bearer s3"}
    custom = _sandbox(placement=Placement.HEADER, header_name="X-Api-Key", header_prefix="")
    assert place_credential(custom, "s3").headers == {"X-Api-Key": "s3"}
    basic = place_credential(_sandbox(placement=Placement.BASIC), "sk_live")
    assert basic.headers["Authorization"] == "Basic " + base64.b64encode(b"sk_live:").decode()
    zendesk_style = place_credential(
        _sandbox(placement=Placement.BASIC), "tok", {"basic_username": "me@acme.test/token"}
    )
    assert base64.b64decode(zendesk_style.headers["Authorization"][6:]) == b"me@acme.test/token:tok"
    # Twilio: the key is "SID:token", already a user:password pair (a user id cannot hold
    # a colon, RFC 7617 §2): sent as it is, not as "SID:token:".
    twilio_style = place_credential(_sandbox(placement=Placement.BASIC), "AC123:tok")
    assert base64.b64decode(twilio_style.headers["Authorization"][6:]) == b"AC123:tok"
    query = place_credential(_sandbox(placement=Placement.QUERY, header_name="key"), "s3")
    assert (query.headers, query.params) == ({}, {"key": "s3"})
    assert "s3" not in repr(query)


@pytest.mark.django_db
def test_revoked_or_empty_connections_raise_needs_reauth(org: Organization) -> None:
    provider = get_provider("sandbox")
    revoked = Connection.objects.create(
        organization=org,
        provider_key="sandbox",
        name="r",
        auth_type="api_key",
        status=ConnectionStatus.REVOKED,
    )
    with pytest.raises(NeedsReauth):
        auth_for(revoked, provider)
    empty = Connection.objects.create(
        organization=org, provider_key="sandbox", name="e", auth_type="api_key"
    )
    with pytest.raises(NeedsReauth):
        auth_for(empty, provider)
