"""Grantry's public APIs as the CLI uses them: the management API with a personal token
(`gryp_…`, saved by `grantry login`) and the agent API with a worker token (`gry_…`).

The login lives in `~/.config/grantry/cli.json` (or `$GRANTRY_CONFIG`), readable by its
owner only. `GRANTRY_URL`, `GRANTRY_ORG` and `GRANTRY_API_TOKEN` override it.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grantry_cli import http


class APIFailure(Exception):
    """Grantry answered with its standard error body (or could not be reached)."""

    def __init__(self, message: str, *, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def config_path() -> Path:
    explicit = os.environ.get("GRANTRY_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "grantry" / "cli.json"


@dataclass(frozen=True)
class Login:
    url: str
    org: str
    token: str

    def __repr__(self) -> str:
        return f"<Login {self.url} org={self.org}>"


def save_login(login: Login) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"url": login.url, "org": login.org, "token": login.token}, handle)
    os.chmod(path, 0o600)
    return path


def load_login() -> Login:
    saved: dict[str, Any] = {}
    path = config_path()
    if path.exists():
        try:
            saved = json.loads(path.read_text())
        except ValueError:
            raise APIFailure(f"{path} is not valid JSON: run `grantry login` again.") from None
    url = os.environ.get("GRANTRY_URL") or saved.get("url") or ""
    org = os.environ.get("GRANTRY_ORG") or saved.get("org") or ""
    token = os.environ.get("GRANTRY_API_TOKEN") or saved.get("token") or ""
    if not (url and org and token):
        raise APIFailure("Not logged in: run `grantry login --url URL --org ORG` first.")
    return Login(url.rstrip("/"), org, token)


def _raise_for(answer: http.Answer) -> None:
    if answer.status < 400:
        return
    body = answer.json()
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        message = str(error.get("message", ""))
        fields = (error.get("details") or {}).get("fields")
        if fields:
            message += " " + "; ".join(
                f"{k}: {' '.join(map(str, v))}" for k, v in fields.items() if isinstance(v, list)
            )
        raise APIFailure(message.strip(), status=answer.status, code=str(error.get("code", "")))
    raise APIFailure(f"Grantry answered HTTP {answer.status}.", status=answer.status)


class ManagementAPI:
    def __init__(self, login: Login) -> None:
        self.login = login

    def _url(self, path: str) -> str:
        org = urllib.parse.quote(self.login.org, safe="")
        return f"{self.login.url}/api/v1/orgs/{org}/{path}"

    def call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            answer = http.request(
                method,
                self._url(path),
                body=body,
                headers={"Authorization": f"Bearer {self.login.token}"},
            )
        except http.Unreachable as exc:
            raise APIFailure(str(exc)) from None
        _raise_for(answer)
        return answer.json()

    def get(self, path: str) -> Any:
        return self.call("GET", path)

    def post(self, path: str, body: Any = None) -> Any:
        return self.call("POST", path, body if body is not None else {})


def agent_call(
    url: str, token: str, action: str, payload: dict[str, Any], *, dpop_key: Any = None
) -> Any:
    """POST /api/v1/actions/<action>/execute with a worker token; with a `dpop_key`
    (grantry_cli.dpop.DPoPKey) as `DPoP <token>` plus a fresh proof of that key."""
    target = f"{url.rstrip('/')}/api/v1/actions/{urllib.parse.quote(action, safe='')}/execute"
    headers = (
        dpop_key.headers("POST", target, token)
        if dpop_key is not None
        else {"Authorization": f"Bearer {token}"}
    )
    try:
        answer = http.request("POST", target, body=payload, headers=headers)
    except http.Unreachable as exc:
        raise APIFailure(str(exc)) from None
    _raise_for(answer)
    return answer.json()


TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"


def token_exchange(
    url: str, subject_token: str, audience: str, *, dpop_key: Any = None
) -> dict[str, Any]:
    """RFC 8693 at Grantry's token endpoint: a workload's signed JWT for a short-lived
    worker token of `audience` (<org slug>/<worker name>), bound to `dpop_key`
    (grantry_cli.dpop.DPoPKey) when given: the request carries a DPoP proof of it."""
    endpoint = f"{url.rstrip('/')}/oauth/token/"
    headers = {"DPoP": dpop_key.proof("POST", endpoint)} if dpop_key is not None else {}
    try:
        answer = http.request(
            "POST",
            endpoint,
            headers=headers,
            form={
                "grant_type": TOKEN_EXCHANGE,
                "subject_token": subject_token,
                "subject_token_type": JWT_TOKEN_TYPE,
                "audience": audience,
            },
        )
    except http.Unreachable as exc:
        raise APIFailure(str(exc)) from None
    body = answer.json()
    if answer.status != 200 or not isinstance(body, dict) or "access_token" not in body:
        error = body if isinstance(body, dict) else {}
        raise APIFailure(
            f"{error.get('error', f'HTTP {answer.status}')}: {error.get('error_description', '')}"
        )
    return body


def github_actions_token(audience: str) -> str:
    """The running GitHub Actions job's OIDC token for `audience` (needs `id-token: write`)."""
    request_url = os.environ.get("ACTIONS_ID_TOKEN_REQUEST_URL", "")
    request_token = os.environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "")
    if not request_url or not request_token:
        raise APIFailure(
            "Not in a GitHub Actions job with `permissions: id-token: write` "
            "(ACTIONS_ID_TOKEN_REQUEST_URL is not set)."
        )
    separator = "&" if "?" in request_url else "?"
    try:
        answer = http.request(
            "GET",
            f"{request_url}{separator}audience={urllib.parse.quote(audience, safe='')}",
            headers={"Authorization": f"bearer {request_token}"},
        )
    except http.Unreachable as exc:
        raise APIFailure(str(exc)) from None
    body = answer.json()
    if answer.status != 200 or not isinstance(body, dict) or not body.get("value"):
        raise APIFailure(f"GitHub did not issue an OIDC token (HTTP {answer.status}).")
    return str(body["value"])
