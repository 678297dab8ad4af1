"""The agent's side of DPoP (grantry_cli.dpop): the key file, the proof's shape, and an
httpx2 client that signs each request it sends. That Grantry accepts these proofs (and
refuses everything else) is apps/broker/tests/test_dpop.py, against the real server."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import httpx2
from grantry_cli.dpop import DPoPAuth, DPoPKey
from joserfc import jws
from joserfc.jwk import ECKey


def _claims(proof: str, key: DPoPKey) -> tuple[dict[str, object], dict[str, object]]:
    public = ECKey.import_key(key.public_jwk)
    verified = jws.deserialize_compact(proof, public, algorithms=["ES256"])
    return dict(verified.headers()), json.loads(verified.payload)


def test_the_key_file_is_the_owners_and_is_made_once(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "dpop-key.json"
    key, created = DPoPKey.load_or_create(path)
    assert created
    assert path.stat().st_mode & 0o777 == 0o600
    again, created_again = DPoPKey.load_or_create(path)
    assert not created_again
    assert again.jkt == key.jkt
    assert "d" not in key.public_jwk
    assert "gry_x" not in repr(DPoPAuth("gry_x", key))


def test_a_proof_names_the_request_and_the_token() -> None:
    key = DPoPKey.generate()
    proof = key.proof("post", "https://grantry.example.com/mcp?x=1#f", "gry_token")
    header, claims = _claims(proof, key)
    assert header["typ"] == "dpop+jwt"
    assert header["alg"] == "ES256"
    assert header["jwk"] == key.public_jwk
    assert claims["htm"] == "POST"
    assert claims["htu"] == "https://grantry.example.com/mcp"
    digest = hashlib.sha256(b"gry_token").digest()
    assert claims["ath"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert "ath" not in _claims(key.proof("POST", "https://g.example/oauth/token/"), key)[1]


def test_the_auth_signs_a_fresh_proof_for_every_request() -> None:
    key = DPoPKey.generate()
    auth = DPoPAuth("gry_token", key)
    seen = []
    for _ in range(2):
        request = httpx2.Request("GET", "https://grantry.example.com/api/v1/whoami")
        signed = next(auth.auth_flow(request))
        assert signed.headers["Authorization"] == "DPoP gry_token"
        seen.append(_claims(signed.headers["DPoP"], key)[1]["jti"])
    assert seen[0] != seen[1]
