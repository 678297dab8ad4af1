"""The one decision: may this role make this call? Pure: no database, no I/O.

`evaluate(rules, call)` allows a call only when some rule allows it (deny by
default). Rules are independent allowances, so adding one never removes an
allowance. A denial's reason says what is missing and what an admin would
have to allow.

Constraint semantics are strict on purpose:
* a missing input field fails the constraint;
* the value must have the constraint's JSON type (`max` needs a finite number,
  never a bool or a numeric string; `glob`/`prefix` need a string; `equals`
  and `one_of` compare type and value, so 1 != "1" != true);
* arrays and objects never satisfy a constraint;
* fields the rule does not mention are ignored here (the broker validates the
  input against the action's JSON Schema separately).

Constraint globs: `*` matches any run of characters except "/", `**` also
matches "/", `?` one character except "/". No character classes.

Proxy paths are normalised before matching and rejected when they carry a
scheme or host, "//", "." or ".." segments, backslashes, control characters,
a query or fragment, or encoded dots, slashes, backslashes, percents or NULs.
Path globs: `*` matches exactly one segment, `**` any number (0+), and a
segment such as `issue-*` matches within one segment.

On behalf of a person: a rule with `on_behalf_of` (`connection: on_behalf_of`) matches
only a call on the personal connection of the member the calling worker acts for
(`Call.on_behalf_of`, which the broker sets only for that member's own connection);
every other rule matches only shared connections. So no rule, whatever it names, lets
a worker use a personal connection other than through `on_behalf_of`, and the broker
never offers one member's connection to a worker acting for someone else.

Approval rules (`approval_required=True`) never allow a call by themselves.
When no plain rule allows the call but an approval rule would (same matching,
same constraints), the decision is `allowed=False, approval_required=True`
with that rule's approval settings: the caller may ask a person, and the call
runs only with an approval bound to it (apps.approvals). A caller that does not
know about approvals therefore still denies: fail closed. A plain rule that
allows the call wins over an approval rule, so adding an approval rule never
removes or narrows an allowance, and an approval never widens one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from apps.policies.windows import (
    Quota,
    Schedule,
    ScheduleError,
    closed_reason,
    quota_from,
    schedule_from,
)

ACTION = "action"
PROXY = "proxy"
MCP = "mcp"  # a tool of an upstream MCP server (apps.connections.gateway)
CONSTRAINT_OPS = ("equals", "one_of", "glob", "prefix", "max")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
DEFAULT_APPROVAL_EXPIRES_IN = 3600  # seconds: how long an approval request lives


@dataclass(frozen=True)
class Constraint:
    field: str
    op: str
    value: Any

    def describe(self) -> str:
        if self.op == "one_of":
            return f"input.{self.field} must be one of {_join(self.value)}"
        words = {
            "equals": "must equal",
            "glob": "must match",
            "prefix": "must start with",
            "max": "must be at most",
        }
        return f"input.{self.field} {words.get(self.op, self.op)} {_show(self.value)}"

    def condition(self) -> str:
        """The constraint as a condition, for rule descriptions."""
        if self.op == "one_of":
            return f"input.{self.field} is one of {_join(self.value)}"
        words = {"equals": "is", "glob": "matches", "prefix": "starts with", "max": "is at most"}
        return f"input.{self.field} {words.get(self.op, self.op)} {_show(self.value)}"


@dataclass(frozen=True)
class RuleSpec:
    """One rule as `evaluate` sees it (built by `Rule.to_spec()` or `role_rules`)."""

    rule_id: int | None
    kind: str
    provider_key: str
    action_pattern: str = ""
    action_class: str = ""
    connection_id: int | None = None
    connection_name: str = ""
    # The personal connection of the member the worker acts for (see the docstring).
    on_behalf_of: bool = False
    methods: tuple[str, ...] = ()
    path_glob: str = ""
    constraints: tuple[Constraint, ...] = ()
    rate_limit_per_minute: int | None = None
    # Allowed only after a person approves the exact call (see the module docstring).
    approval_required: bool = False
    approval_expires_in: int = DEFAULT_APPROVAL_EXPIRES_IN
    # Named approvers (user ids and their emails, for words); empty: admins and owners.
    approver_ids: tuple[int, ...] = ()
    approver_labels: tuple[str, ...] = ()
    schedule: Schedule | None = None  # allows only inside this window (see windows.py)
    quota: Quota | None = None  # per-worker cap, counted by the broker after allowing
    # A stored schedule or quota that no longer parses: the rule allows nothing.
    broken: bool = False


@dataclass(frozen=True)
class Call:
    """What an agent is trying to do. Use `Call.action(...)` or `Call.proxy(...)`.

    `connection_id` is the connection the broker resolved; None only matches
    rules that allow any connection of the provider."""

    kind: str
    provider_key: str
    connection_id: int | None
    connection_name: str = ""
    # The connection is the personal one of the member the calling worker acts for.
    on_behalf_of: bool = False
    action_name: str = ""
    action_class: str = ""
    method: str = ""
    path: str = ""
    input: Any = field(default=None, hash=False, compare=False)
    role_name: str = ""
    at: datetime | None = field(default=None, compare=False)  # None: now

    @classmethod
    def for_action(
        cls,
        *,
        action_name: str,
        action_class: str,
        connection_id: int | None,
        connection_name: str = "",
        input: Any = None,
        role_name: str = "",
        on_behalf_of: bool = False,
    ) -> Call:
        return cls(
            kind=ACTION,
            provider_key=action_name.split(".", 1)[0],
            connection_id=connection_id,
            connection_name=connection_name,
            on_behalf_of=on_behalf_of,
            action_name=action_name,
            action_class=action_class,
            input={} if input is None else input,
            role_name=role_name,
        )

    @classmethod
    def for_mcp_tool(
        cls,
        *,
        tool: str,
        read_only: bool,
        connection_id: int,
        connection_name: str = "",
        input: Any = None,
        role_name: str = "",
    ) -> Call:
        """A tool of an MCP connection; `read_only` is its approved readOnlyHint, which
        a rule's read/write class matches."""
        return cls(
            kind=MCP,
            provider_key=MCP,
            connection_id=connection_id,
            connection_name=connection_name,
            action_name=tool,
            action_class="read" if read_only else "write",
            input={} if input is None else input,
            role_name=role_name,
        )

    @classmethod
    def for_proxy(
        cls,
        *,
        provider_key: str,
        method: str,
        path: str,
        connection_id: int | None,
        connection_name: str = "",
        role_name: str = "",
        on_behalf_of: bool = False,
    ) -> Call:
        return cls(
            kind=PROXY,
            provider_key=provider_key,
            connection_id=connection_id,
            connection_name=connection_name,
            on_behalf_of=on_behalf_of,
            method=method,
            path=path,
            input={},
            role_name=role_name,
        )


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule_id: int | None
    reason: str
    rate_limit_per_minute: int | None = None
    # True: not allowed as it stands, but rule `rule_id` allows it once a person approves
    # this exact call. `allowed` stays False so that a caller unaware of approvals denies.
    approval_required: bool = False
    approval_expires_in: int | None = None
    approver_ids: tuple[int, ...] = ()
    approver_labels: tuple[str, ...] = ()
    quota: Quota | None = None  # the allowing rule's per-worker quota, to count


