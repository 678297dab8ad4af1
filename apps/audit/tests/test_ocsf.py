"""Every OCSF event class Grantry emits, validated against the OCSF 1.5.0 schema.

The schema is OCSF's own export, shipped as test data (data/ocsf-1.5.0/, with its
source and licence); `ocsf-json-schema` turns a class of it into a JSON Schema
(required attributes, types such as `timestamp_t` = epoch milliseconds, enums,
`at_least_one` constraints, no unknown attributes, the profiles the event
declares), which `jsonschema` checks. What JSON Schema cannot say is checked here
from the same export: an enum's sibling (`type` beside `type_id`, `status` beside
`status_id`, …) is that value's caption unless the id is 99 (Other)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from ocsf_json_schema import OcsfJsonSchemaEmbedded

from apps.audit import ocsf
from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from apps.audit.tests.helpers import broker_event
from apps.organizations.models import Organization

SCHEMA = Path(__file__).parent / "data" / "ocsf-1.5.0" / "schema.json"

pytestmark = pytest.mark.django_db


@cache
def _export() -> dict[str, Any]:
    return dict(json.loads(SCHEMA.read_text()))


@cache
def _validator(class_uid: int, profiles: tuple[str, ...]) -> Draft202012Validator:
    schema = OcsfJsonSchemaEmbedded(_export())
    name = schema.lookup_class_name_from_uid(class_uid)
    return Draft202012Validator(schema.get_class_schema(name, list(profiles)))


def _sibling_problems(doc: dict[str, Any], attributes: dict[str, Any], at: str = "") -> list[str]:
    """Enum siblings that are not their id's caption, and the same in nested objects."""
    problems = []
    objects = _export()["objects"]
    for name, value in doc.items():
        spec = attributes.get(name)
        if spec is None:
            continue
        sibling, enum = spec.get("sibling"), spec.get("enum")
        if sibling and enum and sibling in doc and str(value) != "99":
            caption = enum.get(str(value), {}).get("caption")
            if doc[sibling] != caption:
                problems.append(f"{at}{sibling}={doc[sibling]!r}, {name}={value} is {caption!r}")
        object_type = spec.get("object_type")
        if object_type in objects and isinstance(value, dict):
            nested = objects[object_type]["attributes"]
            problems += _sibling_problems(value, nested, f"{at}{name}.")
    return problems


def assert_valid_ocsf(event: AuditEvent) -> dict[str, Any]:
    doc = ocsf.ocsf_dict(event)
    profiles = tuple(sorted(doc["metadata"].get("profiles", [])))
    errors = sorted(
        f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in _validator(doc["class_uid"], profiles).iter_errors(doc)
    )
    assert errors == [], f"{event.action}: {errors}"
    attributes = _export()["classes"][
        OcsfJsonSchemaEmbedded(_export()).lookup_class_name_from_uid(doc["class_uid"])
    ]["attributes"]
    assert _sibling_problems(doc, attributes) == [], event.action
    return doc


def _events(org: Organization) -> list[AuditEvent]:
    """One of each shape the mapping has: every class, every actor type, with and
    without an address, an upstream status, a method."""
    recorded = [
        # API Activity: a brokered call with an answer, a denial, a proxy call, a dry
        # run, an MCP refusal, an approval event, a system event from a Celery task.
        broker_event(org, ip="203.0.113.9"),
        broker_event(org, outcome="denied", decision="denied", upstream_status=None),
        broker_event(
            org,
            action="broker.proxy",
            metadata={"method": "DELETE", "path": "repos/acme/web"},
            upstream_status=204,
            ip="2001:db8::5",
        ),
        broker_event(org, action="broker.check", upstream_status=None, outcome="success"),
        broker_event(org, action="mcp.request", outcome="failure", upstream_status=None),
        audit_record(
            action="approval.requested",
            organization=org,
            actor_type="worker",
            actor_id=7,
            actor_label="triage-bot",
            target_type="approval",
            target_id="apr_x",
            metadata={"approval_id": "apr_x"},
        ),
        audit_record(action="connection.refreshed", organization=org),
        audit_record(
            action="role.changed",
            organization=org,
            actor_type="user",
            actor_id=3,
            actor_label="ada@acme.test",
            ip="198.51.100.4",
        ),
        # Account Change: a person mints, the system revokes, a worker changes.
        audit_record(
            action="token.minted",
            organization=org,
            actor_type="user",
            actor_id=3,
            actor_label="ada@acme.test",
            target_type="workertoken",
            target_id="tok_1",
            target_label="tok_1 of bot",
            ip="198.51.100.4",
        ),
        audit_record(action="token.revoked", organization=org, target_type="workertoken"),
        audit_record(action="worker.disabled", organization=org, target_type="worker"),
        audit_record(action="member.role_changed", organization=org, target_type="user"),
        # Authentication: a login, a logout, an anonymous failure.
        audit_record(
            action="auth.login", organization=org, actor_type="user", actor_id=3, ip="192.0.2.7"
        ),
        audit_record(action="auth.logout", organization=org, actor_type="user", actor_id=3),
        audit_record(
            action="auth.failed",
            organization=org,
            actor_type="anonymous",
            outcome="failure",
            ip="192.0.2.8",
            metadata={"code": "token_invalid"},
        ),
    ]
    return [AuditEvent.objects.get(pk=event.pk) for event in recorded if event is not None]


def test_every_event_class_validates_against_the_ocsf_1_5_0_schema(org: Organization) -> None:
    classes = set()
    for event in _events(org):
        doc = assert_valid_ocsf(event)
        classes.add(doc["class_uid"])
        assert doc["metadata"]["version"] == "1.5.0"
    assert classes == {ocsf.API_ACTIVITY, ocsf.ACCOUNT_CHANGE, ocsf.AUTHENTICATION}


def test_the_shapes_the_schema_check_found_wrong(org: Organization) -> None:
    """Issue 22 item 13, one by one."""
    call, denied = _events(org)[:2]
    doc = ocsf.ocsf_dict(call)
    assert doc["metadata"]["logged_time"] == int(call.created_at.timestamp() * 1000)
    assert "cloud" in doc["metadata"]["profiles"]  # API Activity carries `cloud`
    refused = ocsf.ocsf_dict(denied)
    assert "response" not in refused["api"]  # not `null`
    assert refused["src_endpoint"]  # never `{}`: no client address names Grantry
    assert doc["actor"]["user"]["type_id"] == 99
    assert doc["actor"]["user"]["type"] == "Worker"
