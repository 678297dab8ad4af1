"""Reads for the approval pages: the baseline call and the input diff."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
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
    change: str  # "added", "removed", "changed", "same", "unknown"
    before: str
    after: str


@dataclass(frozen=True)
class InputSide:
    """One side of a diff: the values that may be shown, whether they are the real
    ones (else a redacted shape), and keyed hashes of the real values by path."""

    values: Any
    exact: bool = True
    fingerprints: dict[str, str] = field(default_factory=dict)


def flatten_input(value: Any, prefix: str = "") -> dict[str, Any]:
    """An input's leaves by dotted path (nested objects; lists are one leaf)."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key in sorted(value, key=str):
            out.update(flatten_input(value[key], f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix or "(input)": value}


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def input_diff(before: InputSide, after: InputSide) -> list[DiffRow]:
    """Field-by-field difference of two inputs (nested objects by dotted path).

    Whether a field is the same is decided on the real values: directly when both
    sides are exact, else through their fingerprints (an earlier call's values are
    not kept once it was decided). Without either, the change is "unknown"."""
    old, new = flatten_input(before.values), flatten_input(after.values)
    by_hash = bool(before.fingerprints and after.fingerprints)
    if by_hash:
        old_keys, new_keys = set(before.fingerprints), set(after.fingerprints)
    else:
        old_keys, new_keys = set(old), set(new)
    rows = []
    for key in sorted(old_keys | new_keys):
        then = _show(old[key]) if key in old else ""
        now = _show(new[key]) if key in new else ""
        if key not in old_keys:
            rows.append(DiffRow(key, "added", "", now))
        elif key not in new_keys:
            rows.append(DiffRow(key, "removed", then, ""))
        elif by_hash:
            same = before.fingerprints[key] == after.fingerprints[key]
            rows.append(DiffRow(key, "same" if same else "changed", then, now))
        elif before.exact and after.exact:
            rows.append(DiffRow(key, "same" if old[key] == new[key] else "changed", then, now))
        else:
            rows.append(DiffRow(key, "unknown", then, now))
    return rows
