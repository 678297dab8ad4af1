"""Least-privilege report: what a role's rules were used for, and a narrower role.

Over a window (default 30 days) of a role's recorded broker calls, optionally of
one worker, every call is decided again against the role's CURRENT rules with
the broker's own `evaluate()` (recorded rule ids do not survive a rule edit),
which yields (for catalog actions, proxy calls and MCP tools alike):

* which rules matched calls, and how often (the first rule that allows a call
  is the one the broker names);
* which rules never matched;
* which constraints were never the deciding factor: for every call a rule
  covered (its action and connection), the constraint held, so dropping it
  would have changed nothing. A call whose input was not stored tells nothing
  about constraints and is not counted for them;
* which denials keep repeating (the same action or proxy path on the same
  connection, denied at least REPEATED_DENIALS times).

The proposal keeps only rules that matched, turns a provider-wide action rule
into the actions actually used, and pins an any-connection rule to the one
connection it was used on. It is checked with `simulation.simulate` (same
evaluate) against every worker's calls, since every worker with the role gets
the change, and shown as a YAML diff; applying it goes through
`services.role_narrow`."""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import yaml
from django.utils import timezone

from apps.audit.selectors import call_counts
from apps.core.ports import Port
from apps.policies.evaluate import (
    ACTION,
    MCP,
    PROXY,
    Call,
    RuleSpec,
    connection_matches,
    constraint_failure,
    covers,
    describe_rule,
    evaluate,
)
from apps.policies.simulation import (
    DEFAULT_DAYS,
    ActionClasses,
    DocumentError,
    clean_days,
    passes,
    proposed_specs,
    recorded_calls,
    replayed,
    role_events,
    simulate,
)

REPEATED_DENIALS = 3


@dataclass
class RuleUse:
    rule_id: int
    position: int
    words: str
    matched: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    connections: Counter[int] = field(default_factory=Counter)
    # constraint index -> [calls judged, calls where it failed]
    constraints: dict[int, list[int]] = field(default_factory=dict)

    @property
    def action_counts(self) -> list[tuple[str, int]]:
        """For templates (a Counter's .items would be looked up as a key)."""
        return self.actions.most_common()


@dataclass
class Report:
    role: Any
    worker_id: int | None
    days: int
    since: datetime
    calls: int = 0
    allowed: int = 0
    denied: int = 0
    without_input: int = 0
    # The same calls as the overview and the charts count them, as they were decided
    # when made (apps.audit.selectors.call_counts).
    recorded: dict[str, int] = field(default_factory=dict)
    rules: list[RuleUse] = field(default_factory=list)
    idle_constraints: list[dict[str, Any]] = field(default_factory=list)
    repeated_denials: list[dict[str, Any]] = field(default_factory=list)
    current: list[dict[str, Any]] = field(default_factory=list)
    proposal: list[dict[str, Any]] = field(default_factory=list)
    proposal_flips: dict[str, int] = field(default_factory=dict)

    @property
    def matched_rules(self) -> list[RuleUse]:
        return [r for r in self.rules if r.matched]

    @property
    def unused_rules(self) -> list[RuleUse]:
        return [r for r in self.rules if not r.matched]

    @property
    def changes(self) -> bool:
        return self.proposal != self.current

    def diff(self) -> str:
        before = _yaml(self.current).splitlines(keepends=True)
        after = _yaml(self.proposal).splitlines(keepends=True)
        return "".join(difflib.unified_diff(before, after, "current rules", "proposed rules", n=2))

    def proposal_digest(self) -> str:
        """Names this exact proposal, so an apply never saves a different one."""
        text = json.dumps(self.proposal, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def proposal_yaml(self) -> str:
        return _yaml(
            {"name": self.role.name, "description": self.role.description, "rules": self.proposal}
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "role": self.role.pk,
            "worker": self.worker_id,
            "days": self.days,
            "since": self.since.isoformat(),
            "calls": self.calls,
            "recorded": self.recorded,
            "allowed": self.allowed,
            "denied": self.denied,
            "calls_without_stored_input": self.without_input,
            "rules": [
                {
                    "rule_id": r.rule_id,
                    "position": r.position,
                    "rule": r.words,
                    "matched": r.matched,
                    "actions": dict(r.actions),
                    "connections": {str(k): v for k, v in r.connections.items()},
                }
                for r in self.rules
            ],
            "unused_rules": [r.rule_id for r in self.unused_rules],
            "idle_constraints": self.idle_constraints,
            "repeated_denials": self.repeated_denials,
            "proposal": {
                "rules": self.proposal,
                "digest": self.proposal_digest(),
                "diff": self.diff(),
                "changes": self.changes,
                "flips_on_recorded_calls": self.proposal_flips,
            },
        }


def _yaml(document: Any) -> str:
    return str(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))


