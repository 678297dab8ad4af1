"""The one list of audit fields: the model declares them, everything else reads them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import models
from django.test.utils import isolate_apps

from apps.audit import chain, exports, fields, ocsf, offline, proof, verify, writer
from apps.audit.apps import check_audit_fields
from apps.audit.models import AuditEvent
from apps.organizations.models import Organization
from apps.review.api import AuditEventSerializer

DECLARED = tuple(field.attname for field in AuditEvent._meta.concrete_fields)

SAMPLES: dict[str, tuple[Any, Any]] = {
    "int": (7, 8),
    "text": ("a", "b"),
    "json": ({"k": [1, "two"]}, {"k": [1, "three"]}),
    "ip": ("10.0.0.1", "10.0.0.2"),
    "time": (
        datetime(2026, 1, 2, 3, 4, 5, 6789, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, 6790, tzinfo=UTC),
    ),
}


def sample(name: str, second: bool = False) -> Any:
    return SAMPLES[fields.BY_NAME[name].kind][second]


def append_statement() -> str:
    return writer._statement(skip_locked=True, condition="TRUE")


def test_every_reader_takes_the_models_list() -> None:
    hashed = tuple(name for name in DECLARED if name not in AuditEvent.UNHASHED_FIELDS)
    exported = DECLARED
    assert fields.HASHED == chain.HASHED_FIELDS == hashed
    assert exported == exports.COLUMNS
    assert (*exported, "content_digest") == proof.PROOF_COLUMNS
    assert tuple(AuditEventSerializer().fields) == exported
    assert verify._COLUMNS == DECLARED
    # The append inserts every column but the id (the database's), and every value
    # it takes from its caller is in the content digest.
    inserted = re.search(r"INSERT INTO audit_auditevent \(([^)]*)\)", append_statement())
    assert inserted is not None
    assert [c.strip() for c in inserted.group(1).split(",")] == [
        "seq",
        "prev_hash",
        "hash",
        *fields.WRITTEN,
    ]
    assert set(fields.WRITTEN) | {"id", "seq", "prev_hash", "hash"} == set(DECLARED)
    assert fields.WRITTEN == fields.HASHED
    # The SIEM stream places each exported field somewhere.
    assert set(ocsf.PLACED) | set(ocsf._UNMAPPED) == set(exported)


def test_the_first_events_digests_do_not_change() -> None:
    """Values and digests computed before the field list moved to the model."""
    full = {
        "chain_key": "org:7:3",
        "created_at": datetime(2026, 1, 2, 3, 4, 5, 6789, tzinfo=UTC),
        "organization_id": 7,
        "actor_type": "worker",
        "actor_id": "12",
        "actor_label": "bot é",
        "action": "broker.call",
        "target_type": "connection",
        "target_id": "5",
        "target_label": "gh",
        "outcome": "success",
        "decision": "allowed",
        "worker_id": 12,
        "token_id": "tok123",
        "connection_id": 5,
        "provider": "github",
        "upstream_status": 200,
        "latency_ms": 31,
        "reason": 'why "q"',
        "metadata": {"b": [1, 2], "a": "x"},
        "ip": "10.0.0.1",
        "user_agent": "agent/1",
        "request_id": "rid-1",
    }
    bare = {"chain_key": "org:1", "created_at": "2026-01-01T00:00:00.000000+00:00"}
    assert chain.content_digest(full) == (
        "211faf9044a80f432a8298aa28de1aab32d86cd03fef4f46ffd21431bd114f00"
    )
    assert chain.content_digest(bare) == (
        "db2f759307d0e6c65cd1d060a9f1d5d59e898511de08937045a2b6eecd5e10c4"
    )
    assert offline.content_digest(bare) == chain.content_digest(bare)


def test_the_digest_covers_every_hashed_field_and_nothing_else() -> None:
    values = {name: sample(name) for name in DECLARED}
    digest = chain.content_digest(values)
    for name in DECLARED:
        changed = chain.content_digest({**values, name: sample(name, second=True)})
        if name in fields.HASHED:
            assert changed != digest, name
        else:
            assert changed == digest, name


def extended_model(**extra: models.Field[Any, Any]) -> type[models.Model]:
    """AuditEvent's declaration with `extra` fields appended: a column added."""
    attrs: dict[str, Any] = {
        field.name: field.clone()
        for field in AuditEvent._meta.concrete_fields
        if field.name != "id"
    }
    # Cloned after the others: declared last, as a new line at the end of the model.
    attrs.update(
        {name: field.clone() for name, field in extra.items()},
        UNHASHED_FIELDS=AuditEvent.UNHASHED_FIELDS,
        __module__=__name__,
    )
    return type(f"EventWith{''.join(n.title() for n in extra)}", (models.Model,), attrs)