def rule_spec_from_values(
    *,
    rule_id: int | None,
    kind: str,
    provider_key: str,
    action_pattern: str = "",
    action_class: str = "",
    connection_id: int | None = None,
    connection_name: str = "",
    on_behalf_of: bool = False,
    methods: Sequence[str] = (),
    path_glob: str = "",
    constraints: Sequence[Mapping[str, Any]] = (),
    rate_limit_per_minute: int | None = None,
    approval: Mapping[str, Any] | None = None,
    schedule: Mapping[str, Any] | None = None,
    quota: Mapping[str, Any] | None = None,
) -> RuleSpec:
    """`approval` is the rule's stored approval setting, or None/{} for a plain rule:
    {"required": true, "expires_in": 3600, "approvers": [{"id": 7, "email": "…"}]}.
    `schedule` and `quota` are the stored window and per-worker quota (windows.py);
    one that no longer parses marks the rule broken, so it allows nothing."""
    approval = approval or {}
    approvers = [a for a in approval.get("approvers") or () if isinstance(a, Mapping)]
    broken = False
    parsed_schedule = parsed_quota = None
    try:
        parsed_schedule = schedule_from(schedule) if schedule else None
        parsed_quota = quota_from(quota) if quota else None
    except ScheduleError:
        broken = True  # fail closed: validation keeps this from being stored
    return RuleSpec(
        rule_id=rule_id,
        kind=kind,
        provider_key=provider_key,
        action_pattern=action_pattern,
        action_class=action_class or "",
        connection_id=connection_id,
        connection_name=connection_name,
        on_behalf_of=bool(on_behalf_of),
        methods=tuple(str(m).upper() for m in methods or ()),
        path_glob=path_glob or "",
        constraints=tuple(
            Constraint(
                field=str(c.get("field", "")),
                op=str(c.get("op", "")),
                value=_freeze(c.get("value")),
            )
            for c in constraints or ()
        ),
        rate_limit_per_minute=rate_limit_per_minute,
        approval_required=bool(approval.get("required")),
        approval_expires_in=int(approval.get("expires_in") or DEFAULT_APPROVAL_EXPIRES_IN),
        approver_ids=tuple(int(a.get("id", 0)) for a in approvers),
        approver_labels=tuple(str(a.get("email", "")) for a in approvers),
        schedule=parsed_schedule,
        quota=parsed_quota,
        broken=broken,
    )


