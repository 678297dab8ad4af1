"""From a resolved OpenAPI document to action drafts: one per operation, with a closed
input schema built from its path, query and JSON-body parameters."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from apps.providers.catalog import PLACEHOLDER_RE
from apps.providers.models import HTTP_METHODS, MAX_SCHEMA_BYTES

# Upper bound on the nodes of one built input schema: inlined $refs share structure, so
# a small document can describe an enormous schema.
MAX_SCHEMA_NODES = 4_000
PROPERTY_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_JSON_MEDIA = re.compile(r"^application/([a-z0-9.+-]*\+)?json\s*(;.*)?$", re.IGNORECASE)
# Swagger 2.0 parameter keywords that carry over into a JSON Schema as they are.
_SWAGGER_SCHEMA_KEYS = (
    "type",
    "format",
    "items",
    "enum",
    "default",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "multipleOf",
)


@dataclass
class Draft:
    """One operation as a custom action, before an admin chooses and edits it."""

    key: str  # "GET /pets/{petId}": the operation as the document names it
    name: str
    description: str
    action_class: str
    method: str
    path: str
    input_schema: dict[str, Any]
    query_params: list[str] = field(default_factory=list)
    scopes: list[str] = field(default_factory=list)
    problem: str = ""  # why it cannot be imported as it is ("" when it can)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- operations ----------------------------------------------------------------------


def drafts_of(spec: dict[str, Any]) -> list[Draft]:
    is_swagger = bool(spec.get("swagger"))
    global_security = spec.get("security")
    drafts: list[Draft] = []
    used_names: set[str] = set()
    for path, item in (spec.get("paths") or {}).items():
        if not isinstance(item, dict):
            continue
        shared = item.get("parameters") or []
        for method, operation in item.items():
            if str(method).upper() not in HTTP_METHODS or not isinstance(operation, dict):
                continue
            draft = _draft(str(path), str(method).upper(), operation, shared, is_swagger)
            draft.scopes = _scopes(operation.get("security", global_security))
            draft.name = _unique(draft.name, used_names)
            drafts.append(draft)
    return drafts


def _unique(name: str, used: set[str]) -> str:
    candidate, n = name, 2
    while candidate in used:
        suffix = f"_{n}"
        candidate, n = name[: 63 - len(suffix)] + suffix, n + 1
    used.add(candidate)
    return candidate


def _action_name(operation: dict[str, Any], method: str, path: str) -> str:
    base = str(operation.get("operationId") or "")
    if not base:
        base = f"{method}_{path}"
    # camelCase -> snake_case, anything else -> "_".
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", base)
    snake = re.sub(r"[^a-z0-9]+", "_", snake.lower()).strip("_")
    if not snake or not snake[0].isalpha():
        snake = f"op_{snake}".rstrip("_")
    return snake[:63].rstrip("_")


def _describe(operation: dict[str, Any], method: str, path: str) -> str:
    parts = [str(operation.get(k) or "").strip() for k in ("summary", "description")]
    summary, details = parts
    text = summary
    if details and details != summary:
        text = f"{summary.rstrip('.')}. {details}" if summary else details
    text = re.sub(r"\s+", " ", text).strip()
    return (text or f"{method} {path}")[:1000]


def _draft(
    path: str,
    method: str,
    operation: dict[str, Any],
    shared: list[Any],
    is_swagger: bool,
) -> Draft:
    key = f"{method} {path}"
    draft = Draft(
        key=key,
        name=_action_name(operation, method, path),
        description=_describe(operation, method, path),
        action_class="read" if method == "GET" else "write",
        method=method,
        path=path,
        input_schema={"type": "object", "properties": {}, "required": []},
    )
    try:
        _fill(draft, operation, shared, is_swagger)
    except _Unsupported as exc:
        draft.problem = str(exc)
    return draft


class _Unsupported(Exception):
    pass


def _parameters(operation: dict[str, Any], shared: list[Any]) -> list[dict[str, Any]]:
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    for parameter in [*shared, *(operation.get("parameters") or [])]:
        if isinstance(parameter, dict) and parameter.get("name") and parameter.get("in"):
            by_key[(str(parameter["in"]), str(parameter["name"]))] = parameter
    return list(by_key.values())


def _fill(draft: Draft, operation: dict[str, Any], shared: list[Any], is_swagger: bool) -> None:
    properties: dict[str, Any] = {}
    required: list[str] = []
    path, body_schema = _fill_parameters(draft, operation, shared, is_swagger, properties, required)
    if not is_swagger:
        body_schema = _request_body_schema(operation.get("requestBody"))
    if body_schema is not None and draft.method in ("GET", "DELETE"):
        body_schema = None  # a GET or DELETE body is not sent
    if body_schema is not None:
        _fill_body(body_schema, is_swagger, properties, required)
    leftover = set(PLACEHOLDER_RE.findall(path)) - set(properties)
    if leftover:
        raise _Unsupported(f"The path parameter(s) {', '.join(sorted(leftover))} are undefined.")
    if "{" in PLACEHOLDER_RE.sub("", path) or "}" in PLACEHOLDER_RE.sub("", path):
        raise _Unsupported("Its path template cannot be used as it is.")
    draft.path = path
    draft.input_schema = {
        "type": "object",
        "properties": properties,
        "required": sorted(set(required), key=list(properties).index),
        "additionalProperties": False,
    }
    _check_schema(draft.input_schema)


def _fill_parameters(
    draft: Draft,
    operation: dict[str, Any],
    shared: list[Any],
    is_swagger: bool,
    properties: dict[str, Any],
    required: list[str],
) -> tuple[str, Any]:
    """Path and query parameters into `properties`; returns the path template (its
    placeholders made safe) and a Swagger 2.0 body parameter's schema, if any."""
    path = draft.path
    body_schema: Any = None
    for parameter in _parameters(operation, shared):
        where, name = str(parameter["in"]), str(parameter["name"])
        if where == "body":  # Swagger 2.0
            body_schema = parameter.get("schema")
            if parameter.get("required"):
                body_schema = {**(body_schema or {}), "x-grantry-required": True}
            continue
        if where in ("header", "cookie"):
            if parameter.get("required"):
                raise _Unsupported(f"It needs the {where} parameter '{name}'.")
            continue
        if where == "formData":
            raise _Unsupported("It takes a form body; imported actions send JSON.")
        prop = _parameter_property(parameter, name, where, is_swagger)
        if where == "path":
            # A path parameter only fills the template, so its name can be made safe.
            safe = _safe_path_name(name)
            path = path.replace("{" + name + "}", "{" + safe + "}")
            name = safe
            required.append(name)
        else:
            if not PROPERTY_RE.match(name):
                raise _Unsupported(f"The query parameter '{name}' is not a usable input name.")
            draft.query_params.append(name)
            if parameter.get("required"):
                required.append(name)
        properties[name] = prop
    return path, body_schema


