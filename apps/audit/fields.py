"""The one list of audit fields, as `AuditEvent` declares it.

Everything that names audit columns reads them here: the content digest
(`chain.HASHED_FIELDS`), the append statement (`WRITTEN`), CSV and JSON Lines
exports and proof exports (`EXPORTED`), the API serializer and the SIEM stream.
The list is the model's concrete fields in declaration order, each under its
column name (`organization_id`), which is also its export header and JSON key;
every field is exported, and every one but those the model names in
`UNHASHED_FIELDS` (the id and the chain link) is hashed.
`apps.audit.offline` keeps its own copy on purpose (it runs without Django);
a test holds it to this one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import models

from apps.audit.models import AuditEvent


@dataclass(frozen=True)
class AuditField:
    name: str  # the column: also the export header and the JSON key
    kind: str  # how it is stored and encoded: "int", "text", "json", "ip" or "time"
    hashed: bool  # covered by the content digest
    default: Callable[[], Any]  # what an append writes when the caller gives nothing


def _kind(field: models.Field[Any, Any]) -> str:
    if isinstance(field, models.JSONField):
        return "json"
    if isinstance(field, models.GenericIPAddressField):
        return "ip"
    if isinstance(field, models.DateTimeField):
        return "time"
    if isinstance(field, models.CharField | models.TextField):
        return "text"
    if isinstance(field, models.IntegerField | models.ForeignKey | models.AutoField):
        return "int"
    raise TypeError(f"AuditEvent.{field.name}: no encoding for {type(field).__name__}")


def _fields(model: type[models.Model]) -> tuple[AuditField, ...]:
    unhashed = set(getattr(model, "UNHASHED_FIELDS", ()))
    return tuple(
        AuditField(
            name=field.attname,
            kind=_kind(field),
            hashed=field.attname not in unhashed and field.name not in unhashed,
            default=field.get_default,
        )
        for field in model._meta.concrete_fields
    )


FIELDS = _fields(AuditEvent)
BY_NAME = {field.name: field for field in FIELDS}
HASHED = tuple(field.name for field in FIELDS if field.hashed)
# Exports, proof exports (which need every hashed field), the API and the SIEM stream.
EXPORTED = tuple(BY_NAME)
# The append takes these from its caller; the database assigns the id and the
# statement itself computes the link (seq, prev_hash, hash).
LINK = ("id", "seq", "prev_hash", "hash")
WRITTEN = tuple(field.name for field in FIELDS if field.name not in LINK)


def of_kind(kind: str, names: tuple[str, ...] = tuple(BY_NAME)) -> tuple[str, ...]:
    return tuple(name for name in names if BY_NAME[name].kind == kind)
