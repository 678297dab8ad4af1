"""Policy simulation: replay a role's recorded broker calls against proposed rules.

Each recorded call (the final `broker.execute`, `broker.check` or `broker.proxy`
event of a call whose connection was resolved, so the role's rules decided it; an
MCP tool call is a `broker.execute` naming `mcp_tool`) is rebuilt as an
`evaluate.Call` and decided again by the same pure
`apps.policies.evaluate.evaluate()` the broker uses. There is no second
implementation of the rules here: only the choice of inputs.

The recorded decision is the policy's: allowed when the event names the rule
that allowed it (`metadata.rule_id`), denied otherwise. A rate-limited or
failed call was still allowed by the rules, and so was a call an approval rule
allowed once a person approved it. A rule's time window is judged at the
recorded call's time; quotas, like rate limits, are the broker's, not the rules'.

When the organization did not store broker input (`store_broker_input` off),
an action call has only its input digest, so constraints cannot be checked.
Such a call is decided twice, once with every constraint satisfied (the rules
without constraints) and once with none (an empty input). When both agree the
result is certain; otherwise the call is reported as undetermined, per call,
rather than guessed."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.audit.selectors import CALL
from apps.policies.evaluate import Call, Decision, RuleSpec, evaluate, rule_spec_from_values
from apps.providers.registry import UnknownAction, get_action

RECORDED_ACTIONS = ("broker.execute", "broker.check", "broker.proxy")
DEFAULT_DAYS = 30
MAX_DAYS = 366
EXAMPLES = 10
NO_INPUT = (
    "the call's input was not stored (store_broker_input is off), so the proposed "
    "constraints cannot be re-evaluated"
)


@dataclass
class Example:
    event_id: int
    created_at: datetime | None
    call: str
    worker_id: int | None
    before: str
    after: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        when = self.created_at.isoformat() if self.created_at else None
        return {**dataclasses.asdict(self), "created_at": when}


@dataclass
class SimulationResult:
    since: datetime
    calls: int = 0
    unchanged: int = 0
    allowed_to_denied: int = 0
    denied_to_allowed: int = 0
    undetermined: int = 0
    skipped: int = 0  # actions no longer in the catalog
    examples: dict[str, list[Example]] = field(
        default_factory=lambda: {
            "allowed_to_denied": [],
            "denied_to_allowed": [],
            "undetermined": [],
        }
    )

    def add(self, kind: str, example: Example) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.examples[kind]) < EXAMPLES:
            self.examples[kind].append(example)

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "calls": self.calls,
            "unchanged": self.unchanged,
            "allowed_to_denied": self.allowed_to_denied,
            "denied_to_allowed": self.denied_to_allowed,
            "undetermined": self.undetermined,
            "skipped": self.skipped,
            "examples": {k: [e.as_dict() for e in v] for k, v in self.examples.items()},
        }


def proposed_specs(cleaned_rules: Sequence[dict[str, Any]]) -> list[RuleSpec]:
    """RuleSpecs of rules cleaned by `validation.clean_rules` (numbered from 1)."""
    specs = []
    for position, rule in enumerate(cleaned_rules, start=1):
        connection = rule.get("connection")
        specs.append(
            rule_spec_from_values(
                rule_id=position,
                kind=rule["kind"],
                provider_key=rule["provider_key"],
                action_pattern=rule.get("action_pattern", ""),
                action_class=rule.get("action_class", ""),
                connection_id=connection.pk if connection is not None else None,
                connection_name=connection.name if connection is not None else "",
                on_behalf_of=bool(rule.get("on_behalf_of")),
                methods=rule.get("methods") or (),
                path_glob=rule.get("path_glob", ""),
                constraints=rule.get("constraints") or (),
                rate_limit_per_minute=rule.get("rate_limit_per_minute"),
                approval=rule.get("approval"),
                schedule=rule.get("schedule"),
                quota=rule.get("quota"),
            )
        )
    return specs


# What a replay reads of each event: its metadata's keys as text, extracted by the
# database (decoding every event's JSON and time in Python cost more than deciding).
CALL_FIELDS = (
    "id",
    "action",
    "connection_id",
    "target_label",
    "worker_id",
    "provider",
    "m_action",
    "m_rule_id",
    "m_method",
    "m_path",
    "m_input_sha256",
    "m_input",
    "m_mcp_tool",
    "m_tool_class",
    "m_personal",
    "created_at",
)


def role_events(
    *, organization: Any, role_id: int, since: datetime, worker_id: int | None = None
) -> QuerySet[AuditEvent]:
    """The role's broker events since `since` (calls and dry runs), of one worker or all."""
    events = AuditEvent.objects.for_organization(organization).filter(
        action__in=RECORDED_ACTIONS,
        created_at__gte=since,
        connection_id__isnull=False,
        metadata__role_id=role_id,
    )
    if worker_id is not None:
        events = events.filter(worker_id=worker_id)
    return events


