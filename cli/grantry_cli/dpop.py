"""DPoP (RFC 9449) on the agent's side: a key of its own, and a fresh proof per request.

A Grantry token bound to a key works only with `Authorization: DPoP <token>` plus a `DPoP`
header: a JWT signed by that key naming the request's method and URL, the time, a unique
id and the token's hash. A copy of the token alone is useless to whoever steals it.

    grantry dpop-key ~/.config/grantry/dpop-key.json   # makes the key once, prints jkt + jwk
    grantry exchange --dpop-key … / grantry call --dpop-key …

From Python, with the official `mcp` client (its Streamable HTTP client takes an httpx2
client, and an `httpx2.Auth` signs each request as it is sent):

    from grantry_cli.dpop import DPoPAuth, DPoPKey
    auth = DPoPAuth(token, DPoPKey.load(path))
    async with httpx2.AsyncClient(auth=auth) as http, \\
            Client(streamable_http_client(url, http_client=http)) as client: ...

The signing is joserfc's (an optional extra: `pip install './cli[dpop]'`, which also brings
httpx2); this module is imported only by the commands that use a key, so the CLI itself
keeps no dependency. The key is an EC P-256 key (ES256), kept in a file only its owner can
read; it never leaves the machine.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx2
from joserfc import jws
from joserfc.jwk import ECKey

ALGORITHM = "ES256"
TYP = "dpop+jwt"


def _htu(url: str) -> str:
    """The request's URL without query and fragment (RFC 9449 §4.2)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", ""))


def access_token_hash(token: str) -> str:
    """`ath`: base64url(SHA-256(token)), no padding."""
    digest = hashlib.sha256(token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class DPoPKey:
    """One agent's proof-of-possession key (EC P-256)."""

    def __init__(self, key: ECKey) -> None:
        if not key.is_private:
            raise ValueError("A DPoP key must include its private part.")
        self._key = key

    @classmethod
    def generate(cls) -> DPoPKey:
        return cls(ECKey.generate_key("P-256"))

    @classmethod
    def load(cls, path: str | Path) -> DPoPKey:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(ECKey.import_key(data))

    @classmethod
    def load_or_create(cls, path: str | Path) -> tuple[DPoPKey, bool]:
        """The key in `path`, made (readable by its owner only) when there is none."""
        target = Path(path)
        if target.exists():
            return cls.load(target), False
        key = cls.generate()
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(key._key.as_dict(private=True), handle)
        return key, True

    @property
    def public_jwk(self) -> dict[str, Any]:
        return dict(self._key.as_dict(private=False))

    @property
    def jkt(self) -> str:
        """The RFC 7638 thumbprint Grantry binds a token to."""
        return str(self._key.thumbprint())

    def proof(self, method: str, url: str, access_token: str | None = None) -> str:
        """A fresh proof for one request (and, at a resource, its access token)."""
        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(24),
            "htm": method.upper(),
            "htu": _htu(url),
            "iat": int(time.time()),
        }
        if access_token is not None:
            claims["ath"] = access_token_hash(access_token)
        header = {"typ": TYP, "alg": ALGORITHM, "jwk": self.public_jwk}
        return jws.serialize_compact(header, json.dumps(claims), self._key, algorithms=[ALGORITHM])

    def headers(self, method: str, url: str, access_token: str) -> dict[str, str]:
        """The two headers of a request with a bound token."""
        return {
            "Authorization": f"DPoP {access_token}",
            "DPoP": self.proof(method, url, access_token),
        }

    def __repr__(self) -> str:  # never the private key
        return f"DPoPKey(jkt={self.jkt!r})"


class DPoPAuth(httpx2.Auth):
    """Signs every request an httpx2 client sends with a fresh proof for a bound token:
    what the `mcp` client needs to use a DPoP-bound Grantry token."""

    def __init__(self, token: str, key: DPoPKey) -> None:
        self._token = token
        self._key = key

    def auth_flow(
        self, request: httpx2.Request
    ) -> Generator[httpx2.Request, httpx2.Response, None]:
        for name, value in self._key.headers(request.method, str(request.url), self._token).items():
            request.headers[name] = value
        yield request

    def __repr__(self) -> str:  # never the token
        return f"DPoPAuth(jkt={self._key.jkt!r})"
