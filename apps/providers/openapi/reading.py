"""Reading a document into an index of its operations. Pure Python, no Django: this runs
in the isolated child process (`isolated.py`), never in a web or Celery process.

Loading refuses YAML aliases and nesting deeper than MAX_DEPTH before anything builds
the tree (the events are read with libyaml, a flat loop); the document is then checked
against the OpenAPI meta-schema of its version (openapi-spec-validator ships them), and
each error is reported with its JSON pointer. An error inside one operation refuses that
operation only; anywhere else it refuses the document. Nothing is resolved here: an
operation's `$ref`s are followed only when it is drafted (`drafts.py`)."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from apps.providers.catalog import ACTION_METHODS

MAX_DEPTH = 100
# Every method a path item may hold; the ones Grantry does not send are listed, refused.
OPENAPI_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_MAX_ERRORS = 5


class DocumentError(ValueError):
    """The document cannot be imported; the message says why (and where), for the admin."""


@dataclass
class Operation:
    """One operation as the document lists it, before anything is resolved."""

    key: str  # "GET /pets/{petId}"
    method: str
    path: str
    operation_id: str = ""
    summary: str = ""
    tags: list[str] = field(default_factory=list)
    problem: str = ""  # why it can never be imported, known from the index alone

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Index:
    title: str
    version: str  # "OpenAPI 3.1.0", "Swagger 2.0"
    server_url: str
    operations: list[Operation]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- loading ---------------------------------------------------------------------------


def load(text: str) -> dict[str, Any]:
    """The document as a tree: JSON, or YAML without aliases; at most MAX_DEPTH deep."""
    if text.lstrip().startswith("{"):
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DocumentError(
                f"This is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})."
            ) from None
        except RecursionError:
            raise DocumentError(
                f"The document is nested more than {MAX_DEPTH} levels deep."
            ) from None
    else:
        loaded = _load_yaml(text)
    _check_tree(loaded)
    if not isinstance(loaded, dict):
        raise DocumentError("An OpenAPI document is a JSON or YAML object.")
    return loaded


def _yaml_loader() -> Any:
    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load_yaml(text: str) -> Any:
    depth = 0
    try:
        # Anchors and aliases let a small file expand without bound; deep nesting makes
        # the tree builder recurse. Both are refused from the event stream, before either.
        for event in yaml.parse(text, Loader=_yaml_loader()):
            if isinstance(event, yaml.AliasEvent):
                raise DocumentError(f"YAML aliases (*name) are not accepted (line {_line(event)}).")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise DocumentError(
                        f"The document is nested more than {MAX_DEPTH} levels deep "
                        f"(line {_line(event)})."
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        return yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "unreadable"
        raise DocumentError(f"This is neither JSON nor valid YAML{where}: {problem}.") from None


def _line(event: Any) -> int:
    mark = getattr(event, "start_mark", None)
    return mark.line + 1 if mark is not None else 0


def _check_tree(node: Any) -> None:
    """At most MAX_DEPTH deep, and text only: a JSON or YAML escape can spell a lone
    UTF-16 surrogate ("\\ud800"), which no database or UTF-8 encoder takes."""
    stack: list[tuple[Any, int, tuple[Any, ...]]] = [(node, 1, ())]
    while stack:
        current, depth, where = stack.pop()
        if depth > MAX_DEPTH:
            raise DocumentError(f"The document is nested more than {MAX_DEPTH} levels deep.")
        if isinstance(current, dict):
            for key, value in current.items():
                _check_text(key, where)
                stack.append((value, depth + 1, (*where, key)))
        elif isinstance(current, list):
            stack.extend((v, depth + 1, (*where, i)) for i, v in enumerate(current))
        else:
            _check_text(current, where)


def _check_text(value: Any, where: tuple[Any, ...]) -> None:
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            raise DocumentError(
                f"The document holds a lone UTF-16 surrogate (not text) at {pointer(where)}."
            ) from None


# --- validation --------------------------------------------------------------------------


def pointer(parts: Any) -> str:
    """An RFC 6901 JSON pointer (as a URI fragment: "#/paths/~1pets/get")."""
    return "#" + "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _meta_schema(document: dict[str, Any]) -> dict[str, Any]:
    from openapi_spec_validator.schemas import schema_v2, schema_v30, schema_v31

    if document.get("swagger"):
        if str(document["swagger"]) != "2.0":
            raise DocumentError(f"Swagger {document['swagger']} is not supported (only 2.0).")
        return dict(schema_v2)
    version = str(document.get("openapi"))
    if version.startswith("3.0"):
        return dict(schema_v30)
    if version.startswith("3.1"):
        return dict(schema_v31)
    raise DocumentError(f"OpenAPI {version[:20]} is not supported (3.0, 3.1 or Swagger 2.0).")


def _deepest(error: Any) -> Any:
    """The most specific cause of a oneOf/anyOf failure: its message names the field."""
    from jsonschema.exceptions import best_match

    while error.context:
        deeper = best_match(error.context)
        if deeper is None or len(deeper.absolute_path) < len(error.absolute_path):
            break
        error = deeper
    return error


def validation_problems(document: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """Meta-schema errors: those inside an operation by its key, the others as text."""
    import jsonschema

    schema = _meta_schema(document)
    validator = jsonschema.validators.validator_for(schema)(schema)
    per_operation: dict[str, str] = {}
    elsewhere: list[str] = []
    for error in validator.iter_errors(document):
        error = _deepest(error)
        where = list(error.absolute_path)
        text = f"{pointer(where)}: {_short(error.message)}"
        if len(where) >= 3 and where[0] == "paths" and str(where[2]).lower() in OPENAPI_METHODS:
            key = f"{str(where[2]).upper()} {where[1]}"
            per_operation.setdefault(key, f"It is not valid OpenAPI at {text}")
        elif len(elsewhere) < _MAX_ERRORS:
            elsewhere.append(text)
    return per_operation, elsewhere


def _short(message: str) -> str:
    return message if len(message) <= 200 else message[:200] + "…"


# --- the index ---------------------------------------------------------------------------


def index(document: dict[str, Any]) -> Index:
    """The document's facts and every operation it lists; refuses an invalid document."""
    if not (document.get("openapi") or document.get("swagger")):
        raise DocumentError(
            'This is not an OpenAPI document (no "openapi" or "swagger" version field).'
        )
    per_operation, elsewhere = validation_problems(document)
    if elsewhere:
        raise DocumentError("The document is not valid OpenAPI: " + "; ".join(elsewhere))
    operations: list[Operation] = []
    paths = document.get("paths") or {}
    for path, item in paths.items():
        item = _path_item(document, item)
        for method in OPENAPI_METHODS:
            operation = item.get(method)
            if not isinstance(operation, dict):
                continue
            key = f"{method.upper()} {path}"
            problem = per_operation.get(key, "")
            if method.upper() not in ACTION_METHODS:
                problem = f"Grantry does not send {method.upper()} requests."
            operations.append(
                Operation(
                    key=key,
                    method=method.upper(),
                    path=str(path),
                    operation_id=str(operation.get("operationId") or "")[:200],
                    summary=re.sub(r"\s+", " ", str(operation.get("summary") or ""))[:200],
                    tags=[str(t)[:100] for t in operation.get("tags") or [] if t][:20],
                    problem=problem,
                )
            )
    info = document.get("info") or {}
    return Index(
        title=str(info.get("title") or "")[:200],
        version=_version_label(document),
        server_url=_server_url(document),
        operations=operations,
    )


