"""`grantry scan --check` against local servers that answer like each provider's
documented endpoint: the scopes the provider tells, "refused" for a dead key, and a
plain "cannot tell" where the provider does not say."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cli_fakes import key
from grantry_cli import check
from grantry_cli.detect import detect

LIVE = {
    key(n)
    for n in (
        "github_classic",
        "github_fine",
        "gitlab",
        "slack_bot",
        "stripe_live",
        "stripe_restricted",
        "hubspot",
        "airtable",
        "linear",
    )
}


class Provider(BaseHTTPRequestHandler):
    """One server, every provider's endpoint, keyed by path (the overrides point each
    provider's base URL at a prefix)."""

    seen: ClassVar[list[tuple[str, str]]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _token(self) -> str:
        auth = self.headers.get("Authorization", "")
        return auth.removeprefix("Bearer ") or self.headers.get("PRIVATE-TOKEN", "")

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path))
        token = self._token()
        path = self.path.split("?")[0]
        if token not in LIVE:
            self._send(401, {"message": "Bad credentials"})
        elif path == "/github/user":
            scopes = {"X-OAuth-Scopes": "repo, read:user"} if token.startswith("ghp_") else {}
            self._send(200, {"login": "octo"}, scopes)
        elif path == "/gitlab/personal_access_tokens/self":
            self._send(
                200, {"id": 4, "name": "agent", "scopes": ["read_api", "read_user"], "active": True}
            )
        elif path == "/stripe/v1/balance" and token.startswith("sk_"):
            self._send(200, {"object": "balance"})
        elif path in ("/stripe/v1/customers", "/stripe/v1/invoices"):
            self._send(200, {"object": "list", "data": []})
        elif path.startswith("/stripe/v1/"):
            self._send(
                403, {"error": {"type": "invalid_request_error", "code": "secret_key_required"}}
            )
        elif path == "/airtable/v0/meta/whoami":
            self._send(200, {"id": "usrX", "scopes": ["data.records:read", "schema.bases:read"]})
        else:
            self._send(404, {})

    def do_POST(self) -> None:
        self.seen.append(("POST", self.path))
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path == "/slack/auth.test":
            if self._token() not in LIVE:
                self._send(200, {"ok": False, "error": "invalid_auth"})
            else:
                self._send(
                    200, {"ok": True, "user": "bot"}, {"X-OAuth-Scopes": "chat:write,channels:read"}
                )
        elif self.path == "/hubspot/oauth/v2/private-apps/get/access-token-info":
            if body.get("tokenKey") in LIVE:
                self._send(200, {"userId": 1, "hubId": 2, "scopes": ["crm.objects.contacts.read"]})
            else:
                self._send(400, {"status": "error", "message": "token not found"})
        elif self.path == "/linear/graphql":
            ok = self.headers.get("Authorization") in LIVE
            self._send(200 if ok else 401, {"data": {"viewer": {"id": "u"}}} if ok else {})
        else:
            self._send(404, {})


@pytest.fixture
def urls() -> Iterator[dict[str, str]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Provider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    providers = ("github", "gitlab", "slack", "stripe", "hubspot", "airtable", "linear", "openai")
    yield check.base_urls([f"{p}={base}/{p}" for p in providers])
    server.shutdown()
    server.server_close()


def _check(value: str, urls: dict[str, str]) -> check.ScopeCheck:
    [secret] = detect(value)
    return check.check(secret, urls)


def test_scopes_the_providers_tell(urls: dict[str, str]) -> None:
    assert _check(key("github_classic"), urls).scopes == ["read:user", "repo"]
    assert _check(key("gitlab"), urls).scopes == ["read_api", "read_user"]
    assert _check(key("slack_bot"), urls).scopes == ["channels:read", "chat:write"]
    assert _check(key("hubspot"), urls).scopes == ["crm.objects.contacts.read"]
    assert _check(key("airtable"), urls).scopes == ["data.records:read", "schema.bases:read"]
    assert _check(key("stripe_live"), urls).scopes == [
        "all (secret key: every resource, read and write)"
    ]
    restricted = _check(key("stripe_restricted"), urls)
    assert restricted.scopes == ["customers:read", "invoices:read"]
    assert "does not list a restricted key's permissions" in restricted.note


def test_where_the_provider_cannot_tell(urls: dict[str, str]) -> None:
    fine = _check(key("github_fine"), urls)
    assert (fine.status, fine.scopes) == ("live", None)
    assert "fine-grained" in fine.note
    linear = _check(key("linear"), urls)
    assert (linear.status, linear.scopes) == ("live", None)
    assert _check(key("google_api"), urls).status == "unknown"


def test_a_dead_key_is_refused(urls: dict[str, str]) -> None:
    dead = "ghp_k3Jd9QwLm2Xz8RtY5vBn1Hc4Pg7Fa6Se0Uo2"
    assert _check(dead, urls).status == "refused"
    assert _check("xoxb-4821937560-9183746502-k3Jd9QwLm2Xz8RtY5vBn1Hc4", urls).status == "refused"
    assert _check("pat-eu1-" + "0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9", urls).status == "refused"


def test_an_unreachable_provider_is_said_plainly() -> None:
    urls = check.base_urls(["github=http://127.0.0.1:1"])
    result = _check(key("github_classic"), urls)
    assert result.status == "unreachable"
    assert key("github_classic") not in result.note


def test_scan_check_json_carries_the_check(
    urls: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from grantry_cli.main import main

    (tmp_path / ".env").write_text(f"GITLAB_TOKEN={key('gitlab')}\n")
    monkeypatch.setenv("GRANTRY_CHECK_URLS", f"gitlab={urls['gitlab']}")
    assert main(["scan", "--json", "--check", str(tmp_path)]) == 0
    [finding] = json.loads(capsys.readouterr().out)["findings"]
    assert finding["check"] == {"status": "live", "scopes": ["read_api", "read_user"], "note": ""}
