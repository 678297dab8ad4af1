"""Reads of roles and rules for the hot path and the agent's action list.

`role_rules(role_id)` runs on every broker request. Its result is cached in
the shared cache under a per-role version token; every service that changes a
role or its rules replaces the token after commit (`bump_role_version`), so
every process sees the change on its next request. A missing token (evicted
or never set) is replaced by a fresh random one, never reused, so a stale
entry cannot come back.

Each process also keeps the rules it loaded, keyed by that version token (and
for no longer than the shared entry lives), so the usual call is one cache
read (the version) and no unpickling; a bumped token misses locally too."""

from __future__ import annotations

import time
import uuid
from typing import Any

from django.core.cache import cache

from apps.policies.evaluate import RuleSpec, action_matches, connection_matches
from apps.policies.models import Rule

RULES_TTL_SECONDS = 300
LOCAL_MAX_ROLES = 10_000

# role id -> (version token, rules, monotonic expiry); per process, shared by threads.
_local: dict[int, tuple[str, tuple[RuleSpec, ...], float]] = {}


def _version_key(role_id: int) -> str:
    return f"policies:role-version:{role_id}"


def _role_version(role_id: int) -> str:
    key = _version_key(role_id)
    version = cache.get(key)
    if version is None:
        cache.add(key, uuid.uuid4().hex, timeout=None)
        version = cache.get(key)
    return str(version)


def bump_role_version(role_id: int) -> None:
    cache.set(_version_key(role_id), uuid.uuid4().hex, timeout=None)


def load_role_rules(role_id: int) -> list[RuleSpec]:
    """The role's rules straight from the database (one query)."""
    return [
        rule.to_spec()
        for rule in Rule.objects.filter(role_id=role_id)
        .select_related("connection")
        .order_by("position", "id")
    ]


def role_rules(role_id: int) -> list[RuleSpec]:
    """The role's rules in evaluation order: one cache read when this process has the
    current version, two on a local miss, one query on a shared miss."""
    version = _role_version(role_id)
    now = time.monotonic()
    local = _local.get(role_id)
    if local is not None and local[0] == version and local[2] > now:
        return list(local[1])
    key = f"policies:role-rules:{role_id}:{version}"
    cached = cache.get(key)
    if cached is None:
        cached = tuple(load_role_rules(role_id))
        cache.set(key, cached, timeout=RULES_TTL_SECONDS)
    if len(_local) >= LOCAL_MAX_ROLES:
        _local.clear()
    _local[role_id] = (version, tuple(cached), now + RULES_TTL_SECONDS)
    return list(cached)


def allowed_actions(role: Any, organization: Any) -> list[tuple[Any, list[Any]]]:
    """The actions this role may call, each with the usable connections it may use.

    Constraints are not considered here (they depend on the input): an action
    is listed when some rule could allow it. Actions with no usable connection
    are left out, since they cannot be called."""
    from apps.connections.models import Connection
    from apps.providers.registry import all_actions

    role_id = role if isinstance(role, int) else role.pk
    rules = [r for r in role_rules(role_id) if r.kind == "action"]
    if not rules:
        return []
    connections = list(Connection.objects.for_organization(organization).usable())
    result = []
    for action in all_actions(organization=organization):
        matching = [r for r in rules if action_matches(r, action.name, str(action.action_class))]
        if not matching:
            continue
        usable = [
            c
            for c in connections
            if c.provider_key == action.provider_key
            and any(connection_matches(r, c.pk) for r in matching)
        ]
        if usable:
            result.append((action, usable))
    return result


def allowed_proxy_rules(role: Any) -> list[RuleSpec]:
    role_id = role if isinstance(role, int) else role.pk
    return [r for r in role_rules(role_id) if r.kind == "proxy"]
