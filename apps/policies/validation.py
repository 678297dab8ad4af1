"""Validation of rules against the catalog and the organization's connections.

`clean_rules(organization=…, rules=[…])` takes plain dicts (from a form, the
API or a seed) and returns normalised dicts ready to save, or raises one
`ValidationError` whose keys name each problem: "rules.0.action_pattern",
"rules.2.constraints.1.value", … Nothing is saved by this module."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError

from apps.connections.mcp_models import McpToolState
from apps.connections.models import MCP_PROVIDER_KEY, ON_BEHALF_OF, Connection, McpTool
from apps.organizations.models import Membership
from apps.policies.evaluate import (
    CONSTRAINT_OPS,
    DEFAULT_APPROVAL_EXPIRES_IN,
    HTTP_METHODS,
    glob_match,
    path_glob_problem,
)
from apps.policies.models import RuleActionClass, RuleKind
from apps.policies.windows import ScheduleError, quota_from, schedule_from
from apps.providers.registry import (
    UnknownAction,
    UnknownProvider,
    all_actions,
    get_action,
    get_provider,
)

MAX_RATE_LIMIT = 100_000
# Bounds that keep evaluation cheap on the hot path and pages readable.
MAX_RULES = 200
MAX_CONSTRAINTS = 20
MAX_VALUE_CHARS = 500
MAX_ONE_OF = 100
MAX_PK = 2**63 - 1
MAX_CONNECTION_NAME = 60  # Connection.name's max_length: a rule names its connection by id or name
RULE_FIELDS = (
    "kind",
    "provider_key",
    "action_pattern",
    "action_class",
    "connection",
    "methods",
    "path_glob",
    "constraints",
    "rate_limit_per_minute",
    "approval",
    "schedule",
    "quota",
)
# How long an approval request may live (seconds): from one minute to a week.
MIN_APPROVAL_EXPIRES_IN = 60
MAX_APPROVAL_EXPIRES_IN = 7 * 24 * 3600
MAX_APPROVERS = 20
# An MCP rule's tool pattern: a tool name (the characters MCP allows in one) with globs.
TOOL_PATTERN = re.compile(r"^[A-Za-z0-9_.\-/*?]{1,128}$")


class Errors:
    def __init__(self) -> None:
        self.by_key: dict[str, list[str]] = {}

    def add(self, key: str, message: str) -> None:
        self.by_key.setdefault(key, []).append(message)

    def raise_if_any(self) -> None:
        if self.by_key:
            raise ValidationError(self.by_key)


def matching_actions(
    *, provider_key: str, action_pattern: str, action_class: str, organization: Any
) -> list[Any]:
    """The catalog actions a rule's pattern covers (empty for an unknown name)."""

    if action_pattern == f"{provider_key}.*":
        actions = [
            a for a in all_actions(organization=organization) if a.provider_key == provider_key
        ]
    else:
        try:
            actions = [get_action(action_pattern, organization=organization)]
        except UnknownAction:
            return []
    return [a for a in actions if not action_class or str(a.action_class) == action_class]


def clean_rules(*, organization: Any, rules: Sequence[Any]) -> list[dict[str, Any]]:
    errors = Errors()
    if not isinstance(rules, list | tuple):
        errors.add("rules", "Rules must be a list.")
        errors.raise_if_any()
    if len(rules) > MAX_RULES:
        errors.add("rules", f"A role can have at most {MAX_RULES} rules.")
        errors.raise_if_any()
    cleaned = [_clean_rule(organization, raw, f"rules.{i}", errors) for i, raw in enumerate(rules)]
    errors.raise_if_any()
    return cleaned


