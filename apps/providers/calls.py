"""From an action and its input to the upstream request: validation and building.

The broker calls `validate_input()` to answer an agent with field-level errors,
then `build_request()` to get the method, URL, query, body and headers. The
credential is not added here (that is `apps.connections.credentials.auth_for`).

Routing of input keys:
* `{name}` placeholders in the path take their value from the input, each as
  ONE percent-encoded path segment ("a/b" becomes "a%2Fb"); ".", ".." and ""
  are refused, so no value can climb out of its segment.
* `action.query_params` go to the query string (booleans as "true"/"false").
* The rest (or exactly `action.body_params`) form the body, placed into
  `action.body_template` when the action has one. GET/DELETE/HEAD never send one.
* `action.wire_names` renames keys on the wire (Graph's "$top" is "top" in the input).
* A form-encoded body (`body_encoding="form"`: Stripe, Twilio, imported form bodies)
  spells nested values in brackets (`metadata[key]=value`).
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from apps.providers.catalog import PLACEHOLDER_RE, Action, Provider

BODYLESS_METHODS = frozenset({"GET", "DELETE", "HEAD", "OPTIONS"})
_MAX_MESSAGE = 300
# A base URL parameter becomes part of a host name (or one path segment): DNS labels only.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_LABELS_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_URL_FIELDS = ("api_base_url", "authorize_url", "token_url", "revocation_url", "userinfo_url")


@dataclass(frozen=True)
class FieldError:
    path: str  # JSON pointer into the input ("" is the input itself), e.g. "/priority"
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


class InvalidInput(ValueError):
    """The input does not fit the action. `errors` says where and why."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.path or '/'}: {e.message}" for e in errors))
        self.errors = errors


class BaseURLParamError(ValueError):
    """A per-connection URL parameter (e.g. Zendesk's subdomain) is missing or unsafe."""


@dataclass(frozen=True)
class PreparedCall:
    method: str
    url: str
    query: dict[str, Any]
    json_body: dict[str, Any] | None
    headers: dict[str, str]
    # Form-encoded body (Stripe); send as `data=`. Never set together with json_body.
    form_body: dict[str, Any] | None = None
    path: str = field(default="")  # the expanded path, for audit and proxy-rule matching


# --- validation ---------------------------------------------------------------

_VALIDATORS: OrderedDict[str, Draft202012Validator] = OrderedDict()
_VALIDATOR_CACHE_SIZE = 2048


def _validator_for(schema: dict[str, Any]) -> Draft202012Validator:
    # Custom actions are rebuilt per lookup, so cache by content, not identity.
    cache_key = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    validator = _VALIDATORS.get(cache_key)
    if validator is None:
        validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        _VALIDATORS[cache_key] = validator
        if len(_VALIDATORS) > _VALIDATOR_CACHE_SIZE:
            _VALIDATORS.popitem(last=False)
    else:
        _VALIDATORS.move_to_end(cache_key)
    return validator


def _pointer(parts: Any) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _field_errors(error: ValidationError) -> list[FieldError]:
    base = list(error.absolute_path)
    message = error.message[:_MAX_MESSAGE]
    instance = error.instance
    # Point at the property itself, not at the object that lacks or carries it.
    if error.validator == "required" and isinstance(instance, dict):
        missing = [p for p in error.validator_value if p not in instance and repr(p) in message]
        if missing:
            return [FieldError(_pointer([*base, missing[0]]), "This field is required.")]
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        known = set((error.schema or {}).get("properties", {}))
        extras = sorted(k for k in instance if k not in known)
        if extras:
            return [
                FieldError(_pointer([*base, k]), "This field is not accepted by this action.")
                for k in extras
            ]
    return [FieldError(_pointer(base), message)]


def validate_input(action: Action, input: Any) -> list[FieldError]:
    """Field-level errors of `input` against the action's JSON Schema; [] when valid."""
    if not isinstance(input, dict):
        return [FieldError("", "The input must be a JSON object.")]
    errors: list[FieldError] = []
    for error in _validator_for(action.input_schema).iter_errors(input):
        errors.extend(_field_errors(error))
    unique = {(e.path, e.message): e for e in errors}
    return sorted(unique.values(), key=lambda e: (e.path, e.message))


# --- building -----------------------------------------------------------------


