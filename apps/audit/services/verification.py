"""Verification from the dashboard and the API, not only the CLI. Each run is an audit
event ("audit.verified"): what was checked and the verdict."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from apps.audit.models import Outcome
from apps.audit.writer import audit_record


def audit_verify_export(
    *,
    organization: Any,
    actor: Any,
    chunks: Iterable[bytes],
    surface: str = "dashboard",
) -> Any:
    """Check an uploaded export with proof against this organization's own key,
    with the same code as the offline script. Returns an `offline.Report`."""
    from apps.audit import offline
    from apps.audit.signing import public_key_row

    key = public_key_row(organization)
    if key is None:
        report = offline.Report()
        report.problem(None, "This organization has not signed any export yet.")
    else:
        report = offline.verify_bytes(chunks, public_key=key.public_key)
        signed_for = (report.checkpoint or {}).get("organization_id")
        if report.checkpoint is not None and signed_for != organization.pk:
            report.problem(None, "The checkpoint was issued for another organization.")
    _record_verification(organization, actor, surface, "export", report.as_dict())
    return report


def audit_verify_trail(
    *,
    organization: Any,
    actor: Any,
    surface: str = "dashboard",
) -> list[Any]:
    """Verify every chain of the organization: its archives, then the live rows going
    on from them (`ChainReport`s; a broken archive breaks its chains)."""
    from apps.audit.history import verify_history
    from apps.audit.verify import ChainReport

    archives, reports = verify_history(organization_ids=[organization.pk])
    reports += [
        ChainReport(chain_key=f"archive {a.month} ({a.path})", problem=a.problem)
        for a in archives
        if not a.ok
    ]
    summary = {
        "ok": all(r.ok for r in reports) and all(a.ok for a in archives),
        "events": sum(r.count for r in reports),
        "chains": [str(r) for r in reports],
        "archives": [str(a) for a in archives],
        "problems": [str(a) for a in archives if not a.ok],
    }
    _record_verification(organization, actor, surface, "trail", summary)
    return reports


def _record_verification(
    organization: Any,
    actor: Any,
    surface: str,
    kind: str,
    result: dict[str, Any],
) -> None:
    problems = result.get("problems") or []
    audit_record(
        action="audit.verified",
        organization=organization,
        actor=actor,
        target_type="audit_trail",
        target_label=f"{kind}: {'ok' if result['ok'] else 'FAILED'}",
        outcome=Outcome.SUCCESS if result["ok"] else Outcome.FAILURE,
        metadata={
            "kind": kind,
            "surface": surface,
            "ok": result["ok"],
            "events": result.get("events", 0),
            "problems": [p["message"] if isinstance(p, dict) else str(p) for p in problems][:10],
            "key_id": result.get("key_id", ""),
        },
    )