@isolate_apps("apps.audit")
def test_a_column_added_to_the_model_is_written_hashed_and_exported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    derived = fields._fields(extended_model(ticket=models.CharField(max_length=40, blank=True)))
    ticket = derived[-1]
    assert (ticket.name, ticket.kind, ticket.hashed) == ("ticket", "text", True)
    assert [f.name for f in derived[:-1]] == list(DECLARED)
    assert chain.later_field_problems(derived) == []
    # Hashed when set; a row written before the column existed (the migration gives
    # it "") keeps its digest, in the application and in the offline verifier.
    monkeypatch.setattr(chain, "LATER_FIELDS", ("ticket",))
    monkeypatch.setattr(offline, "LATER_FIELDS", ("ticket",))
    old = {name: sample(name) for name in chain.DIGEST_V1_FIELDS}
    old["created_at"] = "2026-01-02T03:04:05.006789+00:00"
    before = chain.content_digest(old)
    for empty in ("", None):
        assert chain.content_digest({**old, "ticket": empty}) == before
        assert offline.content_digest({**old, "ticket": empty}) == before
    assert chain.content_digest({**old, "ticket": "T-1"}) != before
    assert offline.content_digest({**old, "ticket": "T-1"}) == chain.content_digest(
        {**old, "ticket": "T-1"}
    )


@isolate_apps("apps.audit")
def test_a_column_added_with_a_value_for_existing_rows_is_refused() -> None:
    derived = fields._fields(extended_model(retries=models.IntegerField(default=0)))
    problems = chain.later_field_problems(derived)
    assert len(problems) == 1
    assert "AuditEvent.retries" in problems[0]
    # A type the exports and the offline verifier cannot encode yet is refused by name.
    with pytest.raises(TypeError, match="flagged"):
        fields._fields(extended_model(flagged=models.BooleanField(null=True)))
    assert chain.missing_v1_fields(["chain_key"])[:2] == ["created_at", "organization_id"]


def test_the_model_passes_its_system_check() -> None:
    assert check_audit_fields() == []


@pytest.mark.django_db
def test_every_written_field_reaches_the_row_the_chain_the_api_and_the_siem(
    org: Organization,
) -> None:
    from apps.audit.ocsf import ocsf_dict
    from apps.audit.services import audit_record

    given = {name: sample(name) for name in fields.WRITTEN}
    given["organization_id"] = org.pk
    given["actor_id"], given["target_id"] = "12", "5"
    given["action"] = "org.updated"  # a registered name (apps.audit.actions)
    del given["chain_key"], given["created_at"]  # the append's own
    event = audit_record(**given)
    assert event is not None
    stored = AuditEvent.objects.get(pk=event.pk)
    for name, value in given.items():
        assert getattr(stored, name) == value, name
    assert all(report.ok for report in verify.verify_chains(organization_ids=[org.pk]))

    data = AuditEventSerializer(stored).data
    assert list(data) == list(fields.EXPORTED)
    assert data["user_agent"] == "a"
    grantry = ocsf_dict(stored)["unmapped"]["grantry"]
    for name in ocsf._UNMAPPED:
        assert name in grantry, name


def test_a_time_is_hashed_as_its_canonical_text() -> None:
    moment = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)
    as_text = "2026-05-06T07:08:09.000000+00:00"
    assert chain.content_digest({"created_at": moment}) == chain.content_digest(
        {"created_at": as_text}
    )
    assert chain.content_digest({"created_at": moment + timedelta(microseconds=1)}) != (
        chain.content_digest({"created_at": as_text})
    )
