"""RFC 8693 token exchange at Grantry's one OAuth token endpoint: a workload's signed
identity (a GitHub Actions or GitLab CI job token, a Kubernetes service-account token, any
OpenID Connect issuer's JWT) becomes a short-lived `gry_` token of the worker whose trust
policy accepts it (apps.workers.trust), so no long-lived secret sits in the runtime.

    POST /oauth/token/
    grant_type=urn:ietf:params:oauth:grant-type:token-exchange
    subject_token=<the JWT>
    subject_token_type=urn:ietf:params:oauth:token-type:jwt   (or …:id_token)
    audience=<organization slug>/<worker name>

The request names the worker in `audience`, so no token can land on a worker nobody meant:
that worker's enabled trust policies for the token's issuer are the only candidates, tried
in the order they were added; the first whose audience the token carries and whose claim
conditions all match wins. An unknown worker and a worker with no policy for the issuer get
the same answer. `scope` and `resource` are refused (the policy names the role), and
`requested_token_type`, when sent, must be an access token.

A request with a `DPoP` proof header (RFC 9449 §5) gets a token bound to the proof's key
(`token_type: DPoP`), which then works only with proofs of that key (apps.workers.dpop). A
worker that requires DPoP gets nothing without one (`invalid_dpop_proof`). The proof is
checked (method POST, this endpoint's public URL, `iat`, a first-seen `jti`) after the subject
token, so a bad proof spends nothing of the subject token.

The JWT is verified with joserfc against the issuer's published keys (apps.mcpauth.jwks):
asymmetric algorithms only (no `none`, no HMAC, so a token "signed" with the public key is
refused), `iss`, `aud`, `exp`, `nbf`, `iat` checked with LEEWAY seconds, `sub` and `jti`
required, `exp` at most GRANTRY_EXCHANGE_MAX_SUBJECT_HOURS ahead; each `jti` of an issuer is
exchanged once (a Redis `add` kept until the token expires). A token typed as an ID-JAG
(`typ: oauth-id-jag+jwt`) is refused, and ID-JAG policies are never candidates: those grants
go through the jwt-bearer grant (apps.mcpauth.idjag, which reuses this module's
verification). The answer is RFC 8693 §2.2 (`access_token`, `issued_token_type`,
`token_type`, `expires_in`); a refusal is RFC 6749 §5.2 with a fixed description per reason.
Every exchange is audited (`token.exchanged`, `token.exchange_refused`) with the issuer,
subject and matched claims, never the token; a refusal counts like a failed authentication
and the throttle answers 429 once there are too many (apps.accounts.auth_failures).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from joserfc import jws, jwt
from joserfc.errors import ExpiredTokenError, JoseError, MissingClaimError
from joserfc.jwt import ClaimsOption, JWTClaimsRegistry

from apps.accounts.auth_failures import auth_failure_count, throttled_for
from apps.audit.models import ActorType, Outcome
from apps.audit.services import audit_record
from apps.core.json_input import HostileInput, loads
from apps.core.models import tenant_rows
from apps.mcpauth.jwks import IssuerUnavailable, issuer_keys
from apps.organizations.models import Organization
from apps.workers import dpop, trust
from apps.workers.models import TrustPolicy, TrustPreset, Worker

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
SUBJECT_TOKEN_TYPES = (
    "urn:ietf:params:oauth:token-type:jwt",
    "urn:ietf:params:oauth:token-type:id_token",
)
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
LEEWAY = 60
MAX_SUBJECT_TOKEN_CHARS = 16 * 1024

# The documented reasons, the only descriptions a refusal carries.
NO_POLICY = "No trust policy of this worker accepts tokens of this issuer."
NOT_ASYMMETRIC = (
    "The subject token must be signed with an asymmetric algorithm (RS, PS, ES, EdDSA)."
)
BAD_SIGNATURE = "The subject token's signature does not verify with the issuer's published keys."
EXPIRED = "The subject token has expired."
NOT_YET = "The subject token is not valid yet."
BAD_CLAIMS = "The subject token lacks a required claim (iss, sub, exp, jti) or carries a bad one."
TOO_LONG = "The subject token lives too long to be exchanged."
WRONG_AUDIENCE = "The subject token's audience is not one this worker's trust policies expect."
NO_MATCH = "The subject token's claims match no trust policy of this worker."
REPLAYED = "This subject token was exchanged already."
DPOP_REQUIRED = "This worker requires DPoP: send a DPoP proof of the key to bind the token to."
NOT_SUBJECT_TOKEN = "An ID-JAG is presented with the jwt-bearer grant, not exchanged."
ID_JAG_TYP = "oauth-id-jag+jwt"


def is_id_jag(header: dict[str, Any]) -> bool:
    """Whether a JOSE header types its token as an ID-JAG (`typ` compares case-insensitively
    and may carry the `application/` prefix, RFC 7515 §4.1.9)."""
    typ = header.get("typ")
    if not isinstance(typ, str):
        return False
    typ = typ.lower()
    return typ.removeprefix("application/") == ID_JAG_TYP


@dataclass
class Refusal(Exception):
    error: str
    description: str
    reason: str  # a short code for the audit event
    status: int = 400


@dataclass
class _Context:
    """What is known about the request so far, for the audit event."""

    issuer: str = ""
    subject: str = ""
    verified: bool = False
    worker: Worker | None = None
    audience: str = ""


def _one(request: HttpRequest, name: str, *, required: bool = True) -> str:
    values = request.POST.getlist(name)
    if len(values) > 1:
        raise Refusal("invalid_request", f"Send `{name}` once.", "repeated_parameter")
    if not values or not values[0]:
        if required:
            raise Refusal("invalid_request", f"`{name}` is required.", "missing_parameter")
        return ""
    return str(values[0])


def peek_jwt(subject_token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a compact JWS, not verified yet (to find the policy)."""
    if len(subject_token) > MAX_SUBJECT_TOKEN_CHARS:
        raise Refusal("invalid_request", "The subject_token is too long.", "too_long")
    try:
        compact = jws.extract_compact(subject_token.encode("ascii"))
        claims = loads(compact.payload, max_depth=8, max_nodes=1_000)
        header = dict(compact.headers())
    except (JoseError, HostileInput, ValueError, UnicodeError):
        raise Refusal("invalid_request", "The subject_token is not a JWT.", "malformed") from None
    if not isinstance(claims, dict):
        raise Refusal("invalid_request", "The subject_token is not a JWT.", "malformed")
    return header, claims


