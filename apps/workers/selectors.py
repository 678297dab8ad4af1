"""Reads of workers and tokens that are more than one line."""

from __future__ import annotations

from typing import Any

from apps.policies.selectors import allowed_actions, allowed_proxy_rules


def role_allowances(*, role_id: int, organization: Any) -> dict[str, list[dict[str, Any]]]:
    """What a role allows: the catalog actions (with the connections each may use)
    and the proxy rules. Built on apps.policies' cached `role_rules()`."""
    actions = [
        {
            "name": action.name,
            "class": str(action.action_class),
            "description": action.description,
            "connections": [connection.name for connection in connections],
        }
        for action, connections in allowed_actions(role_id, organization)
    ]
    proxy = [
        {
            "rule_id": rule.rule_id,
            "provider": rule.provider_key,
            "connection": rule.connection_name or None,
            "methods": list(rule.methods),
            "path_glob": rule.path_glob,
            "rate_limit_per_minute": rule.rate_limit_per_minute,
        }
        for rule in allowed_proxy_rules(role_id)
    ]
    return {"actions": actions, "proxy": proxy}
