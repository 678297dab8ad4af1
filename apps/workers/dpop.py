"""Sender-constrained worker tokens: DPoP (RFC 9449).

A token bound to a key carries that public key's JWK thumbprint (RFC 7638, `jkt`; the
`WorkerToken.dpop_jkt` column). It is bound when it is obtained: minted with a public JWK
or a thumbprint (workers.services.token_mint), or issued at the OAuth token endpoint to a
request that carried a `DPoP` proof (the RFC 8693 exchange, apps.mcpauth.exchange, and the
MCP clients' authorization code and refresh grants, apps.mcpauth.validator). A bound token
works only as `Authorization: DPoP <token>` with a `DPoP: <proof>` header signed by that
key (workers.auth), so a stolen token alone is useless.

`proof_verify` is RFC 9449 §4.3, every step:

* one compact JWS of at most MAX_PROOF_CHARS, `typ` `dpop+jwt`, `alg` asymmetric
  (ALGORITHMS: no `none`, no HMAC);
* `jwk` a public RSA, EC or OKP key (no private member), which verifies the signature;
* `htm` the request's method, `htu` its URL without query and fragment. The URL is the one
  the client used: GRANTRY_BASE_URL (the public URL, as the OAuth metadata, the MCP resource
  and the redirect URIs already say; behind a proxy the Host header is not trusted) plus the
  request's path; scheme and host compare case-insensitively, a default port is the same as
  none, and the path compares percent-decoded (Django's `request.path` is decoded);
* `iat` within GRANTRY_DPOP_PROOF_SECONDS of now either way (clients' clocks drift);
* `jti` a string seen for the first time: a `cache.add` of (jkt, jti) kept for twice the
  window in the shared cache (Redis), so a replay is refused by every node; a proof old
  enough for its key to have expired is refused by `iat` instead;
* with an access token, `ath` = base64url(SHA-256(token)), and the key's thumbprint equal
  to the token's `jkt`.

Server-provided nonces (RFC 9449 §8, §9) are not used: the `iat` window and the replay
cache bound a proof's use to one request within about a minute. Nothing here queries the
database; an unbound token never comes here (workers.auth checks one string first).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry

TYP = "dpop+jwt"
ALGORITHMS = (
    "ES256",
    "ES384",
    "ES512",
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "EdDSA",
)
KEY_TYPES = ("RSA", "EC", "OKP")
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
MAX_PROOF_CHARS = 8 * 1024
MIN_RSA_BITS = 2048
MAX_JTI_CHARS = 256
# A SHA-256 thumbprint, base64url without padding.
JKT_PATTERN = re.compile(r"^[A-Za-z0-9_-]{43}$")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# The replay cache's key prefix (each key: a digest of the proof's key thumbprint and jti).
namespace = "grantry:dpop:jti"


class InvalidProof(Exception):
    """A proof that fails one check: `reason` is a short code (for the error's details and
    the audit event), `message` says what was wrong without echoing the proof."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Proof:
    jkt: str
    jti: str
    iat: int


def algs_supported() -> str:
    """The `algs` parameter of a DPoP challenge (RFC 9449 §7.1)."""
    return " ".join(ALGORITHMS)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def access_token_hash(token: str) -> str:
    """`ath`: base64url(SHA-256(the access token's ASCII))."""
    return _b64url(hashlib.sha256(token.encode("ascii")).digest())


def _public_key(jwk: Any) -> Any:
    """A public signing key from a JWK object, or InvalidProof("jwk")."""
    if not isinstance(jwk, dict) or jwk.get("kty") not in KEY_TYPES:
        raise InvalidProof("jwk", "The proof's `jwk` must be a public RSA, EC or OKP key.")
    if any(member in jwk for member in PRIVATE_MEMBERS):
        raise InvalidProof("jwk", "The proof's `jwk` must not contain a private key.")
    try:
        key = JWKRegistry.import_key(jwk)
    except (JoseError, ValueError, TypeError, KeyError):
        raise InvalidProof("jwk", "The proof's `jwk` is not a readable public key.") from None
    if key.is_private:
        raise InvalidProof("jwk", "The proof's `jwk` must not contain a private key.")
    if jwk["kty"] == "RSA" and getattr(key.raw_value, "key_size", 0) < MIN_RSA_BITS:
        raise InvalidProof(
            "jwk", f"The proof's `jwk` must be an RSA key of {MIN_RSA_BITS} bits or more."
        )
    return key


def jwk_thumbprint(jwk: Any) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public JWK (raises InvalidProof("jwk"))."""
    return str(_public_key(jwk).thumbprint())


def jkt_from(*, jwk: Any = None, jkt: str = "") -> str:
    """What a mint binds a token to, from a public JWK (an object or its JSON text) or a
    thumbprint; "" when neither is given. Raises ValueError with a message for a person."""
    if jwk not in (None, "", {}):
        if isinstance(jwk, str):
            try:
                jwk = json.loads(jwk)
            except ValueError:
                raise ValueError("The public key is not a JSON Web Key (JSON).") from None
        try:
            thumbprint = jwk_thumbprint(jwk)
        except InvalidProof as exc:
            raise ValueError(exc.message.replace("The proof's `jwk`", "The key")) from None
        if jkt and not hmac.compare_digest(jkt.strip(), thumbprint):
            raise ValueError("The thumbprint is not the given key's.")
        return thumbprint
    jkt = (jkt or "").strip()
    if jkt and not JKT_PATTERN.match(jkt):
        raise ValueError(
            "A key thumbprint (jkt) is 43 characters of base64url: the RFC 7638 SHA-256 "
            "thumbprint of the public key."
        )
    return jkt


def request_url(request: HttpRequest) -> str:
    """The URL the client sent this request to, as a DPoP proof's `htu` names it: the
    public base URL (GRANTRY_BASE_URL) and the request's path, no query."""
    base = str(settings.GRANTRY_BASE_URL).rstrip("/")
    return base + request.path_info


