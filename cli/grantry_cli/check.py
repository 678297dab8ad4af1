"""`grantry scan --check`: ask each provider what a key can do, where the provider tells.

Each check calls the provider's documented endpoint for that question and says where a
provider cannot tell. Base URLs are overridable (`--check-url github=http://…` or
`GRANTRY_CHECK_URLS="github=http://…,slack=http://…"`), which is how the tests run
them against local servers.

* GitHub: `GET /user`; a classic or OAuth token's scopes are in `X-OAuth-Scopes`. A
  fine-grained token has none there, and GitHub has no endpoint that lists its
  permissions.
* GitLab: `GET /personal_access_tokens/self` lists the token's scopes.
* Slack: `POST /auth.test`; scopes in `X-OAuth-Scopes`; `ok: false` means refused.
* Stripe: a secret key (`sk_`) has every permission (Stripe's documentation); a
  restricted key's permissions are not listed by the API, so the check probes a few
  read endpoints (one record each) and names those it may read.
* HubSpot: `POST /oauth/v2/private-apps/get/access-token-info` lists the scopes.
* Airtable: `GET /v0/meta/whoami` lists the token's scopes.
* OpenAI, Anthropic, Linear, Notion, Asana: the key is checked (live or refused); the
  provider does not list its permissions.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from grantry_cli import http
from grantry_cli.detect import Secret

BASE_URLS = {
    "github": "https://api.github.com",
    "gitlab": "https://gitlab.com/api/v4",
    "slack": "https://slack.com/api",
    "stripe": "https://api.stripe.com",
    "hubspot": "https://api.hubapi.com",
    "airtable": "https://api.airtable.com",
    "openai": "https://api.openai.com",
    "anthropic": "https://api.anthropic.com",
    "linear": "https://api.linear.app",
    "notion": "https://api.notion.com",
    "asana": "https://app.asana.com/api/1.0",
}


@dataclass(frozen=True)
class ScopeCheck:
    status: str  # live | refused | unknown | unreachable
    scopes: list[str] | None = None  # None: the provider does not tell
    note: str = ""
    details: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {"status": self.status, "scopes": self.scopes, "note": self.note}


def base_urls(overrides: list[str] | None = None) -> dict[str, str]:
    urls = dict(BASE_URLS)
    specs = [s for s in os.environ.get("GRANTRY_CHECK_URLS", "").split(",") if s.strip()]
    for spec in [*specs, *(overrides or [])]:
        key, sep, url = spec.partition("=")
        if not sep or not url.strip():
            raise ValueError(f"'{spec}' is not provider=URL")
        urls[key.strip()] = url.strip().rstrip("/")
    return urls


def _refused_or(answer: http.Answer, live: Callable[[], ScopeCheck]) -> ScopeCheck:
    if answer.status in (401, 403):
        return ScopeCheck("refused", note=f"the provider refused the key (HTTP {answer.status})")
    if 200 <= answer.status < 300:
        return live()
    return ScopeCheck("unknown", note=f"the provider answered HTTP {answer.status}")


def _split(header: str, sep: str = ",") -> list[str]:
    return sorted(s.strip() for s in header.split(sep) if s.strip())


def _github(secret: Secret, base: str) -> ScopeCheck:
    answer = http.request(
        "GET",
        f"{base}/user",
        headers={
            "Authorization": f"Bearer {secret.value}",
            "Accept": "application/vnd.github+json",
        },
    )

    def live() -> ScopeCheck:
        if "x-oauth-scopes" in answer.headers:
            return ScopeCheck("live", _split(answer.headers["x-oauth-scopes"]))
        return ScopeCheck("live", None, "GitHub does not list a fine-grained token's permissions")

    return _refused_or(answer, live)


def _gitlab(secret: Secret, base: str) -> ScopeCheck:
    answer = http.request(
        "GET", f"{base}/personal_access_tokens/self", headers={"PRIVATE-TOKEN": secret.value}
    )
    body = answer.json() if answer.status == 200 else None
    scopes = body.get("scopes") if isinstance(body, dict) else None
    return _refused_or(
        answer,
        lambda: ScopeCheck("live", sorted(map(str, scopes)) if isinstance(scopes, list) else None),
    )


def _slack(secret: Secret, base: str) -> ScopeCheck:
    answer = http.request(
        "POST", f"{base}/auth.test", headers={"Authorization": f"Bearer {secret.value}"}
    )
    body = answer.json()
    if answer.status == 200 and isinstance(body, dict) and body.get("ok") is False:
        return ScopeCheck("refused", note=f"Slack answered {str(body.get('error'))[:60]}")
    return _refused_or(
        answer,
        lambda: ScopeCheck(
            "live",
            _split(answer.headers.get("x-oauth-scopes", "")) or None,
            "" if "x-oauth-scopes" in answer.headers else "Slack did not list the scopes",
        ),
    )


STRIPE_PROBES = ("customers", "charges", "invoices", "payment_intents", "refunds", "balance")


def _stripe(secret: Secret, base: str) -> ScopeCheck:
    auth = {"Authorization": f"Bearer {secret.value}"}
    if secret.kind == "stripe_secret_key":
        answer = http.request("GET", f"{base}/v1/balance", headers=auth)
        return _refused_or(
            answer, lambda: ScopeCheck("live", ["all (secret key: every resource, read and write)"])
        )
    readable = []
    for resource in STRIPE_PROBES:
        suffix = "" if resource == "balance" else "?limit=1"
        answer = http.request("GET", f"{base}/v1/{resource}{suffix}", headers=auth)
        if answer.status == 401:
            return ScopeCheck("refused", note="Stripe refused the key (HTTP 401)")
        if 200 <= answer.status < 300:
            readable.append(f"{resource}:read")
    return ScopeCheck(
        "live",
        readable,
        "Stripe does not list a restricted key's permissions: "
        "these reads were probed; writes are not tried",
    )


def _hubspot(secret: Secret, base: str) -> ScopeCheck:
    answer = http.request(
        "POST",
        f"{base}/oauth/v2/private-apps/get/access-token-info",
        body={"tokenKey": secret.value},
    )
    body = answer.json()
    scopes = body.get("scopes") if isinstance(body, dict) else None
    if answer.status in (400, 401, 403, 404) and not scopes:
        return ScopeCheck("refused", note=f"HubSpot does not know the token (HTTP {answer.status})")
    return _refused_or(
        answer,
        lambda: ScopeCheck("live", sorted(map(str, scopes)) if isinstance(scopes, list) else None),
    )


def _airtable(secret: Secret, base: str) -> ScopeCheck:
    answer = http.request(
        "GET", f"{base}/v0/meta/whoami", headers={"Authorization": f"Bearer {secret.value}"}
    )
    body = answer.json()
    scopes = body.get("scopes") if isinstance(body, dict) else None
    return _refused_or(
        answer,
        lambda: ScopeCheck("live", sorted(map(str, scopes)) if isinstance(scopes, list) else None),
    )


def _liveness(
    path: str,
    header: str = "Authorization",
    prefix: str = "Bearer ",
    method: str = "GET",
    body: object = None,
    extra: dict[str, str] | None = None,
    note: str = "",
) -> Callable[[Secret, str], ScopeCheck]:
    def check(secret: Secret, base: str) -> ScopeCheck:
        answer = http.request(
            method,
            f"{base}{path}",
            body=body,
            headers={header: f"{prefix}{secret.value}", **(extra or {})},
        )
        return _refused_or(answer, lambda: ScopeCheck("live", None, note))

    return check


CHECKS: dict[str, Callable[[Secret, str], ScopeCheck]] = {
    "github": _github,
    "gitlab": _gitlab,
    "slack": _slack,
    "stripe": _stripe,
    "hubspot": _hubspot,
    "airtable": _airtable,
    "openai": _liveness("/v1/models", note="OpenAI does not list a key's permissions"),
    "anthropic": _liveness(
        "/v1/models",
        header="x-api-key",
        prefix="",
        extra={"anthropic-version": "2023-06-01"},
        note="Anthropic does not list a key's permissions",
    ),
    "linear": _liveness(
        "/graphql",
        prefix="",
        method="POST",
        body={"query": "{ viewer { id } }"},
        note="Linear does not list an API key's permissions",
    ),
    "notion": _liveness(
        "/v1/users/me",
        extra={"Notion-Version": "2022-06-28"},
        note="Notion does not list an integration's capabilities",
    ),
    "asana": _liveness(
        "/users/me", note="an Asana personal access token acts with its user's full access"
    ),
}


def check(secret: Secret, urls: dict[str, str]) -> ScopeCheck:
    run = CHECKS.get(secret.provider)
    if run is None:
        name = secret.provider or "the provider"
        return ScopeCheck("unknown", note=f"{name} cannot be asked what this key can do")
    try:
        return run(secret, urls[secret.provider])
    except http.Unreachable as exc:
        return ScopeCheck("unreachable", note=str(exc))