def _worker(audience: str) -> Worker | None:
    slug, slash, name = audience.partition("/")
    if not slash:
        raise Refusal(
            "invalid_target",
            "Name the worker in `audience` as <organization slug>/<worker name>.",
            "bad_audience",
        )
    organization = Organization.objects.filter(slug=slug).first()
    if organization is None:
        return None
    return tenant_rows(Worker, organization).filter(name=name).first()


def verify_jwt(
    subject_token: str,
    issuer: str,
    kid: str | None,
    now: int,
    *,
    essential: tuple[str, ...] = (),
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The verified header and claims, or a Refusal. `iss`, `sub`, `exp` and `jti` are always
    required, `essential` names more (the ID-JAG grant adds `iat`)."""
    try:
        keys = issuer_keys(issuer, kid)
    except IssuerUnavailable:
        raise Refusal(
            "temporarily_unavailable",
            "The issuer's keys could not be read; try again later.",
            "issuer_unavailable",
            status=503,
        ) from None
    try:
        token = jwt.decode(subject_token, keys, algorithms=list(ALGORITHMS))
    except (JoseError, ValueError, TypeError):
        raise Refusal("invalid_grant", BAD_SIGNATURE, "bad_signature") from None
    required: dict[str, ClaimsOption] = {
        name: {"essential": True} for name in ("sub", "exp", "jti", *essential)
    }
    registry = JWTClaimsRegistry(
        now=now, leeway=LEEWAY, iss={"essential": True, "value": issuer}, **required
    )
    claims = dict(token.claims)
    try:
        registry.validate(claims)
    except ExpiredTokenError:
        raise Refusal("invalid_grant", EXPIRED, "expired") from None
    except MissingClaimError:
        raise Refusal("invalid_grant", BAD_CLAIMS, "bad_claims") from None
    except JoseError as exc:
        if getattr(exc, "claim", "") in ("nbf", "iat"):  # not before, or issued in the future
            raise Refusal("invalid_grant", NOT_YET, "not_yet_valid") from None
        raise Refusal("invalid_grant", BAD_CLAIMS, "bad_claims") from None
    if not isinstance(claims["sub"], str) or not isinstance(claims["jti"], str):
        raise Refusal("invalid_grant", BAD_CLAIMS, "bad_claims")
    if claims["exp"] <= now:  # inside the leeway: still no token that is born expired
        raise Refusal("invalid_grant", EXPIRED, "expired")
    if claims["exp"] > now + int(settings.GRANTRY_EXCHANGE_MAX_SUBJECT_HOURS) * 3600:
        raise Refusal("invalid_grant", TOO_LONG, "lives_too_long")
    return dict(token.header), claims


def _match(
    policies: list[TrustPolicy], claims: dict[str, Any]
) -> tuple[TrustPolicy, dict[str, str]]:
    audiences = claims.get("aud")
    audiences = [audiences] if isinstance(audiences, str) else audiences
    if not isinstance(audiences, list):
        raise Refusal("invalid_grant", WRONG_AUDIENCE, "wrong_audience")
    candidates = [p for p in policies if p.audience in audiences]
    if not candidates:
        raise Refusal("invalid_grant", WRONG_AUDIENCE, "wrong_audience")
    for policy in candidates:
        matched = trust.claims_match(policy, claims)
        if matched is not None:
            return policy, matched
    raise Refusal("invalid_grant", NO_MATCH, "claims_mismatch")


def first_use(issuer: str, jti: str, exp: int, now: int) -> bool:
    key = "grantry:exchange:jti:" + hashlib.sha256(f"{issuer}\n{jti}".encode()).hexdigest()
    return bool(cache.add(key, 1, timeout=max(1, exp - now + LEEWAY)))


def dpop_binding(request: HttpRequest, worker: Worker) -> str:
    """The thumbprint of the key the new token is bound to ("" for a bearer token)."""
    proof = request.headers.get("DPoP")
    if proof is None:
        if worker.require_dpop:
            raise Refusal("invalid_dpop_proof", DPOP_REQUIRED, "dpop_missing")
        return ""
    try:
        return dpop.proof_verify(proof, method="POST", url=dpop.request_url(request)).jkt
    except dpop.InvalidProof as problem:
        raise Refusal("invalid_dpop_proof", problem.message, f"dpop_{problem.reason}") from None


def _check_header(header: dict[str, Any]) -> None:
    if header.get("alg") not in ALGORITHMS:
        raise Refusal("invalid_grant", NOT_ASYMMETRIC, "algorithm")
    if is_id_jag(header):  # RFC 8725 §3.11: an ID-JAG is a grant for the jwt-bearer grant only
        raise Refusal("invalid_grant", NOT_SUBJECT_TOKEN, "typ")


def _exchange(request: HttpRequest, context: _Context) -> dict[str, Any]:
    if _one(request, "grant_type") != GRANT_TYPE:
        raise Refusal("unsupported_grant_type", "Not a token exchange.", "grant_type")
    subject_token = _one(request, "subject_token")
    if _one(request, "subject_token_type") not in SUBJECT_TOKEN_TYPES:
        raise Refusal(
            "invalid_request",
            "subject_token_type must be urn:ietf:params:oauth:token-type:jwt or …:id_token.",
            "subject_token_type",
        )
    if _one(request, "requested_token_type", required=False) not in ("", ACCESS_TOKEN_TYPE):
        raise Refusal("invalid_request", "Only access tokens are issued.", "requested_token_type")
    if _one(request, "scope", required=False):
        raise Refusal(
            "invalid_scope", "Leave `scope` out: the trust policy names the role.", "scope"
        )
    if _one(request, "resource", required=False):
        raise Refusal(
            "invalid_target",
            "Name the worker in `audience`; `resource` is not used here.",
            "resource",
        )
    context.audience = _one(request, "audience")
    header, unverified = peek_jwt(subject_token)
    issuer = unverified.get("iss")
    context.issuer = issuer if isinstance(issuer, str) else ""
    subject = unverified.get("sub")
    context.subject = subject if isinstance(subject, str) else ""
    context.worker = _worker(context.audience)
    policies = (
        list(
            context.worker.trust_policies.filter(enabled=True, issuer=context.issuer)
            .exclude(preset=TrustPreset.IDJAG)  # those vouch for MCP clients (apps.mcpauth.idjag)
            .select_related("role")
            .order_by("id")
        )
        if context.worker is not None and context.issuer and context.worker.is_active()
        else []
    )
    if not policies:
        raise Refusal("invalid_target", NO_POLICY, "no_policy")
    _check_header(header)
    now = int(time.time())
    kid = header.get("kid")
    _, claims = verify_jwt(
        subject_token, context.issuer, kid if isinstance(kid, str) else None, now
    )
    context.verified = True
    policy, matched = _match(policies, claims)
    return _mint(request, context, policy, matched, claims, now)


def _mint(
    request: HttpRequest,
    context: _Context,
    policy: TrustPolicy,
    matched: dict[str, str],
    claims: dict[str, Any],
    now: int,
) -> dict[str, Any]:
    """The accepted exchange's token: bound to the DPoP proof's key when there is one (a
    bad proof is refused before the subject token's `jti` is spent), then minted."""
    jkt = dpop_binding(request, policy.worker)
    if not first_use(context.issuer, claims["jti"], int(claims["exp"]), now):
        raise Refusal("invalid_grant", REPLAYED, "replayed")
    try:
        token, raw = trust.exchanged_token_mint(
            policy=policy,
            subject=claims["sub"],
            matched=matched,
            subject_expires_at=datetime.fromtimestamp(int(claims["exp"]), tz=UTC),
            dpop_jkt=jkt,
        )
    except ValidationError:
        raise Refusal("invalid_target", NO_POLICY, "worker_disabled") from None
    return {
        "access_token": raw,
        "issued_token_type": ACCESS_TOKEN_TYPE,
        "token_type": "DPoP" if jkt else "Bearer",
        "expires_in": max(1, int(token.expires_at.timestamp()) - now),
    }


def _record_refusal(request: HttpRequest, refusal: Refusal, context: _Context) -> None:
    auth_failure_count(request)
    worker = context.worker
    with transaction.atomic():
        audit_record(
            action="token.exchange_refused",
            outcome=Outcome.FAILURE,
            reason=refusal.description,
            organization_id=worker.organization_id if worker is not None else None,
            metadata={
                "code": refusal.reason,
                "error": refusal.error,
                "issuer": context.issuer[:255],
                "subject": context.subject[:255],
                "signature_verified": context.verified,
                "audience": context.audience[:255],
            },
            worker_id=worker.pk if worker is not None else None,
            actor_type=ActorType.ANONYMOUS,
        )


def json_response(
    body: dict[str, Any], status: int, headers: dict[str, str] | None = None
) -> JsonResponse:
    response = JsonResponse(body, status=status)
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def throttled_response(request: HttpRequest, refused: str) -> JsonResponse | None:
    """429 with Retry-After while this address is throttled for failed authentications
    (`refused`: what it sent too many of, e.g. "exchanges"); None otherwise."""
    retry_after = throttled_for(request)
    if retry_after is None:
        return None
    return json_response(
        {
            "error": "rate_limited",
            "error_description": f"Too many refused {refused} from this address; "
            f"retry after {retry_after} s.",
        },
        429,
        {"Retry-After": str(retry_after)},
    )


def token_exchange_response(request: HttpRequest) -> JsonResponse:
    """The token endpoint's answer to a token-exchange request."""
    throttled = throttled_response(request, "exchanges")
    if throttled is not None:
        return throttled
    context = _Context()
    try:
        body = _exchange(request, context)
    except Refusal as refusal:
        _record_refusal(request, refusal, context)
        return json_response(
            {"error": refusal.error, "error_description": refusal.description}, refusal.status
        )
    return json_response(body, 200)
