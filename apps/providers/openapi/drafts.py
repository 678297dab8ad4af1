"""From the chosen operations of a document to action drafts: one per operation, with a
closed input schema built from its path, query and body parameters. Pure Python, no
Django (it runs in the isolated child, `isolated.py`).

References are followed lazily, only for the operations drafted, and only inside the
document: each `$ref` met while building a schema is looked up by its JSON pointer,
expanded into a private copy and counted against the schema's node budget as it is
expanded, so a document whose schemas refer to each other twice per level (2^n nodes
once expanded) is refused after MAX_SCHEMA_NODES nodes, not after 2^n. A reference to
itself (a tree, a linked list) ends in `{}` (any value). A reference that leaves the
document makes its operation not importable; nothing is ever fetched."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from apps.providers.catalog import (
    ACTION_METHODS,
    MAX_SCHEMA_BYTES,
    PLACEHOLDER_RE,
    path_template_problem,
)
from apps.providers.openapi.reading import lookup, pointer

# Upper bound on the nodes of one built input schema, counted while references expand.
MAX_SCHEMA_NODES = 4_000
# Nesting of one built schema (each expanded reference adds its own levels).
MAX_SCHEMA_DEPTH = 48
PROPERTY_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_JSON_MEDIA = re.compile(r"^application/([a-z0-9.+-]*\+)?json\s*(;.*)?$", re.IGNORECASE)
_FORM_MEDIA = re.compile(r"^application/x-www-form-urlencoded\s*(;.*)?$", re.IGNORECASE)
# Keywords of a schema that say nothing about a valid input, or would move references.
_DROPPED = frozenset(
    (
        "example",
        "examples",
        "xml",
        "discriminator",
        "externalDocs",
        "$id",
        "$schema",
        "$anchor",
        "$dynamicAnchor",
        "$comment",
        "$defs",
        "definitions",
    )
)
# Keywords whose value maps names to schemas.
_NAME_MAPS = frozenset(("properties", "patternProperties", "dependentSchemas"))
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
    body_encoding: str = "json"
    problem: str = ""  # why it cannot be imported as it is ("" when it can)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Unsupported(Exception):
    pass


# --- operations ----------------------------------------------------------------------


def drafts_for(
    document: dict[str, Any],
    keys: list[str],
    on_progress: Callable[[int, int], None] | None = None,
) -> list[Draft]:
    """Drafts of the operations named by `keys` ("GET /pets"), in document order."""
    is_swagger = bool(document.get("swagger"))
    global_security = document.get("security")
    wanted = set(keys)
    drafts: list[Draft] = []
    used_names: set[str] = set()
    resolver = _Resolver(document)
    for path, raw_item in (document.get("paths") or {}).items():
        item = resolver.deref(raw_item, f"{pointer(['paths', path])}")
        if not isinstance(item, dict):
            continue
        for method, operation in item.items():
            key = f"{str(method).upper()} {path}"
            if key not in wanted or not isinstance(operation, dict):
                continue
            draft = _draft(resolver, str(path), str(method).upper(), operation, item, is_swagger)
            draft.scopes = _scopes(operation.get("security", global_security))
            draft.name = _unique(draft.name, used_names)
            drafts.append(draft)
            if on_progress is not None:
                on_progress(len(drafts), len(wanted))
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
    resolver: _Resolver,
    path: str,
    method: str,
    operation: dict[str, Any],
    item: dict[str, Any],
    is_swagger: bool,
) -> Draft:
    draft = Draft(
        key=f"{method} {path}",
        name=_action_name(operation, method, path),
        description=_describe(operation, method, path),
        action_class="read" if method in ("GET", "HEAD") else "write",
        method=method,
        # A fragment is never sent; Box's "/files/{file_id}#add_shared_link" uses one to
        # tell operations on the same path apart.
        path=path.split("#", 1)[0],
        input_schema={"type": "object", "properties": {}, "required": []},
    )
    try:
        if method not in ACTION_METHODS:
            raise _Unsupported(f"Grantry does not send {method} requests.")
        _fill(resolver, draft, operation, item.get("parameters") or [], is_swagger)
    except _Unsupported as exc:
        draft.problem = str(exc)
    except RecursionError:
        draft.problem = "Its schemas are nested too deeply to import."
    return draft


def _fill(
    resolver: _Resolver,
    draft: Draft,
    operation: dict[str, Any],
    shared: list[Any],
    is_swagger: bool,
) -> None:
    budget = _Budget()
    properties: dict[str, Any] = {}
    required: list[str] = []
    parameters = _parameters(resolver, operation, shared)
    path, swagger_body = _fill_parameters(
        resolver, budget, draft, parameters, is_swagger, properties, required
    )
    if is_swagger:
        body = swagger_body
        form = [p for p in parameters if p.get("in") == "formData"]
        if form:
            consumes = operation.get("consumes") or resolver.document.get("consumes") or []
            if consumes and not any(_FORM_MEDIA.match(str(c)) for c in consumes):
                raise _Unsupported(
                    f"It takes {', '.join(map(str, consumes))}; imported actions send JSON "
                    "or a form (application/x-www-form-urlencoded)."
                )
            body = _swagger_form_body(resolver, budget, form)
            draft.body_encoding = "form"
    else:
        body, draft.body_encoding = _request_body(resolver, operation.get("requestBody"))
    if body is not None and draft.method in ("GET", "HEAD", "DELETE"):
        body, draft.body_encoding = None, "json"  # a GET, HEAD or DELETE body is not sent
    if body is not None:
        _fill_body(resolver, budget, body, properties, required)
    leftover = set(PLACEHOLDER_RE.findall(path)) - set(properties)
    if leftover:
        raise _Unsupported(f"The path parameter(s) {', '.join(sorted(leftover))} are undefined.")
    problem = path_template_problem(path)
    if problem:
        raise _Unsupported(f"Its path cannot be used as it is: {problem}")
    draft.path = path
    draft.input_schema = {
        "type": "object",
        "properties": properties,
        "required": sorted(set(required), key=list(properties).index),
        "additionalProperties": False,
    }
    _check_schema(draft.input_schema)


def _parameters(
    resolver: _Resolver, operation: dict[str, Any], shared: list[Any]
) -> list[dict[str, Any]]:
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    for raw in [*shared, *(operation.get("parameters") or [])]:
        parameter = resolver.deref(raw, "a parameter")
        if isinstance(parameter, dict) and parameter.get("name") and parameter.get("in"):
            by_key[(str(parameter["in"]), str(parameter["name"]))] = parameter
    return list(by_key.values())


def _fill_parameters(
    resolver: _Resolver,
    budget: _Budget,
    draft: Draft,
    parameters: list[dict[str, Any]],
    is_swagger: bool,
    properties: dict[str, Any],
    required: list[str],
) -> tuple[str, Any]:
    """Path and query parameters into `properties`; returns the path template (its
    placeholders made safe) and a Swagger 2.0 body parameter's schema, if any."""
    path = draft.path
    body_schema: Any = None
    for parameter in parameters:
        where, name = str(parameter["in"]), str(parameter["name"])
        if where == "body":  # Swagger 2.0
            body_schema = {"schema": parameter.get("schema"), "required": parameter.get("required")}
            continue
        if where in ("header", "cookie"):
            if parameter.get("required"):
                raise _Unsupported(f"It needs the {where} parameter '{name}'.")
            continue
        if where == "formData":
            continue  # Swagger 2.0: the form body, built by the caller
        if where != "path" and not PROPERTY_RE.match(name):
            # Like an optional header: left out, the agent simply cannot send it.
            if parameter.get("required"):
                raise _Unsupported(f"The query parameter '{name}' is not a usable input name.")
            continue
        prop = _parameter_property(resolver, budget, parameter, name, where, is_swagger)
        if where == "path":
            # A path parameter only fills the template, so its name can be made safe.
            safe = _safe_path_name(name)
            path = path.replace("{" + name + "}", "{" + safe + "}")
            name = safe
            required.append(name)
        else:
            draft.query_params.append(name)
            if parameter.get("required"):
                required.append(name)
        properties[name] = prop
    return path, body_schema