def _path_item(document: dict[str, Any], item: Any) -> dict[str, Any]:
    """A path item, following a local `$ref` (OpenAPI 3.1 allows one there)."""
    for _ in range(8):
        if not (isinstance(item, dict) and isinstance(item.get("$ref"), str)):
            break
        ref = item["$ref"]
        if not ref.startswith("#/"):
            return {}
        item = lookup(document, ref)
    return item if isinstance(item, dict) else {}


def lookup(document: Any, ref: str) -> Any:
    """The node a local reference ("#/components/schemas/Pet") points at; KeyError if none."""
    node = document
    for raw in ref[2:].split("/") if ref != "#" else []:
        part = raw.replace("~1", "/").replace("~0", "~")
        part = re.sub(r"%([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), part)
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(ref)
    return node


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


# --- choosing ------------------------------------------------------------------------------


def select(
    operations: list[dict[str, Any]],
    *,
    tags: list[str] | None = None,
    path_prefix: str = "",
    methods: list[str] | None = None,
    search: str = "",
    keys: list[str] | None = None,
) -> list[dict[str, Any]]:
    """The operations (index entries) an admin's choice matches, in document order.
    Each criterion given narrows the choice; `keys` names operations one by one."""
    words = search.lower().split()
    wanted_tags, wanted_methods = set(tags or []), {m.upper() for m in methods or []}
    wanted_keys = set(keys or [])
    chosen = []
    for op in operations:
        if wanted_keys and op["key"] not in wanted_keys:
            continue
        if wanted_tags and not wanted_tags & set(op["tags"]):
            continue
        if wanted_methods and op["method"] not in wanted_methods:
            continue
        if path_prefix and not op["path"].startswith(path_prefix):
            continue
        text = " ".join([op["key"], op["operation_id"], op["summary"], *op["tags"]]).lower()
        if words and not all(w in text for w in words):
            continue
        chosen.append(op)
    return chosen
