"""The signing keys of an outside OpenID Connect issuer (a CI platform, a cluster), for the
token exchange (apps.mcpauth.exchange).

Only issuers a trust policy names are ever asked (the exchange looks the policy up first),
and only through the egress guard (apps.core.egress): the discovery document at
`<issuer>/.well-known/openid-configuration`, whose `issuer` must be the issuer itself, then
its `jwks_uri`. Only public asymmetric signing keys are kept (RSA, EC, OKP; never `oct`, never
a private part). The set is cached for GRANTRY_OIDC_JWKS_SECONDS; a token signed with a key
id the cached set lacks (the issuer rotated its key) fetches it again, at most once per
GRANTRY_OIDC_JWKS_REFETCH_SECONDS per issuer, so unknown key ids cannot make Grantry hammer
an issuer.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.core.cache import cache
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from apps.core.egress import egress_request
from apps.core.egress.errors import EgressError
from apps.core.json_input import HostileInput, loads

MAX_DOCUMENT_BYTES = 256 * 1024
ASYMMETRIC_KEY_TYPES = ("RSA", "EC", "OKP")
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k")


class IssuerUnavailable(Exception):
    """The issuer's discovery document or key set could not be read (or made no sense)."""


def _get_json(url: str) -> dict[str, Any]:
    try:
        response = egress_request(
            "GET",
            url,
            headers={"Accept": "application/json"},
            timeout=float(settings.GRANTRY_OIDC_FETCH_TIMEOUT),
            max_bytes=MAX_DOCUMENT_BYTES,
        )
    except EgressError as exc:
        raise IssuerUnavailable(str(exc)) from None
    if response.status_code != 200:
        raise IssuerUnavailable(f"HTTP {response.status_code}")
    try:
        document = loads(response.content, max_depth=8, max_nodes=5_000)
    except HostileInput as problem:
        raise IssuerUnavailable(problem.message) from None
    if not isinstance(document, dict):
        raise IssuerUnavailable("not a JSON object")
    return document


def _cache_key(issuer: str) -> str:
    return "grantry:oidc:jwks:" + hashlib.sha256(issuer.encode("utf-8")).hexdigest()


def _public_signing_keys(document: dict[str, Any]) -> list[dict[str, Any]]:
    keys = document.get("keys")
    if not isinstance(keys, list):
        raise IssuerUnavailable("no keys")
    return [
        key
        for key in keys
        if isinstance(key, dict)
        and key.get("kty") in ASYMMETRIC_KEY_TYPES
        and key.get("use", "sig") == "sig"
        and not any(member in key for member in PRIVATE_MEMBERS)
    ]


def _fetch(issuer: str) -> list[dict[str, Any]]:
    discovery = _get_json(issuer.rstrip("/") + "/.well-known/openid-configuration")
    jwks_uri = discovery.get("jwks_uri")
    if discovery.get("issuer") != issuer or not isinstance(jwks_uri, str):
        raise IssuerUnavailable("the discovery document names another issuer or no jwks_uri")
    keys = _public_signing_keys(_get_json(jwks_uri))
    cache.set(_cache_key(issuer), keys, timeout=int(settings.GRANTRY_OIDC_JWKS_SECONDS))
    return keys


def _key_set(keys: list[dict[str, Any]]) -> KeySet:
    try:
        return KeySet.import_key_set({"keys": keys})
    except (JoseError, ValueError, TypeError) as exc:
        raise IssuerUnavailable("a key of the set could not be read") from exc


def _kids(keys: list[dict[str, Any]]) -> set[str]:
    return {str(key.get("kid")) for key in keys if key.get("kid")}


def issuer_keys(issuer: str, kid: str | None) -> KeySet:
    """The issuer's public signing keys, fetched again once when `kid` is not among the
    cached ones (rotation). Raises IssuerUnavailable."""
    keys = cache.get(_cache_key(issuer))
    if keys is None:
        keys = _fetch(issuer)
    elif kid and kid not in _kids(keys):
        cooldown = int(settings.GRANTRY_OIDC_JWKS_REFETCH_SECONDS)
        refetch_key = _cache_key(issuer) + ":refetched"
        if cooldown <= 0 or cache.add(refetch_key, 1, timeout=cooldown):
            keys = _fetch(issuer)
    return _key_set(keys)
