"""What is sent: the request target, body and headers built from egress_request's
arguments the way httpx built them, and the header check made before anything goes out."""

from __future__ import annotations

import json as jsonlib
import re
from base64 import b64encode
from collections.abc import Mapping
from typing import Any
from urllib.parse import SplitResult, quote, unquote, unquote_plus, urlencode

DEFAULT_HEADERS = {
    "Accept": "*/*",
    "Accept-Encoding": "gzip, deflate",
    "User-Agent": "Grantry/1.0",
}


def _as_text(value: Any) -> str:
    # JSON-style booleans and None as empty, as httpx encoded params and forms.
    if value is True:
        return "true"
    if value is False:
        return "false"
    return "" if value is None else str(value)


def _pairs(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for key, value in values.items():
        if isinstance(value, list | tuple):
            pairs.extend((key, _as_text(item)) for item in value)
        else:
            pairs.append((key, _as_text(value)))
    return pairs


def _target(parts: SplitResult, params: Mapping[str, Any] | None) -> str:
    """Path and query to send. `params` replace same-named keys of the URL's query, as
    with httpx: a credential placed in the query is sent once, never next to a value
    the URL already carried under that name."""
    query = parts.query
    if params:
        added = urlencode(_pairs(params))
        kept = [
            piece
            for piece in query.split("&")
            if piece and unquote_plus(piece.partition("=")[0]) not in params
        ]
        query = "&".join([*kept, added] if added else kept)
    target = (parts.path or "/") + (f"?{query}" if query else "")
    # Percent-encode what may not travel raw (spaces, non-ASCII); "%" stays as it is.
    return quote(target, safe="!$%&'()*+,/:;=?@[]~")


def _body(
    json: Any, content: bytes | str | None, data: Mapping[str, Any] | None
) -> tuple[bytes | None, str | None]:
    """The body and the Content-Type it implies (httpx's precedence)."""
    if content is not None:
        # Empty is no body (POST, PUT and PATCH still say Content-Length: 0).
        return (content.encode() if isinstance(content, str) else content) or None, None
    if data:
        return urlencode(_pairs(data)).encode(), "application/x-www-form-urlencoded"
    if json is not None:
        encoded = jsonlib.dumps(json, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return encoded.encode(), "application/json"
    return None, None


# An RFC 9110 token, and control characters but the tab (http.client lets a folded
# value and NUL through).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _headers_are_valid(headers: dict[str, str]) -> bool:
    # Values in one pass: joined by a tab, which a value may hold anyway.
    return _CONTROL.search("\t".join(headers.values())) is None and all(
        map(_TOKEN.fullmatch, headers)
    )


def _headers(
    given: Mapping[str, str] | None, content_type: str | None, parts: SplitResult
) -> dict[str, str]:
    """Defaults, then the caller's headers (names as given) over them."""
    names = {name.lower() for name in given} if given else set()
    headers = {k: v for k, v in DEFAULT_HEADERS.items() if k.lower() not in names}
    if content_type and "content-type" not in names:
        headers["Content-Type"] = content_type
    if (parts.username or parts.password) and "authorization" not in names:
        # Credentials in the URL become Basic auth, as httpx did.
        userinfo = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + b64encode(userinfo.encode()).decode()
    if given:
        headers.update(given)
    return headers