def recorded_calls(
    *,
    organization: Any,
    role_id: int,
    since: datetime,
    worker_id: int | None = None,
    calls_only: bool = False,
) -> Iterable[tuple[Any, ...]]:
    """CALL_FIELDS of the role's recorded calls since `since`, oldest first, streamed.
    `m_input` is the stored input as JSON text, None when it was not stored.
    `calls_only`: the calls every page counts (apps.audit.selectors.CALL), without
    the dry runs."""
    from django.db.models.fields.json import KT

    events = role_events(
        organization=organization, role_id=role_id, since=since, worker_id=worker_id
    )
    if calls_only:
        events = events.filter(CALL)
    keys = (
        "action",
        "rule_id",
        "method",
        "path",
        "input_sha256",
        "input",
        "mcp_tool",
        "tool_class",
        "personal",
    )
    return (
        events.order_by("id")
        .annotate(**{f"m_{key}": KT(f"metadata__{key}") for key in keys})
        .values_list(*CALL_FIELDS)
        .iterator(chunk_size=5000)
    )


def _without_constraints(rules: Sequence[RuleSpec]) -> list[RuleSpec]:
    return [dataclasses.replace(rule, constraints=()) for rule in rules]


@dataclass(frozen=True)
class Replayed:
    """One recorded call, rebuilt for `evaluate`."""

    call: Call
    what: str  # what was called: the action, tool, or method and path
    described: str  # the same with its connection, for examples
    input_known: bool
    key: tuple[Any, ...] | None  # calls with equal keys decide alike (None: not shared)


class ActionClasses:
    """Catalog actions' read/write classes, looked up once per name (None: no longer
    in the catalog)."""

    def __init__(self, organization: Any) -> None:
        self.organization = organization
        self.known: dict[str, str | None] = {}

    def __call__(self, name: str) -> str | None:
        if name not in self.known:
            try:
                action = get_action(name, organization=self.organization)
                self.known[name] = str(action.action_class)
            except UnknownAction:
                self.known[name] = None
        return self.known[name]


def replayed(
    row: tuple[Any, ...], *, role_name: str, classes: ActionClasses, timed: bool
) -> Replayed | None:
    """A `recorded_calls` row as a call to decide again; None for an action no longer
    in the catalog. `timed`: the rules have time windows, so the call's time matters."""
    import json

    fields = dict(zip(CALL_FIELDS, row, strict=True))
    connection_id, label, at = fields["connection_id"], fields["target_label"], fields["created_at"]
    when = at if timed else None
    input_text, digest = fields["m_input"], fields["m_input_sha256"]
    stored = input_text is not None
    if fields["action"] == "broker.proxy":
        method = (fields["m_method"] or "").upper()
        path = "/" + (fields["m_path"] or "").lstrip("/")
        call = Call.for_proxy(
            provider_key=fields["provider"],
            method=method,
            path=path,
            connection_id=connection_id,
            connection_name=label,
            role_name=role_name,
            on_behalf_of=fields["m_personal"] == "true",
        )
        what = f"{method} {path}"
        key: tuple[Any, ...] | None = ("proxy", connection_id, method, path, when)
        return Replayed(dataclasses.replace(call, at=at), what, f"{what} on '{label}'", True, key)
    # Equal digests, equal inputs: decided once.
    shared = bool(digest) or not stored
    if fields["m_mcp_tool"]:  # a tool of an MCP connection (apps.connections.gateway)
        tool, tool_class = fields["m_mcp_tool"], fields["m_tool_class"]
        call = Call.for_mcp_tool(
            tool=tool,
            read_only=tool_class == "read",
            connection_id=connection_id,
            connection_name=label,
            input=json.loads(input_text) if stored else {},
            role_name=role_name,
        )
        key = ("mcp", connection_id, tool, tool_class, digest if stored else None, stored, when)
        return Replayed(
            dataclasses.replace(call, at=at),
            tool,
            f"tool {tool} of '{label}'",
            stored,
            key if shared else None,
        )
    name = fields["m_action"] or ""
    action_class = classes(name)
    if action_class is None:
        return None
    # A call on the personal connection of the member the worker acted for (the broker
    # records `personal: true`): only an `on_behalf_of` rule can allow it again.
    personal = fields["m_personal"] == "true"
    call = Call.for_action(
        action_name=name,
        action_class=action_class,
        connection_id=connection_id,
        connection_name=label,
        input=json.loads(input_text) if stored else {},
        role_name=role_name,
        on_behalf_of=personal,
    )
    key = ("action", connection_id, name, digest if stored else None, stored, when, personal)
    return Replayed(
        dataclasses.replace(call, at=at),
        name,
        f"{name} on '{label}'",
        stored,
        key if shared else None,
    )