def _whole_number(value: Any) -> int | None:
    """An int from an int or an ASCII digit string; None for anything else (bools too)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return None


def _clean_rule(organization: Any, raw: Any, at: str, errors: Errors) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        errors.add(at, "Each rule must be an object.")
        return {}
    unknown = sorted(set(raw) - set(RULE_FIELDS) - {"id", "position", "connection_name"})
    if unknown:
        errors.add(at, f"Unknown rule fields: {', '.join(unknown)}.")
    kind = raw.get("kind") or RuleKind.ACTION
    if kind not in RuleKind.values:
        errors.add(f"{at}.kind", "Kind must be 'action', 'proxy' or 'mcp'.")
        return {}
    rule: dict[str, Any] = {
        "kind": kind,
        "provider_key": "",
        "action_pattern": "",
        "action_class": "",
        "connection": None,
        "on_behalf_of": False,
        "methods": [],
        "path_glob": "",
        "constraints": [],
        "rate_limit_per_minute": None,
        "approval": {},
        "schedule": None,
        "quota": None,
    }

    provider_ok = _clean_provider(organization, raw, rule, at, errors)
    if raw.get("connection") == ON_BEHALF_OF:
        # The personal connection of the member the worker acts for: no connection row.
        if kind != RuleKind.ACTION:
            errors.add(
                f"{at}.connection",
                "Only an action rule can use 'on_behalf_of' (the personal connection of the "
                "member the worker acts for).",
            )
        rule["on_behalf_of"] = True
    elif raw.get("connection") not in (None, ""):
        rule["connection"] = _clean_connection(
            organization, raw["connection"], rule, provider_ok, at, errors
        )
    _clean_rate_limit(raw, rule, at, errors)
    rule["approval"] = _clean_approval(organization, raw.get("approval"), at, errors)
    _clean_windows(raw, rule, at, errors)

    if kind == RuleKind.PROXY:
        _clean_proxy(raw, rule, at, errors)
    elif kind == RuleKind.MCP:
        _clean_mcp(raw, rule, at, errors)
    elif provider_ok:
        _clean_action(organization, raw, rule, at, errors)
    return rule


def _clean_rate_limit(
    raw: Mapping[str, Any], rule: dict[str, Any], at: str, errors: Errors
) -> None:
    rate = raw.get("rate_limit_per_minute")
    if rate not in (None, ""):
        rate = _whole_number(rate)
        if rate is None or not 1 <= rate <= MAX_RATE_LIMIT:
            errors.add(
                f"{at}.rate_limit_per_minute",
                f"A rate limit is a whole number from 1 to {MAX_RATE_LIMIT}.",
            )
        else:
            rule["rate_limit_per_minute"] = rate


def _clean_windows(raw: Mapping[str, Any], rule: dict[str, Any], at: str, errors: Errors) -> None:
    """The schedule and the quota, each optional."""
    for name, parse in (("schedule", schedule_from), ("quota", quota_from)):
        value = raw.get(name)
        if value in (None, "", {}):
            continue
        try:
            rule[name] = parse(value).as_document()
        except ScheduleError as exc:
            errors.add(f"{at}.{name}", str(exc))


def _clean_provider(
    organization: Any, raw: Mapping[str, Any], rule: dict[str, Any], at: str, errors: Errors
) -> bool:
    """Fill `rule["provider_key"]`; True when it names a provider of the catalog (an MCP
    rule's is always 'mcp', which is not one)."""
    provider_key = raw.get("provider_key")
    if rule["kind"] == RuleKind.MCP:
        if provider_key not in (None, "", MCP_PROVIDER_KEY):
            errors.add(f"{at}.provider_key", "An MCP rule's provider is 'mcp' (or leave it out).")
        rule["provider_key"] = MCP_PROVIDER_KEY
        return False
    if not isinstance(provider_key, str) or not provider_key:
        errors.add(f"{at}.provider_key", "Pick a provider.")
        return False
    rule["provider_key"] = provider_key
    try:
        get_provider(provider_key, organization=organization)
    except UnknownProvider:
        errors.add(f"{at}.provider_key", f"Unknown provider '{provider_key}'.")
        return False
    return True


def _clean_connection(
    organization: Any, value: Any, rule: dict[str, Any], provider_ok: bool, at: str, errors: Errors
) -> Any:
    """The organization's connection `value` names (by id or by name), if it fits the
    rule's provider; else None with the reason in `errors`."""
    conn = None
    pk = _whole_number(value)
    rows = Connection.objects.for_organization(organization)
    if pk is not None and 0 < pk <= MAX_PK:
        conn = rows.filter(pk=pk).first()
    elif pk is None and isinstance(value, str) and len(value) <= MAX_CONNECTION_NAME:
        conn = rows.filter(name=value).first()  # by name, as the rules editor shows it
    provider_key = rule["provider_key"]
    if conn is None or conn.owner_id is not None:
        # A member's personal connection is never named by a rule (only reached through
        # `on_behalf_of`); it is "no such connection" as for any name the rule may not use.
        errors.add(f"{at}.connection", "No such connection in this organization.")
    elif rule["kind"] == RuleKind.MCP and conn.provider_key != MCP_PROVIDER_KEY:
        errors.add(f"{at}.connection", f"Connection '{conn.name}' is not an MCP server.")
    elif provider_ok and conn.provider_key != provider_key:
        errors.add(
            f"{at}.connection",
            f"Connection '{conn.name}' is a {conn.provider_key} connection, not {provider_key}.",
        )
    else:
        return conn
    return None


@dataclass(frozen=True)
class _ToolShape:
    """A tool of an MCP connection as constraints see it (an action's name and schema)."""

    name: str
    input_schema: dict[str, Any]


def _clean_mcp(raw: Mapping[str, Any], rule: dict[str, Any], at: str, errors: Errors) -> None:
    """Tools of one MCP connection: a tool name or a glob (`*`, `get_*`), optionally only
    its read-only tools; constraints on the input fields of the tools it matches."""
    for name in ("methods", "path_glob"):
        if raw.get(name):
            errors.add(f"{at}.{name}", "Only proxy rules have methods and a path glob.")
    connection = rule["connection"]
    if connection is None:
        if f"{at}.connection" not in errors.by_key:
            errors.add(f"{at}.connection", "An MCP rule names one MCP connection.")
        return
    action_class = raw.get("action_class") or ""
    if action_class not in RuleActionClass.values:
        errors.add(f"{at}.action_class", "Tool class must be '', 'read' or 'write'.")
        return
    rule["action_class"] = action_class
    pattern = raw.get("action_pattern")
    if not isinstance(pattern, str) or not TOOL_PATTERN.match(pattern):
        errors.add(
            f"{at}.action_pattern",
            "Name a tool, or a glob of tool names such as 'get_*' ('*' for all tools): "
            "letters, digits, _ - . / * ?, at most 128 characters.",
        )
        return
    rule["action_pattern"] = pattern
    tools = [
        t
        for t in McpTool.objects.filter(connection=connection).exclude(state=McpToolState.REMOVED)
        if glob_match(pattern, t.name)
        and (not action_class or (action_class == "read") == _read_only(t))
    ]
    if not tools and pattern != "*":
        listed = ", ".join(
            sorted(McpTool.objects.filter(connection=connection).values_list("name", flat=True))[
                :20
            ]
        )
        errors.add(
            f"{at}.action_pattern",
            f"No tool of '{connection.name}' matches '{pattern}'"
            + (f" (its tools: {listed})." if listed else " (it lists no tools yet)."),
        )
        return
    shapes = [
        _ToolShape(t.name, dict((t.approved_definition or t.definition).get("inputSchema") or {}))
        for t in tools
    ]
    rule["constraints"] = _clean_constraints(raw.get("constraints"), shapes, at, errors)


def _read_only(tool: McpTool) -> bool:
    annotations = (tool.approved_definition or tool.definition).get("annotations") or {}
    return bool(annotations.get("readOnlyHint"))


def _clean_proxy(raw: Mapping[str, Any], rule: dict[str, Any], at: str, errors: Errors) -> None:
    for name in ("action_pattern", "action_class", "constraints"):
        if raw.get(name):
            errors.add(f"{at}.{name}", "Proxy rules have no actions or constraints.")
    if rule["connection"] is None and f"{at}.connection" not in errors.by_key:
        errors.add(f"{at}.connection", "A proxy rule needs one connection.")
    methods = raw.get("methods")
    if not isinstance(methods, list | tuple) or not methods:
        errors.add(f"{at}.methods", "Pick at least one HTTP method.")
    else:
        upper = [m.upper() if isinstance(m, str) else m for m in methods]
        bad = [str(m) for m in upper if m not in HTTP_METHODS]
        if bad:
            errors.add(
                f"{at}.methods",
                f"Unknown HTTP method(s): {', '.join(bad)}. Use {', '.join(HTTP_METHODS)}.",
            )
        else:
            rule["methods"] = [m for m in HTTP_METHODS if m in upper]
    glob = raw.get("path_glob")
    if not isinstance(glob, str) or not glob:
        problem: str | None = "Enter a path glob."
    elif len(glob) > 300:
        problem = "A path glob is limited to 300 characters."
    else:
        problem = path_glob_problem(glob)
    if problem:
        errors.add(f"{at}.path_glob", problem)
    else:
        rule["path_glob"] = glob


def _clean_action(
    organization: Any, raw: Mapping[str, Any], rule: dict[str, Any], at: str, errors: Errors
) -> None:
    provider_key = rule["provider_key"]
    for name in ("methods", "path_glob"):
        if raw.get(name):
            errors.add(f"{at}.{name}", "Only proxy rules have methods and a path glob.")
    action_class = raw.get("action_class") or ""
    if action_class not in RuleActionClass.values:
        errors.add(f"{at}.action_class", "Action class must be '', 'read' or 'write'.")
        return
    rule["action_class"] = action_class
    pattern = raw.get("action_pattern")
    if not isinstance(pattern, str) or not pattern:
        errors.add(f"{at}.action_pattern", "Pick an action or all actions of the provider.")
        return
    if not pattern.startswith(f"{provider_key}."):
        errors.add(f"{at}.action_pattern", f"'{pattern}' is not an action of {provider_key}.")
        return
    if "*" in pattern and pattern != f"{provider_key}.*":
        errors.add(
            f"{at}.action_pattern", f"Use an exact action name or '{provider_key}.*' (all actions)."
        )
        return
    rule["action_pattern"] = pattern
    actions = matching_actions(
        provider_key=provider_key,
        action_pattern=pattern,
        action_class=action_class,
        organization=organization,
    )
    if not actions:
        if pattern.endswith(".*"):
            what = f"{action_class} actions" if action_class else "actions"
            errors.add(f"{at}.action_pattern", f"{provider_key} has no {what}.")
        elif matching_actions(
            provider_key=provider_key,
            action_pattern=pattern,
            action_class="",
            organization=organization,
        ):
            errors.add(
                f"{at}.action_class",
                f"'{pattern}' is not a {action_class} action; the rule would never match.",
            )
        else:
            errors.add(f"{at}.action_pattern", f"Unknown action '{pattern}'.")
        return
    rule["constraints"] = _clean_constraints(raw.get("constraints"), actions, at, errors)


def _clean_constraints(
    raw: Any, actions: list[Any], at: str, errors: Errors
) -> list[dict[str, Any]]:
    if raw in (None, ""):
        return []
    if not isinstance(raw, list | tuple):
        errors.add(f"{at}.constraints", "Constraints must be a list.")
        return []
    if len(raw) > MAX_CONSTRAINTS:
        errors.add(f"{at}.constraints", f"A rule can have at most {MAX_CONSTRAINTS} constraints.")
        return []
    known: set[str] = set()
    for action in actions:
        known |= set((action.input_schema or {}).get("properties", {}))
    cleaned = []
    for i, item in enumerate(raw):
        constraint = _clean_constraint(item, known, actions, f"{at}.constraints.{i}", errors)
        if constraint is not None:
            cleaned.append(constraint)
    return cleaned


def _clean_constraint(
    item: Any, known: set[str], actions: list[Any], key: str, errors: Errors
) -> dict[str, Any] | None:
    """One constraint on an input field the matched actions have, or None (with why)."""
    if not isinstance(item, Mapping):
        errors.add(key, "Each constraint must be an object with field, op and value.")
        return None
    extra = sorted(set(item) - {"field", "op", "value"})
    if extra:
        errors.add(key, f"Unknown constraint keys: {', '.join(extra)}.")
    name, op, value = item.get("field"), item.get("op"), item.get("value")
    if not isinstance(name, str) or not name:
        errors.add(f"{key}.field", "Name the input field.")
    elif name not in known:
        where = actions[0].name if len(actions) == 1 else "any of the matched actions"
        errors.add(
            f"{key}.field",
            f"'{name}' is not an input field of {where}. "
            f"Fields: {', '.join(sorted(known)) or 'none'}.",
        )
    if op not in CONSTRAINT_OPS:
        errors.add(f"{key}.op", f"Operator must be one of {', '.join(CONSTRAINT_OPS)}.")
        return None
    problem = _value_problem(op, value)
    if problem:
        errors.add(f"{key}.value", problem)
        return None
    return {"field": name, "op": op, "value": value}


def _is_scalar(value: Any) -> bool:
    if isinstance(value, bool | str):
        return True
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _value_problem(op: str, value: Any) -> str | None:
    texts = value if isinstance(value, list) else [value]
    if any(isinstance(t, str) and len(t) > MAX_VALUE_CHARS for t in texts):
        return f"Values are limited to {MAX_VALUE_CHARS} characters."
    if isinstance(value, list) and len(value) > MAX_ONE_OF:
        return f"'one of' takes at most {MAX_ONE_OF} values."
    if op == "max":
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (isinstance(value, float) and not math.isfinite(value))
        ):
            return "'max' needs a number."
    elif op == "one_of":
        if not isinstance(value, list) or not value or not all(_is_scalar(v) for v in value):
            return "'one of' needs a non-empty list of strings, numbers or booleans."
    elif op in ("glob", "prefix"):
        if not isinstance(value, str) or not value:
            return f"'{op}' needs a non-empty string."
    elif op == "equals" and not _is_scalar(value):
        return "'equals' needs a string, number or boolean."
    return None


