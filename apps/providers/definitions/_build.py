"""Small builders that keep provider definitions declarative and short.

Every action's input schema comes out as a JSON Schema (draft 2020-12) object
with `additionalProperties: false` and a description on every property, since
the schema is shown to an LLM as an MCP tool schema.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from apps.providers.calls import BODYLESS_METHODS
from apps.providers.catalog import PLACEHOLDER_RE, Action, ActionClass

Schema = dict[str, Any]


def string(description: str, **extra: Any) -> Schema:
    return {"type": "string", "description": description, **extra}


def integer(description: str, **extra: Any) -> Schema:
    return {"type": "integer", "description": description, **extra}


def number(description: str, **extra: Any) -> Schema:
    return {"type": "number", "description": description, **extra}


def boolean(description: str) -> Schema:
    return {"type": "boolean", "description": description}


def enum(description: str, values: list[str]) -> Schema:
    return {"type": "string", "enum": values, "description": description}


def array(description: str, items: Schema, **extra: Any) -> Schema:
    return {"type": "array", "items": items, "description": description, **extra}


def free_object(description: str) -> Schema:
    """A nested object whose keys the upstream defines (e.g. record fields)."""
    return {"type": "object", "description": description, "additionalProperties": True}


def page_size(default: int = 30, maximum: int = 100, name: str = "results") -> Schema:
    return integer(
        f"How many {name} to return (1-{maximum}, default {default}).",
        minimum=1,
        maximum=maximum,
    )


def object_schema(properties: dict[str, Schema], required: tuple[str, ...] = ()) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


def action_builder(provider_key: str) -> Callable[..., Action]:
    """`A = action_builder("github")`, then `A("list_repos", "…", READ, "GET", "/user/repos", …)`.

    GET/DELETE actions send every non-path key as a query parameter unless `query`
    says otherwise; other methods send them in the body."""

    def build(
        short_name: str,
        description: str,
        action_class: ActionClass,
        method: str,
        path: str,
        *,
        params: dict[str, Schema] | None = None,
        required: tuple[str, ...] = (),
        scopes: tuple[str, ...] = (),
        query: tuple[str, ...] | None = None,
        body: tuple[str, ...] | None = None,
        body_template: Any = None,
        body_encoding: str = "json",
        wire_names: dict[str, str] | None = None,
    ) -> Action:
        params = params or {}
        path_keys = set(PLACEHOLDER_RE.findall(path))
        if query is None:
            query = (
                tuple(k for k in params if k not in path_keys)
                if method.upper() in BODYLESS_METHODS
                else ()
            )
        return Action(
            name=f"{provider_key}.{short_name}",
            description=description,
            action_class=action_class,
            method=method.upper(),
            path=path,
            input_schema=object_schema(params, required),
            scopes=scopes,
            query_params=query,
            body_params=body,
            body_template=body_template,
            body_encoding=body_encoding,
            wire_names=wire_names or {},
        )

    return build


READ = ActionClass.READ
WRITE = ActionClass.WRITE