def _parameter_property(
    parameter: dict[str, Any], name: str, where: str, is_swagger: bool
) -> dict[str, Any]:
    prop = _bounded(_parameter_schema(parameter, is_swagger))
    prop.setdefault(
        "description", str(parameter.get("description") or f"The '{name}' {where} parameter.")
    )
    if not str(prop["description"]).strip():
        prop["description"] = f"The '{name}' {where} parameter."
    return prop


def _safe_path_name(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if not safe[0].isalpha() and safe[0] != "_":
        safe = f"p_{safe}"
    return safe


def _fill_body(
    body_schema: Any, is_swagger: bool, properties: dict[str, Any], required: list[str]
) -> None:
    """A JSON object body's properties into `properties` (read-only ones left out)."""
    body_required = bool(body_schema.pop("x-grantry-required", False)) if is_swagger else True
    body = _bounded(body_schema)
    if body.get("type") not in (None, "object") or "properties" not in body:
        raise _Unsupported("Its request body is not a JSON object with named properties.")
    for name, prop in (body.get("properties") or {}).items():
        if not isinstance(prop, dict) or prop.get("readOnly"):
            continue
        if name in properties:
            raise _Unsupported(f"'{name}' is both a parameter and a body property.")
        if not PROPERTY_RE.match(name):
            raise _Unsupported(f"The body property '{name}' is not a usable input name.")
        prop = dict(prop)
        if not str(prop.get("description") or "").strip():
            prop["description"] = str(prop.get("title") or f"The '{name}' field of the body.")
        properties[name] = prop
        if body_required and name in (body.get("required") or []):
            required.append(name)


def _request_body_schema(request_body: Any) -> Any:
    if not isinstance(request_body, dict):
        return None
    content = request_body.get("content") or {}
    json_types = [t for t in content if _JSON_MEDIA.match(str(t))]
    if not json_types:
        if content:
            raise _Unsupported(
                f"Its request body is {', '.join(sorted(map(str, content)))}; imported actions "
                "send JSON."
            )
        return None
    schema = (content[json_types[0]] or {}).get("schema")
    if schema is None:
        return None
    if not request_body.get("required"):
        # An optional body: none of its properties is required either.
        return {**schema, "required": []} if isinstance(schema, dict) else schema
    return schema


def _parameter_schema(parameter: dict[str, Any], is_swagger: bool) -> dict[str, Any]:
    if "schema" in parameter and isinstance(parameter["schema"], dict):
        return dict(parameter["schema"])
    if "content" in parameter:
        raise _Unsupported(f"The parameter '{parameter['name']}' is serialized as content.")
    if is_swagger:
        return {k: parameter[k] for k in _SWAGGER_SCHEMA_KEYS if k in parameter}
    return {}


def _bounded(schema: Any) -> dict[str, Any]:
    """A private copy of a (shared, maybe recursive-expanded) schema, made JSON Schema
    2020-12: OpenAPI 3.0's `nullable` and boolean `exclusiveMinimum/Maximum` converted,
    examples dropped; refuses schemas with more than MAX_SCHEMA_NODES nodes."""
    budget = [MAX_SCHEMA_NODES]

    def copy(node: Any) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise _Unsupported("Its input schema is too large to import.")
        if isinstance(node, list):
            return [copy(v) for v in node]
        if not isinstance(node, dict):
            return node
        out = {
            k: copy(v)
            for k, v in node.items()
            if k not in ("example", "examples", "xml", "discriminator", "externalDocs")
            and not str(k).startswith("x-")
        }
        if out.pop("nullable", False) is True and isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        for bound, flag in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
            if isinstance(out.get(flag), bool) and out.pop(flag) and bound in out:
                out[flag] = out.pop(bound)
        if out.get("type") == "file":  # Swagger 2.0
            raise _Unsupported("It uploads a file.")
        return out

    result = copy(schema if schema is not None else {})
    if not isinstance(result, dict):
        raise _Unsupported("A parameter schema is not an object.")
    return result


def _check_schema(schema: dict[str, Any]) -> None:
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise _Unsupported(f"Its input schema is not valid: {exc.message[:150]}") from None
    if len(json.dumps(schema)) > MAX_SCHEMA_BYTES:
        raise _Unsupported("Its input schema is larger than 20 kB.")


def _scopes(security: Any) -> list[str]:
    """OAuth scopes of the first security requirement that names any."""
    for requirement in security or []:
        if isinstance(requirement, dict):
            scopes = [str(s) for values in requirement.values() for s in (values or [])]
            if scopes:
                return sorted(set(scopes))
    return []
