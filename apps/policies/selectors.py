"""Reads of roles and rules for the hot path and the agent's action list.

`role_rules(role_id, version)` runs on every broker request. Each process
keeps the rules it loaded, keyed by the role's `rules_version`; every service
that changes a role's rules raises that number in the same transaction
(`bump_rules_version`). The broker passes the version it read together with
the token (one statement, no cache involved), so a rule change is seen by
every process on the very next call, and the usual call costs no query and no
cache round trip at all. Callers without a version read it first (one query).
Entries also expire after LOCAL_TTL_SECONDS, a safety net for changes made by a
release that did not know about the version (a rolling deploy).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import yaml
from django.db.models import F

from apps.connections.models import MCP_PROVIDER_KEY, ON_BEHALF_OF, Connection, McpTool
from apps.core.ports import Port
from apps.policies.evaluate import (
    MCP,
    Call,
    Decision,
    RuleSpec,
    action_matches,
    connection_matches,
    describe_rule,
    evaluate,
    mcp_tool_matches,
)
from apps.policies.models import Role, Rule
from apps.providers.registry import all_actions, validate_input

LOCAL_MAX_ROLES = 10_000
# A safety net, not the mechanism: an entry is also dropped after this long, so a rule
# change that did not raise the version (an older release still serving during a
# rolling deploy) is picked up within minutes.
LOCAL_TTL_SECONDS = 300

# role id -> (rules_version, rules, monotonic expiry); per process, shared by threads.
_local: dict[int, tuple[int, tuple[RuleSpec, ...], float]] = {}
_local_lock = threading.Lock()


def bump_rules_version(role_id: int) -> None:
    """Call inside the transaction that changes the role's rules."""
    Role.objects.filter(pk=role_id).update(rules_version=F("rules_version") + 1)


def load_role_rules(role_id: int) -> list[RuleSpec]:
    """The role's rules straight from the database (one query)."""
    return [
        rule.to_spec()
        for rule in Rule.objects.filter(role_id=role_id)
        .select_related("connection")
        .order_by("position", "id")
    ]


def role_dry_run(*, role: Role, cleaned: dict[str, Any]) -> tuple[Decision, list[Any]]:
    """“Test a call”: what `role` would decide for the call a valid DryRunForm
    describes, and the input errors the broker would refuse it with first.
    Reads only; nothing is sent anywhere. The dashboard and the API share it."""

    conn = cleaned["connection_obj"]
    input_errors: list[Any] = []
    if cleaned["kind"] == "proxy":
        call = Call.for_proxy(
            provider_key=conn.provider_key,
            method=cleaned["method"],
            path=cleaned["path"],
            connection_id=conn.pk,
            connection_name=conn.name,
            role_name=role.name,
        )
    else:
        action = cleaned["action_obj"]
        call = Call.for_action(
            action_name=action.name,
            action_class=str(action.action_class),
            connection_id=conn.pk if conn else None,
            connection_name=conn.name if conn else "",
            input=cleaned["input_value"],
            role_name=role.name,
        )
        input_errors = list(validate_input(action, cleaned["input_value"]))
    return evaluate(load_role_rules(role.pk), call), input_errors


def role_rules(role_id: int, version: int | None = None) -> list[RuleSpec]:
    """The role's rules in evaluation order, as of `version` (read here when not given).

    No query when this process already holds that version; one on a miss."""
    if version is None:
        version = Role.objects.filter(pk=role_id).values_list("rules_version", flat=True).first()
        if version is None:  # no such role: no rules
            return []
    local = _local.get(role_id)
    if local is not None and local[0] == version and local[2] > time.monotonic():
        return list(local[1])
    # Loaded after `version` was read, so these rules are at least that new: an entry
    # never holds rules older than its version (a racing thread may store an older
    # version's entry last; that only costs the next call a reload).
    rules = tuple(load_role_rules(role_id))
    with _local_lock:
        if len(_local) >= LOCAL_MAX_ROLES:
            _local.clear()
        _local[role_id] = (version, rules, time.monotonic() + LOCAL_TTL_SECONDS)
    return list(rules)