def evaluate(rules: Sequence[RuleSpec], call: Call) -> Decision:
    plain = [r for r in rules if not r.approval_required]
    if len(plain) == len(rules):
        return _evaluate_plain(rules, call)
    decision = _evaluate_plain(plain, call)
    if decision.allowed:
        return decision
    for rule in rules:
        if not rule.approval_required or not _evaluate_plain([rule], call).allowed:
            continue
        return Decision(
            False,
            rule.rule_id,
            _approval_reason(rule, call),
            rule.rate_limit_per_minute,
            approval_required=True,
            approval_expires_in=rule.approval_expires_in,
            approver_ids=rule.approver_ids,
            approver_labels=rule.approver_labels,
            quota=rule.quota,
        )
    # Nothing allows it, even after approval: explain over every rule (approval rules
    # can only be reached here when they do not match, so this is a denial).
    return _evaluate_plain(rules, call)


def _evaluate_plain(rules: Sequence[RuleSpec], call: Call) -> Decision:
    if call.kind == PROXY:
        return _evaluate_proxy(rules, call)
    if call.kind in (ACTION, MCP):
        return _evaluate_action(rules, call)
    return Decision(False, None, f"Unknown call kind {call.kind!r}.")


def _what(call: Call) -> str:
    if call.kind == PROXY:
        return f"{call.method} {call.path}"
    if call.kind == MCP:
        return f"tool '{call.action_name}'"
    return f"action '{call.action_name}'"


def _approval_reason(rule: RuleSpec, call: Call) -> str:
    what = _what(call)
    return (
        f"Rule #{rule.rule_id} ({describe_rule(rule)}) allows {what} only after a person "
        f"approves this exact call."
    )


# --- actions ------------------------------------------------------------------


def mcp_tool_matches(rule: RuleSpec, tool: str, action_class: str) -> bool:
    """Does an MCP rule cover this tool (its pattern, its read/write class)?"""
    if rule.kind != MCP or not glob_match(rule.action_pattern, tool):
        return False
    return not rule.action_class or rule.action_class == action_class


def covers(rule: RuleSpec, call: Call) -> bool:
    """Does the rule cover this action or tool call (ignoring connection and constraints)?"""
    if call.kind == MCP:
        return mcp_tool_matches(rule, call.action_name, call.action_class)
    return action_matches(rule, call.action_name, call.action_class)


def action_matches(rule: RuleSpec, action_name: str, action_class: str) -> bool:
    """Does the rule cover this action (ignoring connection and constraints)?"""
    if rule.kind != ACTION or not action_name.startswith(f"{rule.provider_key}."):
        return False
    if rule.action_pattern == f"{rule.provider_key}.*":
        name_ok = True
    else:
        name_ok = rule.action_pattern == action_name
    return name_ok and (not rule.action_class or rule.action_class == action_class)


def connection_matches(
    rule: RuleSpec, connection_id: int | None, on_behalf_of: bool = False
) -> bool:
    """Does the rule cover this connection? `on_behalf_of`: the connection is the
    personal one of the member the worker acts for, which only an `on_behalf_of` rule
    covers (and such a rule covers nothing else)."""
    if rule.on_behalf_of or on_behalf_of:
        return rule.on_behalf_of and on_behalf_of
    return rule.connection_id is None or rule.connection_id == connection_id


