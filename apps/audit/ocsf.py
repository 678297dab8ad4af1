"""Audit events as OCSF 1.x events, built with py-ocsf-models.

py-ocsf-models (pinned) ships the base event and the objects (metadata,
product, ...) but not the API Activity, Account Change or Authentication
classes, so those are declared here on its `BaseEvent` with the attributes
OCSF 1.5 marks required for them. Grantry's own fields (chain key, seq and
hash, so a receiver can deduplicate and find gaps; decision, worker, token,
connection, and any audit field the mapping does not place) go in `unmapped`.
A broker call's stored input never leaves. tests/test_ocsf.py validates every class
against OCSF's own 1.5.0 schema (types, required attributes, enums and their
captions, constraints, declared profiles)."""

from __future__ import annotations

from typing import Any

from py_ocsf_models import OCSF_VERSION
from py_ocsf_models.events.base_event import BaseEvent
from py_ocsf_models.events.findings.severity_id import SeverityID
from py_ocsf_models.objects.metadata import Metadata
from py_ocsf_models.objects.product import Product
from pydantic import ConfigDict

from apps.audit.actions import ACCOUNT_CHANGE, API_ACTIVITY, AUTHENTICATION, ocsf_class_of
from apps.audit.fields import EXPORTED

CATEGORY = {API_ACTIVITY: 6, ACCOUNT_CHANGE: 3, AUTHENTICATION: 3}
CLASS_NAME = {
    API_ACTIVITY: "API Activity",
    ACCOUNT_CHANGE: "Account Change",
    AUTHENTICATION: "Authentication",
}
# OCSF 1.5 required attributes per class (beyond the base event's).
REQUIRED = {
    API_ACTIVITY: ("activity_id", "actor", "api", "cloud", "src_endpoint", "time", "type_uid"),
    ACCOUNT_CHANGE: ("activity_id", "time", "type_uid", "user"),
    AUTHENTICATION: ("activity_id", "time", "type_uid", "user"),
}
PRODUCT = Product(name="Grantry", vendor_name="Grantry", uid="grantry")
# The exported audit fields this mapping places itself (OCSF attributes, or
# unmapped.grantry's event_id, target and filtered metadata); every other one of
# the one list (apps.audit.fields) goes to unmapped.grantry under its own name.
PLACED = frozenset(
    {
        "id",
        "created_at",
        "organization_id",
        "actor_type",
        "actor_id",
        "actor_label",
        "target_type",
        "target_id",
        "target_label",
        "upstream_status",
        "request_id",
        "ip",
        "metadata",
    }
)
_UNMAPPED = tuple(name for name in EXPORTED if name not in PLACED)
_METHOD_ACTIVITY = {"POST": 1, "GET": 2, "HEAD": 2, "PUT": 3, "PATCH": 3, "DELETE": 4}


# API Activity carries `cloud` (required by the class once the `cloud` profile is
# used), so its events declare that profile.
PROFILES = {API_ACTIVITY: ["cloud"], ACCOUNT_CHANGE: None, AUTHENTICATION: None}
# user.type_id (OCSF 1.5 has no "service" type yet: a worker is 99 Other, its `type`
# says what it is); `type` is the id's caption otherwise.
USER_TYPES = {
    "user": (1, "User"),
    "worker": (99, "Worker"),
    "system": (3, "System"),
    "anonymous": (0, "Unknown"),
}
STATUS = {0: "Unknown", 1: "Success", 2: "Failure"}
# An event no network client caused (a Celery task, beat, a management command) has
# no client address: its source is Grantry itself.
GRANTRY_ENDPOINT = {"name": "grantry"}
GRANTRY_SERVICE = {"name": "grantry"}


class OCSFMetadata(Metadata):
    # timestamp_t is epoch milliseconds; py-ocsf-models types logged_time as a datetime
    # (which would be serialized as an ISO string).
    logged_time: int | None = None


class OCSFEvent(BaseEvent):
    """An OCSF event of one of the classes above (their attributes, typed loosely)."""

    model_config = ConfigDict(extra="forbid")

    metadata: OCSFMetadata

    # Activity classes use the event status ids (1 Success, 2 Failure), not the
    # findings' ones py-ocsf-models types status_id with.
    status_id: int | None = None
    activity_id: int
    activity_name: str | None = None
    category_uid: int
    class_uid: int
    class_name: str
    type_uid: int
    time: int
    actor: dict[str, Any] | None = None
    api: dict[str, Any] | None = None
    cloud: dict[str, Any] | None = None
    src_endpoint: dict[str, Any] | None = None
    http_request: dict[str, Any] | None = None
    user: dict[str, Any] | None = None
    service: dict[str, Any] | None = None