def _normalized(url: str) -> tuple[str, str, int | None, str] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    if port == _DEFAULT_PORTS[scheme]:
        port = None
    return scheme, parts.hostname.lower(), port, unquote(parts.path or "/")


def _same_url(htu: str, url: str) -> bool:
    mine = _normalized(url)
    return mine is not None and _normalized(htu) == mine


def _window() -> int:
    return int(getattr(settings, "GRANTRY_DPOP_PROOF_SECONDS", 60))


def _signed_claims(proof: str, jkt: str) -> tuple[str, dict[str, Any]]:
    """The proof's key thumbprint and its verified claims: one compact JWS, `typ`, an
    asymmetric `alg`, a public `jwk` (the token's key when `jkt` is given) that verifies it."""
    if len(proof) > MAX_PROOF_CHARS or "," in proof or proof.count(".") != 2:
        raise InvalidProof("malformed", "Send exactly one DPoP proof, a compact JWS.")
    try:
        header = dict(jws.extract_compact(proof.encode("ascii")).headers())
    except (JoseError, ValueError, UnicodeError, TypeError):
        raise InvalidProof("malformed", "The DPoP proof is not a compact JWS.") from None
    if header.get("typ") != TYP:
        raise InvalidProof("typ", "The DPoP proof's `typ` must be `dpop+jwt`.")
    if header.get("alg") not in ALGORITHMS:
        raise InvalidProof("alg", f"The DPoP proof must be signed with one of: {algs_supported()}.")
    key = _public_key(header.get("jwk"))
    thumbprint = str(key.thumbprint())
    if jkt and not hmac.compare_digest(thumbprint, jkt):
        raise InvalidProof("key", "The DPoP proof is signed by another key than the token's.")
    try:
        verified = jws.deserialize_compact(proof, key, algorithms=[str(header["alg"])])
        claims = json.loads(verified.payload)
    except (JoseError, ValueError, TypeError):
        raise InvalidProof(
            "signature", "The DPoP proof's signature does not verify with its key."
        ) from None
    if not isinstance(claims, dict):
        raise InvalidProof("claims", "The DPoP proof's payload is not a JSON object.")
    return thumbprint, claims


def _check_claims(
    claims: dict[str, Any], *, method: str, url: str, access_token: str | None, now: float
) -> None:
    jti, iat = claims.get("jti"), claims.get("iat")
    if not isinstance(jti, str) or not 1 <= len(jti) <= MAX_JTI_CHARS:
        raise InvalidProof("claims", "The DPoP proof needs a `jti` (a unique string).")
    if claims.get("htm") != method.upper():
        raise InvalidProof("htm", "The DPoP proof's `htm` is not this request's method.")
    htu = claims.get("htu")
    if not isinstance(htu, str) or not _same_url(htu, url):
        raise InvalidProof("htu", f"The DPoP proof's `htu` is not this request's URL ({url}).")
    if isinstance(iat, bool) or not isinstance(iat, int | float):
        raise InvalidProof("claims", "The DPoP proof needs an `iat` (seconds since the epoch).")
    if abs(now - iat) > _window():
        raise InvalidProof(
            "iat", f"The DPoP proof's `iat` is more than {_window()} s from the server's time."
        )
    if access_token is not None:
        ath = claims.get("ath")
        expected = access_token_hash(access_token).encode("ascii")
        if not isinstance(ath, str) or not hmac.compare_digest(
            ath.encode("ascii", "replace"), expected
        ):
            raise InvalidProof("ath", "The DPoP proof's `ath` is not this token's hash.")


def proof_verify(
    proof: str | None,
    *,
    method: str,
    url: str,
    access_token: str | None = None,
    jkt: str = "",
    now: float | None = None,
) -> Proof:
    """Check one DPoP proof for a request (`method`, `url`) and, at a protected resource,
    for the `access_token` it comes with, bound to `jkt`. Returns the proof's key
    thumbprint and jti; raises InvalidProof. The replay check is the last step, so a proof
    that fails any other check spends nothing."""
    if not proof:
        raise InvalidProof("missing", "Send a DPoP proof in the 'DPoP' header.")
    thumbprint, claims = _signed_claims(proof, jkt)
    now = time.time() if now is None else now
    _check_claims(claims, method=method, url=url, access_token=access_token, now=now)
    jti = str(claims["jti"])
    replay_key = f"{namespace}:" + hashlib.sha256(f"{thumbprint}\n{jti}".encode()).hexdigest()
    if not cache.add(replay_key, 1, timeout=2 * _window() + 1):
        raise InvalidProof("replayed", "This DPoP proof was used already; sign a new one.")
    return Proof(jkt=thumbprint, jti=jti, iat=int(claims["iat"]))