def resolve_base_url_params(provider: Provider, params: dict[str, Any] | None) -> Provider:
    """The provider with its URL templates filled from a connection's parameters.

    Only declared parameters are used; each must be present and consist of DNS
    labels, so a value can never change the scheme, host suffix or path."""
    if not provider.base_url_params:
        return provider
    params = params or {}
    values: dict[str, str] = {}
    for name in provider.base_url_params:
        value = params.get(name)
        if not isinstance(value, str) or not value:
            raise BaseURLParamError(f"The connection needs a value for '{name}'.")
        if not _LABELS_RE.match(value):
            raise BaseURLParamError(f"'{name}' may contain only letters, digits, hyphens and dots.")
        values[name] = value

    def fill(url: str) -> str:
        return PLACEHOLDER_RE.sub(lambda m: values.get(m.group(1), m.group(0)), url)

    filled: dict[str, Any] = {f: fill(getattr(provider, f)) for f in _URL_FIELDS}
    return replace(provider, **filled)


def _segment(name: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidInput([FieldError(_pointer([name]), "Must be a string or an integer.")])
    text = str(value)
    if text in ("", ".", ".."):
        raise InvalidInput([FieldError(_pointer([name]), "Not a valid path segment.")])
    # Encoded, 'a/../b' stays one segment here, but upstreams that decode %2F before
    # routing would climb out of it (and past a rule's prefix constraint).
    if "\\" in text or ".." in text.split("/"):
        raise InvalidInput(
            [FieldError(_pointer([name]), "Must not contain '..' parts or backslashes.")]
        )
    return quote(text, safe="")


def _query_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return [_query_value(v) for v in value]
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return value


def _fill_template(template: Any, body: dict[str, Any]) -> Any:
    if isinstance(template, str):
        if template == "$input":
            return body
        if template.startswith("$input."):
            return body.get(template[len("$input.") :], _MISSING)
        return template
    if isinstance(template, dict):
        filled = {k: _fill_template(v, body) for k, v in template.items()}
        kept = {k: v for k, v in filled.items() if v is not _MISSING}
        # A nested object whose every value came from absent input is left out too.
        return kept if kept or not template else _MISSING
    if isinstance(template, list):
        return [v for v in (_fill_template(t, body) for t in template) if v is not _MISSING]
    return template


_MISSING = object()


def _form_fields(body: Any) -> dict[str, Any]:
    """A form body with its nested values in the bracket notation that form-encoded APIs
    read (Stripe's `metadata[order_id]=6735`, `items[0][price]=…`). A list of plain
    values repeats its key (OpenAPI's default form style, Twilio's)."""
    fields: dict[str, Any] = {}

    def put(key: str, value: Any) -> None:
        if isinstance(value, dict):
            for name, inner in value.items():
                put(f"{key}[{name}]", inner)
        elif isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
            for position, inner in enumerate(value):
                put(f"{key}[{position}]", inner)
        else:
            fields[key] = value

    for name, value in (body or {}).items():
        put(str(name), value)
    return fields


def build_request(
    provider: Provider,
    action: Action,
    input: dict[str, Any],
    *,
    base_url_params: dict[str, Any] | None = None,
) -> PreparedCall:
    """The upstream request for `action` with `input`. Raises InvalidInput or
    BaseURLParamError; never touches credentials or the network."""
    errors = validate_input(action, input)
    if errors:
        raise InvalidInput(errors)
    provider = resolve_base_url_params(provider, base_url_params)

    path_keys = action.path_params
    path = PLACEHOLDER_RE.sub(lambda m: _segment(m.group(1), input[m.group(1)]), action.path)
    query = {
        action.wire_names.get(k, k): _query_value(input[k])
        for k in action.query_params
        if input.get(k) is not None
    }
    method = action.method.upper()
    body: dict[str, Any] | None = None
    if method not in BODYLESS_METHODS:
        taken = set(path_keys) | set(action.query_params)
        keys = action.body_params if action.body_params is not None else tuple(input)
        body = {k: input[k] for k in keys if k in input and k not in taken}
        if action.body_template is not None:
            filled = _fill_template(action.body_template, body)
            body = {} if filled is _MISSING else filled
        elif action.wire_names:
            body = {action.wire_names.get(k, k): v for k, v in body.items()}
    if action.body_encoding == "form":
        json_body, form_body = None, _form_fields(body) if body is not None else None
    else:
        json_body, form_body = body, None
    return PreparedCall(
        method=method,
        url=provider.api_base_url.rstrip("/") + path,
        query=query,
        json_body=json_body,
        headers=dict(provider.default_headers),
        form_body=form_body,
        path=path,
    )
