"""Reading an OpenAPI document: fetch (through egress), caps, the $ref check before any
library sees it, validation and resolution by prance, and the document's facts."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import yaml
from django.conf import settings

from apps.providers.models import HTTP_METHODS
from apps.providers.openapi.drafts import Draft, drafts_of

DEFAULT_MAX_BYTES = 2_000_000
DEFAULT_MAX_OPERATIONS = 100


class OpenAPIImportError(ValueError):
    """The document cannot be imported; the message says why, for the admin."""


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
    except Exception as exc:  # a ValidationError with the reason
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
        drafts=drafts_of(resolved),
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