def _clean_approval(organization: Any, raw: Any, at: str, errors: Errors) -> dict[str, Any]:
    """{} for a plain rule, else {"required": True, "expires_in": s, "approvers": [...]}.

    Accepts "required" (or true) as a shorthand. Named approvers are members of the
    organization, given by email or user id; they replace the default (admins and
    owners). An approval setting only ever narrows a rule: it has no field that
    could widen what the rule matches."""
    key = f"{at}.approval"
    if raw in (None, "", False, {}, "none"):
        return {}
    if raw is True or raw == "required":
        raw = {"required": True}
    if not isinstance(raw, Mapping):
        errors.add(
            key, "Approval is 'required', or an object with required, expires_in, approvers."
        )
        return {}
    extra = sorted(set(raw) - {"required", "expires_in", "approvers"})
    if extra:
        errors.add(key, f"Unknown approval keys: {', '.join(extra)}.")
    required = raw.get("required", True)
    if not isinstance(required, bool):
        errors.add(f"{key}.required", "'required' is true or false.")
        return {}
    if not required:
        if raw.get("approvers") or raw.get("expires_in"):
            errors.add(key, "Approvers and expiry only apply when approval is required.")
        return {}
    expires_in = raw.get("expires_in")
    if expires_in in (None, ""):
        seconds = DEFAULT_APPROVAL_EXPIRES_IN
    else:
        number = _whole_number(expires_in)
        if number is None or not MIN_APPROVAL_EXPIRES_IN <= number <= MAX_APPROVAL_EXPIRES_IN:
            errors.add(
                f"{key}.expires_in",
                f"Expiry is a whole number of seconds from {MIN_APPROVAL_EXPIRES_IN} "
                f"to {MAX_APPROVAL_EXPIRES_IN} (7 days).",
            )
            return {}
        seconds = number
    return {
        "required": True,
        "expires_in": seconds,
        "approvers": _clean_approvers(organization, raw.get("approvers"), key, errors),
    }


def _clean_approvers(organization: Any, raw: Any, key: str, errors: Errors) -> list[dict[str, Any]]:
    if raw in (None, "", []):
        return []
    if not isinstance(raw, list | tuple):
        errors.add(f"{key}.approvers", "Approvers must be a list of member emails.")
        return []
    if len(raw) > MAX_APPROVERS:
        errors.add(f"{key}.approvers", f"Name at most {MAX_APPROVERS} approvers.")
        return []
    members = Membership.objects.filter(organization=organization).select_related("user")
    by_email = {m.user.email.lower(): m.user for m in members if m.user.email}
    by_id = {m.user.pk: m.user for m in members}
    found: dict[int, dict[str, Any]] = {}
    for i, item in enumerate(raw):
        ref = item.get("email") or item.get("id") if isinstance(item, Mapping) else item
        user = None
        if isinstance(ref, str) and "@" in ref:
            user = by_email.get(ref.strip().lower())
        else:
            pk = _whole_number(ref)
            user = by_id.get(pk) if pk is not None else None
        if user is None:
            errors.add(f"{key}.approvers.{i}", "Not a member of this organization.")
            continue
        found[user.pk] = {"id": user.pk, "email": user.email}
    return list(found.values())