def class_of(action: str) -> int:
    """The OCSF class of an event: the registry's (apps.audit.actions)."""
    return ocsf_class_of(action)


def _activity(class_uid: int, event: Any) -> tuple[int, str]:
    action = event.action
    if class_uid == AUTHENTICATION:
        return (2, "Logoff") if "logout" in action else (1, "Logon")
    if class_uid == ACCOUNT_CHANGE:
        for word, pair in (
            ("created", (1, "Create")),
            ("minted", (1, "Create")),
            ("enabled", (2, "Enable")),
            ("disabled", (5, "Disable")),
            ("deleted", (6, "Delete")),
            ("revoked", (6, "Delete")),
            ("removed", (6, "Delete")),
        ):
            if word in action:
                return pair
        return 99, "Other"
    method = str((event.metadata or {}).get("method", "")).upper()
    if method in _METHOD_ACTIVITY:
        number = _METHOD_ACTIVITY[method]
        return number, ("Create", "Read", "Update", "Delete")[number - 1]
    return 99, "Other"


def _user(event: Any) -> dict[str, Any]:
    type_id, caption = USER_TYPES.get(event.actor_type, (0, "Unknown"))
    return {
        "uid": event.actor_id or event.actor_type,
        "name": event.actor_label or event.actor_type,
        "type_id": type_id,
        "type": caption,
    }


def ocsf_event(event: Any) -> OCSFEvent:
    """The OCSF form of one AuditEvent."""
    class_uid = class_of(event.action)
    activity_id, activity_name = _activity(class_uid, event)
    metadata = dict(event.metadata or {})
    metadata.pop("input", None)  # stored broker input stays in Grantry
    denied = event.decision == "denied" or event.outcome == "denied"
    failed = event.outcome in ("failure", "error", "denied", "refused")
    # A call waiting for a person's approval has not ended: OCSF's Unknown (0).
    status_id = 0 if event.outcome == "pending" else 2 if failed else 1
    time = int(event.created_at.timestamp() * 1000)
    fields: dict[str, Any] = {
        "activity_id": activity_id,
        "activity_name": activity_name,
        "category_uid": CATEGORY[class_uid],
        "class_uid": class_uid,
        "class_name": CLASS_NAME[class_uid],
        "type_uid": class_uid * 100 + activity_id,
        "time": time,
        "message": f"{event.action} {event.outcome}"
        + (f": {event.reason}" if event.reason else ""),
        "metadata": OCSFMetadata(
            product=PRODUCT,
            version=OCSF_VERSION,
            uid=f"{event.chain_key}:{event.seq}",
            sequence=event.seq,
            tenant_uid=str(event.organization_id or ""),
            correlation_uid=event.request_id or None,
            logged_time=time,
            profiles=PROFILES[class_uid],
        ),
        "severity_id": SeverityID.Medium if denied else SeverityID.Informational,
        "status_id": status_id,
        "status": STATUS[status_id],
        "status_detail": event.outcome,
        "status_code": str(event.upstream_status) if event.upstream_status else None,
        "unmapped": {
            "grantry": {
                "event_id": event.pk,
                **{name: getattr(event, name) for name in _UNMAPPED},
                "target": {
                    "type": event.target_type,
                    "id": event.target_id,
                    "label": event.target_label,
                },
                "metadata": metadata,
            }
        },
    }
    user = _user(event)
    if class_uid == API_ACTIVITY:
        fields.update(
            actor={"user": user},
            api={
                "operation": str(metadata.get("action") or event.action),
                "service": {"name": event.provider or "grantry"},
                # Only a call that reached its upstream has a response.
                **({"response": {"code": event.upstream_status}} if event.upstream_status else {}),
            },
            cloud={"provider": "Grantry"},
            src_endpoint={"ip": event.ip} if event.ip else dict(GRANTRY_ENDPOINT),
        )
        if metadata.get("method"):
            fields["http_request"] = {
                "http_method": metadata["method"],
                "url": {"path": "/" + str(metadata.get("path", "")).lstrip("/")},
            }
    else:
        target: dict[str, Any] = {
            key: value
            for key, value in (("uid", event.target_id), ("name", event.target_label))
            if value
        }
        if event.target_type:
            type_id, caption = USER_TYPES.get(event.target_type, (99, event.target_type))
            target.update(type_id=type_id, type=caption)
        # The account changed, or the one authenticating: the target when there is
        # one, else the actor (a person signing in).
        fields.update(actor={"user": user}, user=target if target.get("uid") else user)
        if class_uid == AUTHENTICATION:
            fields["service"] = dict(GRANTRY_SERVICE)  # what the subject signs in to
    return OCSFEvent(**fields)


def ocsf_dict(event: Any) -> dict[str, Any]:
    return ocsf_event(event).model_dump(mode="json", exclude_none=True)