def _parameter_property(
    resolver: _Resolver,
    budget: _Budget,
    parameter: dict[str, Any],
    name: str,
    where: str,
    is_swagger: bool,
) -> dict[str, Any]:
    prop = resolver.expand(_parameter_schema(parameter, is_swagger), budget)
    if not isinstance(prop, dict):
        raise _Unsupported(f"The schema of the parameter '{name}' is not an object.")
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


def _parameter_schema(parameter: dict[str, Any], is_swagger: bool) -> Any:
    if "schema" in parameter and isinstance(parameter["schema"], dict):
        return parameter["schema"]
    if "content" in parameter:
        raise _Unsupported(f"The parameter '{parameter['name']}' is serialized as content.")
    if is_swagger:
        if parameter.get("type") == "file":
            raise _Unsupported("It uploads a file.")
        return {k: parameter[k] for k in _SWAGGER_SCHEMA_KEYS if k in parameter}
    return {}


# --- bodies ----------------------------------------------------------------------------


def _request_body(resolver: _Resolver, raw: Any) -> tuple[Any, str]:
    """An OpenAPI 3 request body: ({"schema", "required"}, encoding) or (None, "json")."""
    request_body = resolver.deref(raw, "the request body")
    if not isinstance(request_body, dict):
        return None, "json"
    content = request_body.get("content") or {}
    json_types = [t for t in content if _JSON_MEDIA.match(str(t))]
    form_types = [t for t in content if _FORM_MEDIA.match(str(t))]
    chosen = json_types or form_types
    if not chosen:
        if content:
            raise _Unsupported(
                f"Its request body is {', '.join(sorted(map(str, content)))}; imported actions "
                "send JSON or a form (application/x-www-form-urlencoded)."
            )
        return None, "json"
    media = content[chosen[0]] or {}
    schema = media.get("schema") if isinstance(media, dict) else None
    if schema is None:
        return None, "json"
    encoding = "json" if json_types else "form"
    return {"schema": schema, "required": bool(request_body.get("required"))}, encoding


