"""The CLI's one HTTP client: urllib.request, never following a redirect (urllib would
carry the Authorization header, so the key, to wherever a redirect points), with a
deadline and a cap on what it reads."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

TIMEOUT = 15.0
MAX_BODY = 5 * 1024 * 1024


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


class Unreachable(Exception):
    """No HTTP answer at all (the message never carries a header or a key)."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None


def request(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    body: Any = None,
    form: dict[str, str] | None = None,
    timeout: float = TIMEOUT,
) -> Answer:
    """`body` is sent as JSON, `form` as application/x-www-form-urlencoded (OAuth)."""
    data = None
    sent = {"Accept": "application/json", "User-Agent": "grantry-cli", **(headers or {})}
    if body is not None:
        data = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    elif form is not None:
        data = urllib.parse.urlencode(form).encode()
        sent["Content-Type"] = "application/x-www-form-urlencoded"
    if not url.startswith(("https://", "http://")):
        raise Unreachable(f"not an http(s) URL: {url.split('?')[0]}")
    req = urllib.request.Request(url, data=data, headers=sent, method=method)  # noqa: S310 - scheme checked above
    try:
        with _OPENER.open(req, timeout=timeout) as response:
            return Answer(response.status, _lower(response.headers), response.read(MAX_BODY))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, _lower(exc.headers), exc.read(MAX_BODY) if exc.fp else b"")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unreachable(f"{url.split('?')[0]} could not be reached: {reason}") from None


def _lower(headers: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in (headers or {}).items()}
