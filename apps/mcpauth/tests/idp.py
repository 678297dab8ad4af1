"""A company identity provider for the ID-JAG tests, on a loopback port over real HTTP.

oidc-provider (tests/data/oidc-issuer) cannot issue Identity Assertion JWT Authorization
Grants (it has no RFC 8693 exchange to the `id-jag` token type), so this small IdP does what
an enterprise IdP does for MCP's enterprise-managed authorization: it serves its OpenID
discovery document and its JWKS, and at its token endpoint it trades a person's sign-in (here
an opaque session it handed out) for an ID-JAG, signed with joserfc, for the MCP clients its
administrator allowed (`policy`). `rotate()` replaces the signing key: the JWKS then serves
only the new one. The test also signs what the IdP would never issue (`sign`)."""

from __future__ import annotations

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from joserfc import jwt
from joserfc.jwk import ECKey

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_JAG_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id-jag"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
TYP = "oauth-id-jag+jwt"


def new_key() -> ECKey:
    kid = "idp-" + secrets.token_hex(6)  # never one an earlier run left in Grantry's cache
    return ECKey.generate_key(
        "P-256", parameters={"kid": kid, "alg": "ES256", "use": "sig"}, private=True
    )


class CompanyIdP:
    def __init__(self) -> None:
        self.key = new_key()
        self.sessions: dict[str, str] = {}  # opaque sign-in → the person's `sub`
        self.policy: dict[str, set[str]] = {}  # MCP client id → the people it may act for
        self.requests: list[str] = []
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                idp.requests.append(f"GET {self.path}")
                if self.path == "/.well-known/openid-configuration":
                    self._json(200, idp.discovery())
                elif self.path == "/jwks":
                    self._json(200, {"keys": [idp.key.as_dict(private=False)]})
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:
                idp.requests.append(f"POST {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if self.path != "/token":
                    self._json(404, {"error": "not_found"})
                    return
                status, body = idp.token_exchange(form)
                self._json(status, body)

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "jwks_uri": f"{self.url}/jwks",
            "token_endpoint": f"{self.url}/token",
            "grant_types_supported": ["authorization_code", TOKEN_EXCHANGE],
            "id_token_signing_alg_values_supported": ["ES256"],
        }

    def rotate(self) -> None:
        """A new signing key; the JWKS no longer has the old one."""
        self.key = new_key()

    def sign_in(self, subject: str) -> str:
        """A person signs in (the SSO leg is not under test): an opaque session token."""
        session = secrets.token_urlsafe(16)
        self.sessions[session] = subject
        return session

    def token_exchange(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """RFC 8693 at the IdP: a signed-in person's session for an ID-JAG for one MCP client
        and one resource, if the administrator's policy lets that client act for them."""
        subject = self.sessions.get(form.get("subject_token", ""))
        client_id = form.get("client_id", "")
        if (
            form.get("grant_type") != TOKEN_EXCHANGE
            or form.get("requested_token_type") != ID_JAG_TOKEN_TYPE
            or subject is None
        ):
            return 400, {"error": "invalid_request"}
        if subject not in self.policy.get(client_id, set()):
            return 400, {"error": "invalid_grant", "error_description": "Not allowed by policy"}
        claims = self.claims(
            sub=subject,
            aud=form.get("audience"),
            resource=form.get("resource"),
            client_id=client_id,
            scope=form.get("scope") or None,
        )
        return 200, {
            "issued_token_type": ID_JAG_TOKEN_TYPE,
            "access_token": self.sign(claims),
            "token_type": "N_A",
            "expires_in": 300,
        }

    def claims(self, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url,
            "sub": "alice",
            "jti": secrets.token_urlsafe(16),
            "iat": now,
            "exp": now + 300,
        }
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(self, claims: dict[str, Any], key: Any = None, header: Any = None) -> str:
        key = key or self.key
        header = header or {"alg": "ES256", "kid": key.kid, "typ": TYP}
        return jwt.encode(header, claims, key, default_type=None)  # `typ` only as given