def allowed_actions(
    role: Any, organization: Any, *, version: int | None = None, acting_for: int | None = None
) -> list[tuple[Any, list[Any]]]:
    """The actions this role may call, each with the usable connections it may use.

    Constraints are not considered here (they depend on the input): an action
    is listed when some rule could allow it. Actions with no usable connection
    are left out, since they cannot be called. `acting_for`: the member the worker acts
    for, whose personal connections `on_behalf_of` rules reach (no one else's ever)."""

    role_id = role if isinstance(role, int) else role.pk
    rules = [r for r in role_rules(role_id, version) if r.kind == "action"]
    if not rules:
        return []
    rows = Connection.objects.for_organization(organization).usable()
    connections = list(
        rows.shared() if acting_for is None else rows.visible_to(user=acting_for, sees_all=False)
    )
    result = []
    for action in all_actions(organization=organization):
        matching = [r for r in rules if action_matches(r, action.name, str(action.action_class))]
        if not matching:
            continue
        usable = [
            c
            for c in connections
            if c.provider_key == action.provider_key
            and any(connection_matches(r, c.pk, c.owner_id is not None) for r in matching)
        ]
        if usable:
            result.append((action, usable))
    return result


def allowed_mcp_tools(
    role_id: int, organization_id: int, *, version: int | None = None
) -> list[tuple[Any, Any]]:
    """(connection, McpTool) pairs of the tools this role may call on upstream MCP
    servers: pinned (approved, unchanged), of an active connection a rule names, and
    covered by that rule (constraints aside, as for actions). Two queries; the
    connections' secrets are not loaded."""
    rules = [r for r in role_rules(role_id, version) if r.kind == MCP]
    if not rules:
        return []
    ids = {r.connection_id for r in rules if r.connection_id is not None}
    connections = {
        c.pk: c
        for c in Connection.objects.for_organization(organization_id)
        .usable()
        .filter(pk__in=ids, provider_key=MCP_PROVIDER_KEY)
        .only("id", "name", "status", "organization_id")
    }
    tools = McpTool.objects.for_organization(organization_id).approved()
    result = []
    for tool in tools.filter(connection_id__in=list(connections)).order_by("connection_id", "name"):
        tool_class = "read" if tool.read_only else "write"
        if tool.is_callable() and any(
            mcp_tool_matches(r, tool.name, tool_class) and connection_matches(r, tool.connection_id)
            for r in rules
        ):
            result.append((connections[tool.connection_id], tool))
    return result


def allowed_proxy_rules(role: Any) -> list[RuleSpec]:
    role_id = role if isinstance(role, int) else role.pk
    return [r for r in role_rules(role_id) if r.kind == "proxy"]


# The workers a role governs is the workers' question (a layer above); apps.workers plugs
# its answer in when it is ready. For confirmations ("these workers lose …").
role_users: Port[[Any], list[str]] = Port(
    "role_users", answered_by="apps.workers.selectors.role_users"
)


def role_delete_blockers(role: Any) -> list[str]:
    """Why deleting `role` would be refused, in words ("2 workers use it as their default
    role: a, b"), or [] when it can be deleted. Asks Django's deletion collector, so every
    protected reference counts (a revoked token still names its role)."""
    from collections import defaultdict

    from django.db import router
    from django.db.models.deletion import Collector, ProtectedError, RestrictedError

    collector = Collector(using=router.db_for_write(type(role)))
    try:
        collector.collect([role])
    except (ProtectedError, RestrictedError) as refused:
        found = (
            refused.protected_objects
            if isinstance(refused, ProtectedError)
            else refused.restricted_objects
        )
        by_kind: dict[tuple[str, str], list[str]] = defaultdict(list)
        for obj in found:
            meta = obj._meta
            by_kind[(str(meta.verbose_name), str(meta.verbose_name_plural))].append(
                str(getattr(obj, "name", "") or "")
            )
        reasons = []
        for (one, many), names in sorted(by_kind.items()):
            named = [n for n in names if n][:5]
            kind = one if len(names) == 1 else many
            reasons.append(f"{len(names)} {kind}" + (f" ({', '.join(named)})" if named else ""))
        return reasons
    return []