def _evaluate_action(rules: Sequence[RuleSpec], call: Call) -> Decision:
    """Actions and MCP tools: the same matching, constraints, windows and reasons."""
    role = f"Role '{call.role_name}'" if call.role_name else "This role"
    conn = _conn_label(call)
    what = _what(call)
    kind = "an MCP rule" if call.kind == MCP else "an action rule"
    constraint_failures: list[str] = []
    other_connections: list[str] = []
    closed: list[str] = []
    for rule in rules:
        if not covers(rule, call):
            continue
        if not connection_matches(rule, call.connection_id, call.on_behalf_of):
            other_connections.append(_rule_connection_label(rule))
            continue
        failure = first_constraint_failure(rule.constraints, call.input)
        if failure is not None:
            constraint_failures.append(failure)
            continue
        shut = window_closed(rule, call)
        if shut is not None:
            closed.append(shut)
            continue
        return _allow(rule, call)
    if closed:
        return Decision(False, None, f"{role} allows {what} on {conn} {'; or '.join(closed)}.")
    if constraint_failures:
        shown = "; or ".join(dict.fromkeys(constraint_failures))
        return Decision(
            False, None, f"{role} allows {what} on {conn} only with matching input: {shown}."
        )
    if other_connections:
        names = ", ".join(f"'{n}'" for n in dict.fromkeys(other_connections))
        return Decision(
            False,
            None,
            f"{role} allows {what} only on connection {names}, not on {conn}. An admin can "
            f"add {kind} for {call.action_name} on this connection.",
        )
    return Decision(
        False,
        None,
        f"{role} has no rule allowing {what} on {conn}. An admin can add {kind} for "
        f"{call.action_name}.",
    )


def window_closed(rule: RuleSpec, call: Call) -> str | None:
    """Why the rule's time window does not cover the call (with the reopening), or None."""
    if rule.broken:
        return f"under rule #{rule.rule_id} never (its schedule or quota is invalid)"
    if rule.schedule is None:
        return None
    at = call.at or datetime.now(UTC)
    if rule.schedule.is_open(at):
        return None
    return f"under rule #{rule.rule_id} {closed_reason(rule.schedule, at)}"


def _allow(rule: RuleSpec, call: Call) -> Decision:
    return Decision(
        True,
        rule.rule_id,
        _allowed_reason(rule, call),
        rule.rate_limit_per_minute,
        quota=rule.quota,
    )


def _allowed_reason(rule: RuleSpec, call: Call) -> str:
    return f"Allowed by rule #{rule.rule_id} ({describe_rule(rule)}) for {_what(call)}."


# --- constraints --------------------------------------------------------------


def first_constraint_failure(constraints: Sequence[Constraint], data: Any) -> str | None:
    """The first failed constraint, in words, or None when all hold."""
    for constraint in constraints:
        failure = constraint_failure(constraint, data)
        if failure is not None:
            return failure
    return None


def constraint_failure(constraint: Constraint, data: Any) -> str | None:
    wanted = constraint.describe()
    if not isinstance(data, Mapping) or constraint.field not in data:
        return f"{wanted} (it is missing)"
    value = data[constraint.field]
    if _satisfies(constraint.op, constraint.value, value):
        return None
    return f"{wanted} (got {_show(value)})"


def _satisfies(op: str, expected: Any, value: Any) -> bool:
    if op == "equals":
        return _is_scalar(expected) and _same(expected, value)
    if op == "one_of":
        return isinstance(expected, tuple) and any(
            _is_scalar(e) and _same(e, value) for e in expected
        )
    if op == "glob":
        return isinstance(expected, str) and isinstance(value, str) and glob_match(expected, value)
    if op == "prefix":
        return isinstance(expected, str) and isinstance(value, str) and value.startswith(expected)
    if op == "max":
        return _is_number(expected) and _is_number(value) and value <= expected
    return False  # an unknown op never allows anything


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "other"


def _is_scalar(value: Any) -> bool:
    return _json_type(value) in {"boolean", "number", "string"} and (
        not isinstance(value, float) or math.isfinite(value)
    )  # NaN never equals anything, infinities are not JSON


def _is_number(value: Any) -> bool:
    if _json_type(value) != "number":
        return False
    return isinstance(value, int) or math.isfinite(value)


def _same(expected: Any, value: Any) -> bool:
    if not _is_scalar(value) or _json_type(expected) != _json_type(value):
        return False
    return bool(expected == value)


@lru_cache(maxsize=512)
def _glob_tokens(pattern: str) -> tuple[str, ...]:
    return tuple(t for t in re.split(r"(\*\*|\*|\?)", pattern) for t in _chars(t))