def _swagger_form_body(
    resolver: _Resolver, budget: _Budget, parameters: list[dict[str, Any]]
) -> dict[str, Any]:
    """Swagger 2.0 formData parameters as one object schema."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for parameter in parameters:
        name = str(parameter["name"])
        prop = _parameter_property(resolver, budget, parameter, name, "form", True)
        properties[name] = prop
        if parameter.get("required"):
            required.append(name)
    schema = {"type": "object", "properties": properties, "required": required}
    return {"schema": schema, "required": True}


def _fill_body(
    resolver: _Resolver,
    budget: _Budget,
    body: dict[str, Any],
    properties: dict[str, Any],
    required: list[str],
) -> None:
    """An object body's properties into `properties` (read-only ones, and optional ones
    whose name cannot be an input name, left out). An `allOf` body is merged; a
    `oneOf`/`anyOf` body of objects takes every variant's properties, required only where
    every variant requires them."""
    schema = resolver.expand(body["schema"], budget)
    body_required = bool(body["required"])
    if not isinstance(schema, dict):
        raise _Unsupported("Its request body is not a JSON object with named properties.")
    merged_props, merged_required = _object_shape(schema)
    for name, prop in merged_props.items():
        if not isinstance(prop, dict) or prop.get("readOnly"):
            continue
        if name in properties:
            raise _Unsupported(f"'{name}' is both a parameter and a body property.")
        if not PROPERTY_RE.match(name):
            if body_required and name in merged_required:
                raise _Unsupported(f"The body property '{name}' is not a usable input name.")
            continue  # optional: left out, as an optional header is
        prop = dict(prop)
        if not str(prop.get("description") or "").strip():
            prop["description"] = str(prop.get("title") or f"The '{name}' field of the body.")
        properties[name] = prop
        if body_required and name in merged_required:
            required.append(name)


def _object_shape(schema: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """(properties, required) of an object schema, through allOf / oneOf / anyOf."""
    kind = schema.get("type")
    if kind not in (None, "object") and not (isinstance(kind, list) and "object" in kind):
        raise _Unsupported("Its request body is not a JSON object with named properties.")
    properties: dict[str, Any] = dict(schema.get("properties") or {})
    required = {str(r) for r in schema.get("required") or []}
    for part in schema.get("allOf") or []:
        if isinstance(part, dict):
            more, more_required = _object_shape(part)
            properties.update({k: v for k, v in more.items() if k not in properties})
            required |= more_required
    variants = [v for v in (schema.get("oneOf") or schema.get("anyOf") or []) if v]
    if variants:
        more, more_required = _variants_shape(variants)
        properties.update({k: v for k, v in more.items() if k not in properties})
        required |= more_required
    if not properties:
        raise _Unsupported("Its request body is not a JSON object with named properties.")
    return properties, required


def _variants_shape(variants: list[Any]) -> tuple[dict[str, Any], set[str]]:
    """Every variant's properties, required only where every variant requires them:
    the agent may send any one shape (the upstream checks which)."""
    shapes = []
    for variant in variants:
        try:
            if not isinstance(variant, dict):
                raise _Unsupported("not an object")
            shapes.append(_object_shape(variant))
        except _Unsupported:
            raise _Unsupported(
                "Its request body is one of several shapes, not all of them JSON objects."
            ) from None
    variants_of: dict[str, list[Any]] = {}
    for shape_properties, _ in shapes:
        for name, prop in shape_properties.items():
            if prop not in variants_of.setdefault(name, []):
                variants_of[name].append(prop)
    properties = {
        name: schemas[0] if len(schemas) == 1 else _any_of(schemas)
        for name, schemas in variants_of.items()
    }
    return properties, set.intersection(*(r for _, r in shapes))


def _any_of(schemas: list[Any]) -> dict[str, Any]:
    """One property that differs between variants (a discriminator's enum): any of them."""
    described = [s.get("description") for s in schemas if isinstance(s, dict)]
    text = next((d for d in described if d), "")
    return {"anyOf": schemas, **({"description": text} if text else {})}


# --- references ------------------------------------------------------------------------


class _Budget:
    def __init__(self) -> None:
        self.left = MAX_SCHEMA_NODES

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise _Unsupported(
                f"Its input schema is too large to import (more than {MAX_SCHEMA_NODES} "
                "parts once its references are expanded)."
            )


class _Resolver:
    """Follows the document's local references on demand (see the module docstring)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def target(self, ref: str) -> Any:
        if not (ref == "#" or ref.startswith("#/")):
            raise _Unsupported(
                f"It refers to {ref[:120]!r}, outside the document. Only references inside it "
                "(#/…) are followed: bundle the document into one file first."
            )
        try:
            return lookup(self.document, ref)
        except KeyError:
            raise _Unsupported(f"The reference {ref[:120]!r} points at nothing.") from None

    def deref(self, node: Any, what: str) -> Any:
        """A parameter, request body or path item behind (a chain of) references."""
        for _ in range(16):
            if not (isinstance(node, dict) and isinstance(node.get("$ref"), str)):
                return node
            node = self.target(node["$ref"])
        raise _Unsupported(f"The references of {what} form a loop.")

    def expand(self, schema: Any, budget: _Budget) -> Any:
        """A private copy of `schema` with every reference expanded, made JSON Schema
        2020-12: OpenAPI 3.0's `nullable` and boolean exclusive bounds converted,
        annotations that could move references (`$id`, `$schema`) and examples dropped."""
        return self._copy(schema, budget, (), 0)

    def _copy(self, node: Any, budget: _Budget, active: tuple[str, ...], depth: int) -> Any:
        budget.spend()
        if depth > MAX_SCHEMA_DEPTH:
            raise _Unsupported("Its input schema is nested too deeply to import.")
        if isinstance(node, list):
            return [self._copy(v, budget, active, depth + 1) for v in node]
        if not isinstance(node, dict):
            return node
        if isinstance(node.get("$ref"), str):
            return self._copy_reference(node, budget, active, depth)
        if "$dynamicRef" in node:
            return {}
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _DROPPED or str(key).startswith("x-"):
                continue
            if key in _NAME_MAPS and isinstance(value, dict):
                # Names, not keywords: a property may well be called "example" or "x-id".
                budget.spend()
                out[key] = {
                    name: self._copy(schema, budget, active, depth + 2)
                    for name, schema in value.items()
                }
            else:
                out[key] = self._copy(value, budget, active, depth + 1)
        return _as_2020_12(out)

    def _copy_reference(
        self, node: dict[str, Any], budget: _Budget, active: tuple[str, ...], depth: int
    ) -> Any:
        ref = node["$ref"]
        if ref in active:
            return {}  # recursive: any value at this depth
        target = self._copy(self.target(ref), budget, (*active, ref), depth + 1)
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        if not siblings or not isinstance(target, dict):
            return target
        # Keywords beside a $ref (OpenAPI 3.1) refine it: a description, a default.
        return {**target, **self._copy(siblings, budget, active, depth)}


def _as_2020_12(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI 3.0's `nullable` and boolean exclusive bounds, as JSON Schema 2020-12."""
    if schema.pop("nullable", False) is True and isinstance(schema.get("type"), str):
        schema["type"] = [schema["type"], "null"]
    for bound, flag in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if isinstance(schema.get(flag), bool) and schema.pop(flag) and bound in schema:
            schema[flag] = schema.pop(bound)
    if schema.get("type") == "file":  # Swagger 2.0
        raise _Unsupported("It uploads a file.")
    return schema


def _check_schema(schema: dict[str, Any]) -> None:
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = pointer(exc.absolute_path) if exc.absolute_path else "its top level"
        raise _Unsupported(
            f"Its input schema is not valid at {where}: {exc.message[:150]}"
        ) from None
    if len(json.dumps(schema)) > MAX_SCHEMA_BYTES:
        raise _Unsupported(f"Its input schema is larger than {MAX_SCHEMA_BYTES // 1000} kB.")


def _scopes(security: Any) -> list[str]:
    """OAuth scopes of the first security requirement that names any."""
    for requirement in security or []:
        if isinstance(requirement, dict):
            scopes = [str(s) for values in requirement.values() for s in (values or [])]
            if scopes:
                return sorted(set(scopes))
    return []
