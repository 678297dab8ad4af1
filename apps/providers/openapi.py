"""OpenAPI import: from an OpenAPI 3.0/3.1 or Swagger 2.0 document to custom-action drafts.

The document is parsed and validated by prance with the openapi-spec-validator backend,
and its `$ref`s are inlined by prance's resolver, limited to references inside the
document: every `$ref` is checked BEFORE any library sees the document, and one that
points elsewhere (a file, a URL) refuses the whole document, so nothing is ever fetched
on its behalf. Size, operation count, YAML aliases and the size of each built schema are
capped. Nothing here writes: `services.custom_actions_import()` saves the drafts an admin
chose (and maybe edited).

A draft's input schema holds the path, query and JSON-body parameters side by side:
path parameters fill the path template, query parameters are listed in `query_params`,
and the properties of an object request body form the rest. Header and cookie
parameters are left out (Grantry sends the credential; other headers are not part of a
custom action), and an operation that requires one is marked as not importable.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml
from django.conf import settings
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from apps.providers.catalog import PLACEHOLDER_RE
from apps.providers.models import HTTP_METHODS, MAX_SCHEMA_BYTES

DEFAULT_MAX_BYTES = 2_000_000
DEFAULT_MAX_OPERATIONS = 100
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


class OpenAPIImportError(ValueError):
    """The document cannot be imported; the message says why, for the admin."""


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


@dataclass
class ParsedDocument:
    title: str
    version: str  # "OpenAPI 3.1.0", "Swagger 2.0"
    server_url: str
    sha256: str
    drafts: list[Draft]


def max_bytes() -> int:
    return int(getattr(settings, "GRANTRY_OPENAPI_MAX_BYTES", DEFAULT_MAX_BYTES))


def max_operations() -> int:
    return int(getattr(settings, "GRANTRY_OPENAPI_MAX_OPERATIONS", DEFAULT_MAX_OPERATIONS))


# --- loading -------------------------------------------------------------------------


def fetch_document(url: str) -> bytes:
    """GET a document through the egress guard (public addresses only, no redirects,
    bounded time and size)."""
    from apps.core.egress import EgressError, egress_request
    from apps.providers.models import validate_provider_url

    try:
        validate_provider_url(url)
    except Exception as exc:  # noqa: BLE001 - a ValidationError with the reason
        message = " ".join(getattr(exc, "messages", [str(exc)]))
        raise OpenAPIImportError(f"This URL cannot be fetched: {message}") from None
    try:
        response = egress_request(
            "GET",
            url,
            headers={"Accept": "application/json, application/yaml, text/yaml, */*;q=0.5"},
        )
    except EgressError as exc:
        raise OpenAPIImportError(f"The document could not be fetched: {exc}") from None
    if response.status_code != 200:
        raise OpenAPIImportError(
            f"The server answered HTTP {response.status_code}"
            + (" (a redirect: give the final URL)." if 300 <= response.status_code < 400 else ".")
        )
    if len(response.content) > max_bytes():
        raise OpenAPIImportError(f"The document is larger than {max_bytes() // 1000} kB.")
    return bytes(response.content)


def _load(text: str) -> dict[str, Any]:
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise OpenAPIImportError(
                f"This is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})."
            ) from None
    else:
        try:
            # Anchors and aliases are refused: they let a small file expand without bound.
            for event in yaml.parse(text, Loader=yaml.SafeLoader):
                if isinstance(event, yaml.AliasEvent):
                    raise OpenAPIImportError("YAML aliases (*name) are not accepted.")
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise OpenAPIImportError(f"This is neither JSON nor valid YAML: {exc}"[:300]) from None
    if not isinstance(loaded, dict):
        raise OpenAPIImportError("An OpenAPI document is a JSON or YAML object.")
    return loaded


def _check_references(node: Any, where: str = "#") -> None:
    """Refuse every reference that leaves the document, before anything resolves it."""
    stack: list[tuple[Any, str]] = [(node, where)]
    while stack:
        current, pointer = stack.pop()
        if isinstance(current, dict):
            for key, value in current.items():
                if key in ("$ref", "$dynamicRef") and isinstance(value, str):
                    if not (value == "#" or value.startswith("#/")):
                        raise OpenAPIImportError(
                            f"The reference {value[:120]!r} at {pointer} points outside the "
                            "document. Only references inside it (#/…) are accepted: bundle "
                            "the document into one file first."
                        )
                elif key == "$id" and isinstance(value, str) and not value.startswith("#"):
                    raise OpenAPIImportError(
                        f"The schema id {value[:120]!r} at {pointer} would move references "
                        "outside the document."
                    )
                else:
                    stack.append((value, f"{pointer}/{key}"))
        elif isinstance(current, list):
            stack.extend((item, f"{pointer}/{i}") for i, item in enumerate(current))


def _count_operations(document: dict[str, Any]) -> int:
    paths = document.get("paths")
    if not isinstance(paths, dict):
        return 0
    return sum(
        1
        for item in paths.values()
        if isinstance(item, dict)
        for method in item
        if str(method).upper() in HTTP_METHODS
    )


def parse_document(text: str | bytes) -> ParsedDocument:
    """Validate and resolve a document and turn each operation into a Draft."""
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > max_bytes():
        raise OpenAPIImportError(
            f"The document is {len(raw) // 1000} kB; at most {max_bytes() // 1000} kB "
            "can be imported."
        )
    try:
        decoded = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise OpenAPIImportError("The document is not UTF-8 text.") from None
    document = _load(decoded)
    if not (document.get("openapi") or document.get("swagger")):
        raise OpenAPIImportError(
            'This is not an OpenAPI document (no "openapi" or "swagger" version field).'
        )
    _check_references(document)
    count = _count_operations(document)
    if count > max_operations():
        raise OpenAPIImportError(
            f"The document has {count} operations; at most {max_operations()} can be "
            "imported from one document. Remove the paths you do not need first."
        )
    resolved = _validate_and_resolve(decoded)
    return ParsedDocument(
        title=str((resolved.get("info") or {}).get("title") or "")[:200],
        version=_version_label(resolved),
        server_url=_server_url(resolved),
        sha256=hashlib.sha256(raw).hexdigest(),
        drafts=_drafts(resolved),
    )


def _validate_and_resolve(text: str) -> dict[str, Any]:
    from prance import ResolvingParser, ValidationError
    from prance.util.resolver import RESOLVE_INTERNAL, permissive_object_on_recursion
    from prance.util.url import ResolutionError

    try:
        parser = ResolvingParser(
            spec_string=text,
            backend="openapi-spec-validator",
            resolve_types=RESOLVE_INTERNAL,
            recursion_limit_handler=permissive_object_on_recursion,
            strict=False,
        )
    except ValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid"
        raise OpenAPIImportError(f"The document is not valid OpenAPI: {first[:300]}") from None
    except ResolutionError as exc:
        raise OpenAPIImportError(f"A reference cannot be resolved: {str(exc)[:300]}") from None
    except (ValueError, TypeError, KeyError, RecursionError) as exc:
        raise OpenAPIImportError(f"The document cannot be read: {str(exc)[:300]}") from None
    spec = parser.specification
    if not isinstance(spec, dict):
        raise OpenAPIImportError("The document cannot be read.")
    return spec


def _version_label(spec: dict[str, Any]) -> str:
    if spec.get("swagger"):
        return f"Swagger {spec['swagger']}"
    return f"OpenAPI {spec.get('openapi')}"


def _server_url(spec: dict[str, Any]) -> str:
    if spec.get("swagger"):
        host = spec.get("host")
        if not host:
            return ""
        schemes = spec.get("schemes") or ["https"]
        scheme = "https" if "https" in schemes else str(schemes[0])
        return f"{scheme}://{host}{spec.get('basePath') or ''}".rstrip("/")
    servers = spec.get("servers") or []
    if servers and isinstance(servers[0], dict):
        url = str(servers[0].get("url") or "")
        for name, variable in (servers[0].get("variables") or {}).items():
            url = url.replace("{" + name + "}", str((variable or {}).get("default", "")))
        return url.rstrip("/")
    return ""


# --- operations ----------------------------------------------------------------------


def _drafts(spec: dict[str, Any]) -> list[Draft]:
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
        prop = _bounded(_parameter_schema(parameter, is_swagger))
        prop.setdefault(
            "description", str(parameter.get("description") or f"The '{name}' {where} parameter.")
        )
        if not str(prop["description"]).strip():
            prop["description"] = f"The '{name}' {where} parameter."
        if where == "path":
            # A path parameter only fills the template, so its name can be made safe.
            safe = re.sub(r"[^A-Za-z0-9_]", "_", name)
            if not safe[0].isalpha() and safe[0] != "_":
                safe = f"p_{safe}"
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
    if not is_swagger:
        body_schema = _request_body_schema(operation.get("requestBody"))
    if body_schema is not None and draft.method in ("GET", "DELETE"):
        body_schema = None  # a GET or DELETE body is not sent
    if body_schema is not None:
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
            if isinstance(out.get(flag), bool):
                if out.pop(flag) and bound in out:
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