def simulate(
    *,
    organization: Any,
    role: Any,
    rules: Sequence[RuleSpec],
    days: int = DEFAULT_DAYS,
    now: datetime | None = None,
) -> SimulationResult:
    """Replay the role's last `days` of recorded calls against `rules`."""
    since = (now or timezone.now()) - timedelta(days=days)
    result = SimulationResult(since=since)
    loose = _without_constraints(rules)
    # A rule with a time window decides by the call's own time, so such calls are not
    # shared between times; without windows the time changes nothing.
    timed = any(rule.schedule is not None for rule in rules)
    classes = ActionClasses(organization)
    decided: dict[tuple[Any, ...], tuple[bool | None, str]] = {}
    source = recorded_calls(organization=organization, role_id=role.pk, since=since)
    rule_id_at = CALL_FIELDS.index("m_rule_id")
    for row in source:
        result.calls += 1
        replay = replayed(row, role_name=role.name, classes=classes, timed=timed)
        if replay is None:
            result.skipped += 1
            continue
        was_allowed = row[rule_id_at] is not None
        outcome = decided.get(replay.key) if replay.key is not None else None
        if outcome is None:
            outcome = _decide(rules, loose, replay.call, input_known=replay.input_known)
            if replay.key is not None:
                decided[replay.key] = outcome
        allowed, reason = outcome
        before = "allowed" if was_allowed else "denied"
        if allowed is None:
            kind = "undetermined"
            after = "unknown"
        elif allowed == was_allowed:
            result.unchanged += 1
            continue
        else:
            kind = "allowed_to_denied" if was_allowed else "denied_to_allowed"
            after = "allowed" if allowed else "denied"
        result.add(kind, Example(row[0], None, replay.described, row[4], before, after, reason))
    _add_times(result)
    return result


def _add_times(result: SimulationResult) -> None:
    """The examples' times, in one query (parsing every event's time cost more)."""
    examples = [e for group in result.examples.values() for e in group]
    times = dict(
        AuditEvent.objects.filter(id__in=[e.event_id for e in examples]).values_list(
            "id", "created_at"
        )
    )
    for example in examples:
        example.created_at = times.get(example.event_id)


def _decide(
    rules: Sequence[RuleSpec], loose: Sequence[RuleSpec], call: Call, input_known: bool
) -> tuple[bool | None, str]:
    strict: Decision = evaluate(rules, call)
    if input_known:
        return passes(strict), strict.reason
    # No input: an empty input fails every constraint, the loose rules pass every one.
    optimistic = evaluate(loose, call)
    if passes(optimistic) == passes(strict):
        return passes(strict), strict.reason
    return None, NO_INPUT


def passes(decision: Decision) -> bool:
    """Allowed by the rules: outright, or by an approval rule once a person approves
    (the broker then records that rule, as for any allowed call)."""
    return decision.allowed or decision.approval_required


class DocumentError(ValueError):
    """A proposed rules document that is not YAML/JSON or has no rule list."""


def rules_from_document(text: str) -> list[Any]:
    """The rules of a YAML or JSON document: a list of rules, or a role document
    (as the role's YAML/JSON view shows it) with a `rules` list."""
    import yaml

    try:
        document = yaml.safe_load(text) if text.strip() else []
    except yaml.YAMLError as exc:
        raise DocumentError(f"The document is not valid YAML or JSON: {exc}") from None
    if isinstance(document, dict):
        document = document.get("rules")
    if not isinstance(document, list):
        raise DocumentError("The document must be a list of rules, or a role with a 'rules' list.")
    return document


def clean_days(value: Any) -> int:
    text = str(DEFAULT_DAYS if value in (None, "") else value).strip()
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_DAYS:
        raise DocumentError(f"days must be a whole number from 1 to {MAX_DAYS}.")
    return int(text)


def role_simulate(*, role: Any, rules: Sequence[Any], days: int = DEFAULT_DAYS) -> SimulationResult:
    """Validate proposed rules exactly as saving them would, then replay the role's
    recorded calls against them. Changes nothing (raises ValidationError like the
    role services when a rule is invalid)."""
    from apps.policies.validation import clean_rules

    cleaned = clean_rules(organization=role.organization, rules=list(rules))
    return simulate(
        organization=role.organization, role=role, rules=proposed_specs(cleaned), days=days
    )
