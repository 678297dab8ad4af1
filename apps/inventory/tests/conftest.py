"""A local GitHub that answers like the documented endpoints (`GET /user` with the
scopes in `X-OAuth-Scopes`, 401 for an unknown or revoked token), pointed at through
GRANTRY_PROVIDER_URLS; and a key in GitHub's classic format, made up."""

from __future__ import annotations

import json
import secrets
import string
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pytest_django.fixtures import Settings

ALNUM = string.ascii_letters + string.digits


def github_key() -> str:
    return "ghp_" + "".join(secrets.choice(ALNUM) for _ in range(36))


class FakeGitHub:
    def __init__(self) -> None:
        self.accepted: set[str] = set()
        self.scopes = "repo, read:user"
        self.calls: list[tuple[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                outer.calls.append((self.command, self.path))
                body: Any
                extra: dict[str, str] = {}
                if token not in outer.accepted:
                    status, body = 401, {"message": "Bad credentials"}
                elif self.path.split("?")[0] == "/user":
                    status, body = 200, {"login": "octo", "id": 1}
                    extra = {"X-OAuth-Scopes": outer.scopes}
                else:
                    status, body = 200, [{"id": 7, "full_name": "octo/hello"}]
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def github(settings: Settings) -> Iterator[FakeGitHub]:
    fake = FakeGitHub()
    settings.GRANTRY_PROVIDER_URLS = {"github": fake.url}
    yield fake
    fake.close()