def _chars(part: str) -> tuple[str, ...]:
    return (part,) if part in ("**", "*", "?") else tuple(part)


def glob_match(pattern: str, value: str) -> bool:
    """`*` any run without "/", `**` any run, `?` one character but "/".

    Simulated as an NFA, so the cost is O(len(value) x wildcards) whatever the
    pattern: an agent's long input cannot make a regex backtrack for minutes."""
    tokens = _glob_tokens(pattern)
    end = len(tokens)

    def closure(states: set[int]) -> set[int]:
        stack, seen = list(states), set(states)
        while stack:
            i = stack.pop()
            if i < end and tokens[i] in ("*", "**") and i + 1 not in seen:
                seen.add(i + 1)
                stack.append(i + 1)
        return seen

    states = closure({0})
    for char in value:
        step: set[int] = set()
        for i in states:
            if i == end:
                continue
            token = tokens[i]
            if token == "**" or (token == "*" and char != "/"):
                step.add(i)
            elif (token == "?" and char != "/") or token == char:
                step.add(i + 1)
        if not step:
            return False
        states = closure(step)
    return end in states


# --- proxy --------------------------------------------------------------------


class UnsafePath(ValueError):
    """A proxy path that could escape its base URL or confuse a matcher."""


_ENCODED_TRICKS = re.compile(r"%(2e|2f|5c|25|00|3b)", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def normalize_path(path: str) -> str:
    """The path as rules see it, or UnsafePath. A trailing slash is dropped."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise UnsafePath("the path must start with '/'")
    if path.startswith("//") or "://" in path:
        raise UnsafePath("the path must not name a scheme or host")
    if "//" in path:
        raise UnsafePath("the path must not contain '//'")
    if "\\" in path or _CONTROL.search(path):
        raise UnsafePath("the path must not contain backslashes, spaces or control characters")
    if "?" in path or "#" in path:
        raise UnsafePath("the path must not contain a query or fragment")
    if ";" in path:
        # Tomcat, Jetty and Spring strip ';' path parameters, so '/a/..;/b' is '/b' to them.
        raise UnsafePath("the path must not contain ';'")
    if _ENCODED_TRICKS.search(path):
        raise UnsafePath("the path must not contain encoded dots, slashes, semicolons or percents")
    segments = path.split("/")[1:]
    if segments and segments[-1] == "":
        segments = segments[:-1]
    if any(s in {".", ".."} for s in segments):
        raise UnsafePath("the path must not contain '.' or '..' segments")
    return "/" + "/".join(segments)


def path_glob_problem(glob: str) -> str | None:
    """Why a rule's path glob is unusable, or None."""
    if not isinstance(glob, str) or not glob.startswith("/"):
        return "A path glob must start with '/'."
    try:
        normalize_path(glob)
    except UnsafePath as exc:
        return f"Invalid path glob: {exc}."
    return None


def path_matches(glob: str, normalized_path: str) -> bool:
    try:
        glob = normalize_path(glob)
    except UnsafePath:
        return False
    return _match_segments(_segments(glob), _segments(normalized_path))


def _segments(path: str) -> tuple[str, ...]:
    return tuple(s for s in path.split("/")[1:] if s)


def _match_segments(pattern: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    """Segment-wise match by dynamic programming: several `**` stay
    O(segments x pattern), with no recursion however deep the path."""
    n = len(parts)
    # after[q]: does pattern[p+1:] match parts[q:]? Built from the end.
    after = [q == n for q in range(n + 1)]
    for head in reversed(pattern):
        now = [False] * (n + 1)
        for q in range(n, -1, -1):
            if head == "**":
                now[q] = after[q] or (q < n and now[q + 1])
            else:
                now[q] = q < n and after[q + 1] and _segment_matches(head, parts[q])
        after = now
    return after[0]


def _segment_matches(glob: str, segment: str) -> bool:
    if glob == "*":
        return bool(segment)
    return glob_match(glob, segment)


def _evaluate_proxy(rules: Sequence[RuleSpec], call: Call) -> Decision:
    role = f"Role '{call.role_name}'" if call.role_name else "This role"
    conn = _conn_label(call)
    method = call.method.upper()
    try:
        path = normalize_path(call.path)
    except UnsafePath as exc:
        return Decision(False, None, f"Proxy path {_show(call.path)} was rejected: {exc}.")
    other_methods: list[str] = []
    closed: list[str] = []
    for rule in rules:
        if rule.kind != PROXY or rule.provider_key != call.provider_key:
            continue
        # One connection by id, and never a personal one (those are not proxied).
        if (
            rule.connection_id is None
            or rule.connection_id != call.connection_id
            or call.on_behalf_of
            or rule.on_behalf_of
        ):
            continue
        if not path_matches(rule.path_glob, path):
            continue
        if method in rule.methods:
            shut = window_closed(rule, call)
            if shut is None:
                return _allow(rule, call)
            closed.append(shut)
            continue
        other_methods.extend(rule.methods)
    if closed:
        return Decision(
            False, None, f"{role} allows {method} {path} through {conn} {'; or '.join(closed)}."
        )
    fix = f"An admin can add a proxy rule for {method} with a path glob matching {path}."
    if other_methods:
        allowed = ", ".join(m for m in dict.fromkeys(other_methods))
        return Decision(
            False,
            None,
            f"{role} allows only {allowed} on {path} through {conn}, not {method}. {fix}",
        )
    return Decision(
        False, None, f"{role} has no proxy rule allowing {method} {path} on {conn}. {fix}"
    )


# --- words --------------------------------------------------------------------


def _rule_connection_label(rule: RuleSpec) -> str:
    if rule.on_behalf_of:
        return "on_behalf_of"
    if rule.connection_id is None:
        return f"any shared {rule.provider_key}"
    return rule.connection_name or f"#{rule.connection_id}"


def _connection_words(rule: RuleSpec) -> str:
    if rule.on_behalf_of:
        return f"on the personal {rule.provider_key} connection of the member the worker acts for"
    if rule.connection_id is not None:
        return f"on connection '{rule.connection_name}'"
    return f"on any {rule.provider_key} connection"


def describe_rule(rule: RuleSpec) -> str:
    """The rule in plain words, for pages, reasons and reviews."""
    conn = _connection_words(rule)
    if rule.kind == PROXY:
        text = f"proxy {'/'.join(rule.methods)} {rule.path_glob} {conn}"
    elif rule.kind == MCP:
        text = f"{_tools_words(rule)} of MCP connection '{rule.connection_name}'"
        if rule.constraints:
            text += ", if " + " and ".join(c.condition() for c in rule.constraints)
    else:
        if rule.action_pattern == f"{rule.provider_key}.*":
            cls = f"{rule.action_class} " if rule.action_class else ""
            what = f"all {cls}actions of {rule.provider_key}"
        else:
            what = f"action {rule.action_pattern}"
        text = f"{what} {conn}"
        if rule.constraints:
            text += ", if " + " and ".join(c.condition() for c in rule.constraints)
    if rule.rate_limit_per_minute:
        text += f", at most {rule.rate_limit_per_minute} calls per minute per token"
    if rule.approval_required:
        text += f" {describe_approval(rule)}"
    if rule.schedule is not None:
        text += f", only {rule.schedule.describe()}"
    if rule.quota is not None:
        text += f", {rule.quota.describe()}"
    return text


def _tools_words(rule: RuleSpec) -> str:
    cls = {"read": "read-only ", "write": "non-read-only "}.get(rule.action_class, "")
    if rule.action_pattern == "*":
        return f"all {cls}tools"
    if any(ch in rule.action_pattern for ch in "*?"):
        return f"{cls}tools matching '{rule.action_pattern}'"
    return f"{cls}tool '{rule.action_pattern}'"


def describe_approval(rule: RuleSpec) -> str:
    """E.g. "after approval by an admin (request valid for 1 h)"."""
    who = " or ".join(rule.approver_labels) if rule.approver_labels else "an admin"
    return f"after approval by {who} (request valid for {_duration(rule.approval_expires_in)})"


def _duration(seconds: int) -> str:
    if seconds % 86400 == 0:
        return f"{seconds // 86400} d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def _conn_label(call: Call) -> str:
    if call.connection_name:
        return f"connection '{call.connection_name}'"
    if call.connection_id is not None:
        return f"connection #{call.connection_id}"
    return "an unspecified connection"


def _freeze(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    return value


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value) if isinstance(value, str) else _json_text(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json_text(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, int | float):
        return repr(value)
    return type(value).__name__


def _join(values: Any) -> str:
    if not isinstance(values, tuple):
        return _show(values)
    return ", ".join(v if isinstance(v, str) else _show(v) for v in values)
