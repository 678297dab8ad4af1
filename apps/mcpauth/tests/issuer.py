"""A real OpenID Connect issuer for the token-exchange tests: panva's oidc-provider
(tests/data/oidc-issuer/issuer.mjs, installed by `make oidc-issuer`) on a loopback port,
serving discovery and JWKS over HTTP and issuing signed JWT access tokens by
client_credentials. The test holds the issuer's private key too, to sign the tokens the
issuer would never issue (expired, not yet valid), and restarts it on the same port with a
new key to rotate."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "tests/data/oidc-issuer/issuer.mjs"
MODULES = ROOT / "var/oidc-issuer"
SECRET = "s" * 40
AUDIENCE = "https://grantry.example.test"
CLIENTS = [
    {
        "client_id": "triage-ci",
        "client_secret": SECRET,
        "claims": {"repository": "acme/triage", "ref": "refs/heads/main"},
    },
    {
        "client_id": "other-ci",
        "client_secret": SECRET,
        "claims": {"repository": "acme/other", "ref": "refs/heads/main"},
    },
]


def new_key() -> ECKey:
    kid = "k-" + secrets.token_hex(6)  # never one an earlier run left in the cache
    return ECKey.generate_key(
        "P-256", parameters={"kid": kid, "alg": "ES256", "use": "sig"}, private=True
    )


class Issuer:
    def __init__(self) -> None:
        self.port = 0
        self.key = new_key()
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {
            **os.environ,
            "ISSUER_MODULES": str(MODULES),
            "ISSUER_PORT": str(self.port),
            "ISSUER_KEYS": json.dumps([self.key.as_dict(private=True)]),
            "ISSUER_CLIENTS": json.dumps(CLIENTS),
        }
        self.process = subprocess.Popen(
            ["node", str(SCRIPT)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("listening "):
            self.stop()
            raise RuntimeError("oidc-provider did not start: run `make oidc-issuer`")
        self.port = int(line.split()[1])

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def rotate(self) -> None:
        """A new signing key, served on the same URL (the old one is gone)."""
        self.stop()
        self.key = new_key()
        self.restart()

    def restart(self) -> None:
        """Start again on the same port (after `stop()`)."""
        for _ in range(50):  # the port may take a moment to be free again
            try:
                self.start()
                return
            except RuntimeError:
                time.sleep(0.1)
        raise RuntimeError("oidc-provider did not restart")

    def issue(self, client_id: str = "triage-ci", audience: str = AUDIENCE) -> str:
        """A JWT the issuer itself signs (client_credentials, RFC 8707 resource)."""
        body = urllib.parse.urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": SECRET,
                "resource": audience,
            }
        ).encode()
        with urllib.request.urlopen(f"{self.url}/token", body, timeout=10) as response:
            return str(json.loads(response.read())["access_token"])

    def claims(self, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": "triage-ci",
            "repository": "acme/triage",
            "ref": "refs/heads/main",
            "jti": secrets.token_urlsafe(16),
            "iat": now,
            "exp": now + 300,
        }
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(self, claims: dict[str, Any], key: Any = None, header: Any = None) -> str:
        """A JWT signed with the issuer's own key (or `key`), for what it never issues."""
        key = key or self.key
        return jwt.encode(header or {"alg": "ES256", "kid": key.kid}, claims, key)
