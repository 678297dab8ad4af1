"""Reads of workers and tokens that are more than one line."""

from __future__ import annotations

from typing import Any

from apps.policies.models import Rule, RuleKind


def role_allowances(*, role_id: int) -> dict[str, list[dict[str, Any]]]:
    """What a role allows, rule by rule: catalog actions and proxy calls.

    Built from the `Rule` rows directly (apps.policies offers no listing helper
    yet); deny-by-default means this list is the whole truth."""
    actions: list[dict[str, Any]] = []
    proxy: list[dict[str, Any]] = []
    for rule in Rule.objects.filter(role_id=role_id).select_related("connection"):
        connection = rule.connection.name if rule.connection_id else None
        if rule.kind == RuleKind.PROXY:
            proxy.append({
                "rule_id": rule.pk,
                "provider": rule.provider_key,
                "connection": connection,
                "methods": list(rule.methods),
                "path_glob": rule.path_glob,
                "rate_limit_per_minute": rule.rate_limit_per_minute,
            })
        else:
            actions.append({
                "rule_id": rule.pk,
                "provider": rule.provider_key,
                "pattern": rule.action_pattern,
                "class": rule.action_class or None,
                "connection": connection,
                "constraints": rule.constraints,
                "rate_limit_per_minute": rule.rate_limit_per_minute,
            })
    return {"actions": actions, "proxy": proxy}
