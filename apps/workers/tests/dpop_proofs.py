"""DPoP proofs for tests: honest ones (signed with joserfc, as a client would) and the
forgeries an attacker would try (another key, the victim's public key with the attacker's
signature, `alg: none`, HS256, a stale `iat`, a wrong `ath`, `htm` or `htu`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from joserfc import jws
from joserfc.jwk import ECKey


def new_key() -> ECKey:
    return ECKey.generate_key("P-256", private=True)


def public_jwk(key: ECKey) -> dict[str, Any]:
    return dict(key.as_dict(private=False))


def jkt(key: ECKey) -> str:
    return str(key.thumbprint())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def ath(token: str) -> str:
    return _b64(hashlib.sha256(token.encode()).digest())


def claims_for(method: str, url: str, token: str | None = None, **extra: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "jti": secrets.token_urlsafe(16),
        "htm": method,
        "htu": url,
        "iat": int(time.time()),
    }
    if token is not None:
        claims["ath"] = ath(token)
    claims.update(extra)
    return {k: v for k, v in claims.items() if v is not None}


def proof(
    key: ECKey,
    method: str,
    url: str,
    token: str | None = None,
    *,
    header: dict[str, Any] | None = None,
    signer: ECKey | None = None,
    **claims: Any,
) -> str:
    """A proof by `key` (its public JWK in the header), signed by `signer` (default: the
    same key); `header` and `claims` override or add members (None drops a claim)."""
    protected = {"typ": "dpop+jwt", "alg": "ES256", "jwk": public_jwk(key), **(header or {})}
    payload = json.dumps(claims_for(method, url, token, **claims))
    return jws.serialize_compact(protected, payload, signer or key, algorithms=["ES256"])


def unsigned_proof(key: ECKey, method: str, url: str, token: str | None = None) -> str:
    """`alg: none`: no signature at all."""
    header = {"typ": "dpop+jwt", "alg": "none", "jwk": public_jwk(key)}
    payload = claims_for(method, url, token)
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}."


def hmac_proof(key: ECKey, method: str, url: str, token: str | None = None) -> str:
    """HS256 "signed" with the key's public JWK as the secret, for a verifier that lets the
    proof choose its algorithm."""
    header = _b64(json.dumps({"typ": "dpop+jwt", "alg": "HS256", "jwk": public_jwk(key)}).encode())
    payload = _b64(json.dumps(claims_for(method, url, token)).encode())
    secret = json.dumps(public_jwk(key)).encode()
    mac = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(mac)}"