def least_privilege_report(
    *,
    role: Any,
    worker_id: int | None = None,
    days: int = DEFAULT_DAYS,
    now: datetime | None = None,
) -> Report:
    from apps.policies.selectors import load_role_rules, role_document

    organization = role.organization
    now = now or timezone.now()
    since = now - timedelta(days=days)
    report = Report(role=role, worker_id=worker_id, days=days, since=since)
    specs = load_role_rules(role.pk)
    uses = {
        spec.rule_id: RuleUse(spec.rule_id or 0, n, describe_rule(spec))
        for n, spec in enumerate(specs, start=1)
    }
    report.rules = list(uses.values())
    classes = ActionClasses(organization)
    denials: dict[tuple[Any, ...], dict[str, Any]] = defaultdict(
        lambda: {"count": 0, "last_event_id": None, "reason": ""}
    )
    calls = recorded_calls(
        organization=organization,
        role_id=role.pk,
        since=since,
        worker_id=worker_id,
        calls_only=True,
    )
    report.recorded = call_counts(
        role_events(organization=organization, role_id=role.pk, since=since, worker_id=worker_id)
    )
    for row in calls:
        # a rule's time window: the call's own time
        replay = replayed(row, role_name=role.name, classes=classes, timed=True)
        if replay is None:
            continue
        event_id, connection_id, label = row[0], row[2], row[3]
        call, what, known = replay.call, replay.what, replay.input_known
        report.calls += 1
        report.without_input += not known
        decision = evaluate(specs, call)
        if not passes(decision) and not known:
            # Constraints unknown: the rule it passed when it was recorded still counts.
            loose = evaluate([_loose(s) for s in specs], call)
            decision = loose if passes(loose) else decision
        if passes(decision):
            report.allowed += 1
            use = uses.get(decision.rule_id)
            if use is not None:
                use.matched += 1
                use.actions[what] += 1
                if connection_id is not None:
                    use.connections[connection_id] += 1
        else:
            report.denied += 1
            entry = denials[(what, connection_id, label)]
            entry["count"] += 1
            entry["last_event_id"] = event_id
            entry["reason"] = decision.reason
        if known and call.kind in (ACTION, MCP):
            _judge_constraints(specs, uses, call)
    report.idle_constraints = _idle_constraints(specs, uses)
    report.repeated_denials = sorted(
        (
            {"call": what, "connection_id": cid, "connection": label, **entry}
            for (what, cid, label), entry in denials.items()
            if entry["count"] >= REPEATED_DENIALS
        ),
        key=lambda d: -d["count"],
    )
    report.current = [_strip(r) for r in role_document(role)["rules"]]
    report.proposal = _propose(specs, report.current, uses)
    if report.changes:
        from apps.policies.validation import clean_rules

        flips = simulate(
            organization=organization,
            role=role,
            rules=proposed_specs(clean_rules(organization=organization, rules=report.proposal)),
            days=days,
            now=now,
        )
        report.proposal_flips = {
            "allowed_to_denied": flips.allowed_to_denied,
            "denied_to_allowed": flips.denied_to_allowed,
            "undetermined": flips.undetermined,
        }
    return report


def _loose(spec: RuleSpec) -> RuleSpec:
    return dataclasses.replace(spec, constraints=())


def _judge_constraints(specs: Sequence[RuleSpec], uses: dict[Any, RuleUse], call: Call) -> None:
    for spec in specs:
        if not spec.constraints or not covers(spec, call):
            continue
        if not connection_matches(spec, call.connection_id, call.on_behalf_of):
            continue
        counts = uses[spec.rule_id].constraints
        for index, constraint in enumerate(spec.constraints):
            judged = counts.setdefault(index, [0, 0])
            judged[0] += 1
            if constraint_failure(constraint, call.input) is not None:
                judged[1] += 1


def _idle_constraints(specs: Sequence[RuleSpec], uses: dict[Any, RuleUse]) -> list[dict[str, Any]]:
    idle = []
    for spec in specs:
        for index, constraint in enumerate(spec.constraints):
            judged, failed = uses[spec.rule_id].constraints.get(index, [0, 0])
            if failed == 0:
                idle.append(
                    {
                        "rule_id": spec.rule_id,
                        "constraint": constraint.describe(),
                        "calls_judged": judged,
                        # With no call to judge it, nothing is known either way.
                        "never_judged": judged == 0,
                    }
                )
    return idle


def _strip(rule: dict[str, Any]) -> dict[str, Any]:
    """A rule as role services take it (no id; connection by id)."""
    return {k: v for k, v in rule.items() if k not in ("id", "connection_name")}


def _propose(
    specs: Sequence[RuleSpec],
    current: list[dict[str, Any]],
    uses: dict[Any, RuleUse],
) -> list[dict[str, Any]]:
    proposal: list[dict[str, Any]] = []
    for spec, rule in zip(specs, current, strict=True):
        use = uses[spec.rule_id]
        if not use.matched:
            continue  # never used: dropped
        narrowed = dict(rule)
        if spec.kind == ACTION and rule.get("connection") is None and len(use.connections) == 1:
            narrowed["connection"] = next(iter(use.connections))
        if spec.kind == ACTION and spec.action_pattern == f"{spec.provider_key}.*":
            for action in sorted(use.actions):
                proposal.append({**narrowed, "action_pattern": action, "action_class": ""})
            continue
        if spec.kind == MCP and any(ch in spec.action_pattern for ch in "*?"):
            for tool in sorted(use.actions):  # the tools actually called
                proposal.append({**narrowed, "action_pattern": tool, "action_class": ""})
            continue
        if spec.kind in (PROXY, ACTION, MCP):
            proposal.append(narrowed)
    return proposal


# The organization's worker by id: apps.workers plugs its answer in (apps.core.ports).
worker_of: Port[[Any, int], Any] = Port("worker_of", answered_by="apps.workers.selectors.worker_of")


def least_privilege_params(organization: Any, data: Any) -> tuple[int, Any]:
    """(days, worker or None) from a query or form; DocumentError when invalid.

    The worker is apps.workers' answer (it sits above apps.policies: a worker has a role),
    plugged into `worker_of` (apps.core.ports)."""
    days = clean_days(data.get("days"))
    worker = None
    ref = str(data.get("worker") or "").strip()
    if ref:
        worker = (
            worker_of(organization, int(ref))
            if ref.isascii() and ref.isdigit() and len(ref) < 19
            else None
        )
        if worker is None:
            raise DocumentError("No such worker in this organization.")
    return days, worker
