"""Reads for the approval pages: the baseline call and the input diff."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from apps.approvals.models import (
    Approval,
    ApprovalKind,
    ApprovalStatus,
)


def previous_approved(approval: Approval) -> Approval | None:
    """The last approved (or executed) request for the same action, or the same
    proxy method and path, in this organization: the baseline of the diff."""
    same = Approval.objects.for_organization(approval.organization).filter(
        kind=approval.kind,
        status__in=[ApprovalStatus.APPROVED, ApprovalStatus.EXECUTED],
    )
    if approval.kind == ApprovalKind.PROXY:
        same = same.filter(method=approval.method, path=approval.path)
    else:
        same = same.filter(action_name=approval.action_name)
    return same.exclude(pk=approval.pk).order_by("-decided_at", "-id").first()


@dataclass(frozen=True)
class DiffRow:
    path: str
    change: str  # "added", "removed", "changed", "same"
    before: str
    after: str


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key in sorted(value, key=str):
            out.update(_flatten(value[key], f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix or "(input)": value}


def input_diff(before: Any, after: Any) -> list[DiffRow]:
    """Field-by-field difference of two inputs (nested objects by dotted path)."""
    old, new = _flatten(before), _flatten(after)
    rows = []

    def show(v: Any) -> str:
        return json.dumps(v, ensure_ascii=False, sort_keys=True)

    for key in sorted(set(old) | set(new)):
        if key not in old:
            rows.append(DiffRow(key, "added", "", show(new[key])))
        elif key not in new:
            rows.append(DiffRow(key, "removed", show(old[key]), ""))
        elif old[key] != new[key]:
            rows.append(DiffRow(key, "changed", show(old[key]), show(new[key])))
        else:
            rows.append(DiffRow(key, "same", show(old[key]), show(new[key])))
    return rows
