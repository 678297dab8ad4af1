"""Fixtures of the MCP OAuth tests: an HTTPS server for Client ID Metadata Documents."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pytest_django.fixtures import Settings

from tests.tls import self_signed

CALLBACK = "http://127.0.0.1:9/callback"


@pytest.fixture(autouse=True)
def _fresh_registration_limit(settings: Settings) -> None:  # noqa: ARG001 - set up first, for its side effect
    """Each test starts with the whole hourly registration budget of its address."""
    from django.core.cache import cache

    for address in ("127.0.0.1", "::1"):
        cache.delete(f"grantry:mcp:dcr:{address}")


class MetadataServer:
    """Serves client id metadata documents over HTTPS: `documents[path] = body`."""

    def __init__(self, cert: Path, key: Path) -> None:
        documents: dict[str, bytes] = {}
        self.documents = documents
        self.fetches: list[str] = []
        fetches = self.fetches

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fetches.append(self.path)
                body = documents.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def document(self, path: str, **overrides: Any) -> str:
        url = f"{self.url}{path}"
        body = {
            "client_id": url,
            "client_name": "Grantry test client",
            "redirect_uris": [CALLBACK],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            **overrides,
        }
        self.documents[path] = json.dumps(body).encode()
        return url


@pytest.fixture
def metadata_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MetadataServer]:
    """An HTTPS server whose self-signed certificate Grantry's egress trusts (the
    egress TLS context is swapped for one with this CA; everything else is as in
    production: the fetch goes through apps.core.egress)."""
    from apps.core import egress
    from apps.core.egress.transport import make_tls_context

    cert, key = self_signed(tmp_path, host="127.0.0.1")
    context = make_tls_context()
    context.load_verify_locations(cafile=str(cert))
    monkeypatch.setattr(egress, "_tls", context)
    monkeypatch.setattr(egress, "_managers", {})
    server = MetadataServer(cert, key)
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()