# --- Roles and rules as plain data ---------------------------------------------


def rule_document(rule: Rule) -> dict[str, Any]:
    """A rule as plain data: API responses, the YAML/JSON view and audit diffs."""
    doc: dict[str, Any] = {"id": rule.pk, "kind": rule.kind, "provider_key": rule.provider_key}
    if rule.kind == "proxy":
        doc.update(methods=list(rule.methods), path_glob=rule.path_glob)
    else:
        doc.update(
            action_pattern=rule.action_pattern,
            action_class=rule.action_class,
            constraints=list(rule.constraints),
        )
    doc.update(
        # `connection: on_behalf_of`: the personal connection of the member the worker
        # acts for (validation.py reads the same word back).
        connection=ON_BEHALF_OF if rule.on_behalf_of else rule.connection_id,
        connection_name=rule.connection.name if rule.connection is not None else None,
        rate_limit_per_minute=rule.rate_limit_per_minute,
        approval=approval_document(rule.approval),
        schedule=rule.schedule,
        quota=rule.quota,
    )
    return doc


def approval_document(approval: dict[str, Any] | None) -> dict[str, Any] | None:
    """A rule's approval setting as the API and the YAML/JSON view show it (None: plain)."""
    if not approval or not approval.get("required"):
        return None
    return {
        "required": True,
        "expires_in": approval.get("expires_in"),
        "approvers": [a.get("email") for a in approval.get("approvers") or []],
    }


def role_document(role: Role) -> dict[str, Any]:
    rules = role.rules.select_related("connection").order_by("position", "id")
    return {
        "id": role.pk,
        "name": role.name,
        "description": role.description,
        "created_at": role.created_at.isoformat() if role.created_at else None,
        "updated_at": role.updated_at.isoformat() if role.updated_at else None,
        "rules": [rule_document(r) for r in rules],
    }


def editable_rules_yaml(role: Role) -> str:
    """The role's rules as the simulation page's editor shows them: each rule under a
    comment saying what it allows ("Rule #12 allows …", the role page's words), its
    connection by name rather than by internal id, and only the settings it has.
    `rules_from_document()` reads it back (a connection by id or by name)."""
    rules = list(role.rules.select_related("connection").order_by("position", "id"))
    if not rules:
        return "[]\n"
    parts = []
    for rule in rules:
        doc = rule_document(rule)
        del doc["id"], doc["connection_name"]  # the number is in the comment
        if rule.connection is not None:
            doc["connection"] = rule.connection.name
        for name in ("connection", "rate_limit_per_minute", "approval", "schedule", "quota"):
            if doc[name] in (None, {}, []):
                doc.pop(name)
        if doc.get("constraints") == []:
            doc.pop("constraints")
        words = describe_rule(rule.to_spec()).replace("\n", " ")
        body = yaml.safe_dump([doc], sort_keys=False, allow_unicode=True)
        parts.append(f"# Rule #{rule.pk} allows {words}.\n{body}")
    return "\n".join(parts)


def role_ids_named(name: str, organization: Any = None) -> list[int]:
    """Ids of the roles called `name` (of `organization` when given): the audit filter's
    name lookup (apps.audit.filters.IDS_NAMED)."""
    rows = Role.objects.filter(name=name)
    if organization is not None:
        rows = rows.for_organization(organization)
    return list(rows.values_list("pk", flat=True)[:50])
