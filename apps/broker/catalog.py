"""What a token may call: the agent's action list and the MCP tool list share it; the
MCP tool list adds the pinned tools of upstream MCP servers."""

from __future__ import annotations

from typing import Any

from apps.policies.selectors import allowed_actions, allowed_mcp_tools


def allowed_for(ctx: Any) -> list[tuple[Any, list[Any]]]:
    """(action, usable connections) pairs the token's role allows."""
    return allowed_actions(
        ctx.role_id, ctx.organization, version=ctx.rules_version, acting_for=ctx.acting_for_id
    )


def mcp_tools_for(ctx: Any) -> list[tuple[Any, Any]]:
    """(connection, pinned tool) pairs of upstream MCP servers the token's role allows."""
    return allowed_mcp_tools(ctx.role_id, ctx.organization_id, version=ctx.rules_version)


def actions_for(ctx: Any) -> list[dict[str, Any]]:
    return [
        {
            "name": action.name,
            "description": action.description,
            "action_class": str(action.action_class),
            "input_schema": action.input_schema,
            "connections": [{"id": c.pk, "name": c.name} for c in connections],
        }
        for action, connections in allowed_for(ctx)
    ]
