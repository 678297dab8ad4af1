"""MCP's enterprise-managed authorization at Grantry's one OAuth token endpoint: an MCP
client presents an Identity Assertion JWT Authorization Grant (ID-JAG,
draft-ietf-oauth-identity-assertion-authz-grant) that the company's identity provider
issued it, with the RFC 7523 jwt-bearer grant, and gets the same access token the MCP
OAuth flow issues, with no consent screen: the company decided in its IdP.

    POST /oauth/token/
    grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer
    assertion=<the ID-JAG>
    client_id=… & client_secret=…   (or HTTP Basic; a public client names itself)
    resource=<Grantry>/mcp          (optional; the ID-JAG's `resource` must say it)
    scope=mcp                       (optional)

The IdP is trusted through a trust policy with the ID-JAG preset (apps.workers.trust): its
issuer, the MCP client ids it may vouch for, optional claim conditions, the worker and role
the client becomes, and a maximum lifetime. Checks, each refusal a fixed RFC 6749 §5.2 answer:

* the client authenticates as Grantry's MCP clients do (django-oauth-toolkit, through
  `GrantryValidator`: a confidential client with its secret, a public one by its id), or
  `invalid_client` (401);
* the JOSE header's `typ` is `oauth-id-jag+jwt` and the algorithm asymmetric (no `none`, no
  HMAC); the signature verifies with the issuer's published keys (apps.mcpauth.jwks: found
  by discovery, through the egress guard, cached, a new `kid` fetched again, an unknown one
  refused); `iss`, `sub`, `exp`, `iat`, `jti` required, `exp`, `nbf`, `iat` checked with
  the exchange's leeway;
* `aud` is Grantry's OAuth issuer (one value), `resource` Grantry's /mcp, and `client_id`
  the client that authenticated;
* a policy for the issuer names that client and its conditions match; when policies of more
  than one organization would accept it, the grant is refused (no organization can take
  another's people by trusting their IdP too); the organization's MCP client policy must
  allow the client;
* `scope`: Grantry has one, `mcp`; the request's and the ID-JAG's (when present) must allow it;
* the `jti` is used once per issuer (the Redis `add` the token exchange uses, shared by all
  nodes, kept until the assertion expires).

The token is a `gry_` worker token bound to the /mcp resource and naming the client, exactly
what the OAuth flow issues (its lifetime is the organization's MCP token lifetime, capped by
the policy's maximum), so /mcp accepts it unchanged; no refresh token (the client asks its IdP
for a new ID-JAG). Disabling or deleting the policy revokes what it let in. Every grant,
accepted or refused, is audited (`mcp.id_jag_accepted`, `mcp.id_jag_refused`) with the IdP's
identity (issuer, subject, client id), never the assertion; a refusal counts like a failed
authentication, and the exchange's throttle answers 429 once there are too many.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from oauthlib.common import Request as OAuthRequest

from apps.accounts.auth_failures import auth_failure_count
from apps.audit.models import ActorType, Outcome
from apps.audit.services import audit_record
from apps.mcpauth import services
from apps.mcpauth.exchange import (
    ALGORITHMS,
    Refusal,
    dpop_binding,
    first_use,
    is_id_jag,
    json_response,
    peek_jwt,
    throttled_response,
    verify_jwt,
)
from apps.mcpauth.validator import SCOPE, GrantryValidator
from apps.workers import trust
from apps.workers.models import TrustPolicy

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"

# The documented reasons, the only descriptions a refusal carries.
TEXT = {
    "too_long": "The assertion is too long.",
    "malformed": "The assertion is not a JWT.",
    "typ": "The assertion is not an ID-JAG (its `typ` must be oauth-id-jag+jwt).",
    "algorithm": "The assertion must be signed with an asymmetric algorithm (RS, PS, ES, EdDSA).",
    "no_policy": "No organization trusts this issuer for ID-JAGs.",
    "bad_signature": "The assertion's signature does not verify with the issuer's published keys.",
    "expired": "The assertion has expired.",
    "not_yet_valid": "The assertion is not valid yet.",
    "bad_claims": "The assertion lacks a required claim (iss, sub, aud, exp, iat, jti, "
    "client_id, resource) or carries a bad one.",
    "lives_too_long": "The assertion lives too long.",
    "wrong_audience": "The assertion's audience is not this authorization server's issuer.",
    "wrong_resource": "The assertion is not for this server's MCP resource.",
    "client_mismatch": "The assertion was issued to another client.",
    "client_not_allowed": "No trust policy of this issuer lets this MCP client in.",
    "claims_mismatch": "The assertion's claims match no trust policy of this issuer.",
    "ambiguous": "More than one organization's trust policies accept this assertion; "
    "narrow them with a claim condition.",
    "org_policy": "The organization's MCP client policy does not allow this client.",
    "worker_disabled": "The worker this client would act as is disabled.",
    "acts_for": "The worker this client would act as acts for a member; an ID-JAG cannot "
    "become a member's own agent.",
    "replayed": "This assertion was used already.",
}


@dataclass
class _Context:
    """What is known about the grant so far, for the audit event."""

    issuer: str = ""
    subject: str = ""
    client_id: str = ""  # the assertion's
    authenticated_client: str = ""
    verified: bool = False
    organization_ids: set[int] = field(default_factory=set)
    policy: TrustPolicy | None = None


def _refuse(error: str, reason: str, status: int = 400) -> Refusal:
    return Refusal(error, TEXT[reason], reason, status)


def _one(request: HttpRequest, name: str, *, required: bool = True) -> str:
    values = request.POST.getlist(name)
    if len(values) > 1:
        raise Refusal("invalid_request", f"Send `{name}` once.", "repeated_parameter")
    if not values or not values[0]:
        if required:
            raise Refusal("invalid_request", f"`{name}` is required.", "missing_parameter")
        return ""
    return str(values[0])


def basic_credentials(authorization: str) -> str:
    """`client_id:client_secret` of an HTTP Basic header, as DOT will read it ("" if none)."""
    kind, _, value = authorization.partition(" ")
    if kind != "Basic":
        return ""
    try:
        decoded = base64.b64decode(value).decode("utf-8")
    except (ValueError, UnicodeError):
        return ""
    return unquote_plus(decoded)


def _client(request: HttpRequest) -> Any:
    """The MCP client the request authenticates as, the way the code and refresh grants do
    (django-oauth-toolkit's client authentication, Grantry's clients only), or a Refusal."""
    declared = _one(request, "client_id", required=False)
    _one(request, "client_secret", required=False)  # at most once
    authorization = request.META.get("HTTP_AUTHORIZATION")
    if (
        (not declared and authorization is None)
        or "\x00" in declared
        or (authorization is not None and "\x00" in basic_credentials(authorization))
    ):  # PostgreSQL text holds no NUL: refused here, not a 500 in the client lookup
        raise Refusal("invalid_client", "Client authentication failed.", "client_auth", 401)
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}
    validator = GrantryValidator()
    try:
        oauth_request = OAuthRequest(
            request.build_absolute_uri(), "POST", request.POST.urlencode(), headers
        )
        oauth_request.grant_type = GRANT_TYPE
        if validator.client_authentication_required(oauth_request):
            authenticated = validator.authenticate_client(oauth_request)
        else:
            authenticated = bool(declared) and validator.authenticate_client_id(
                declared, oauth_request
            )
    except (ValueError, TypeError):
        raise Refusal(
            "invalid_client", "Client authentication failed.", "client_auth", 401
        ) from None
    client = oauth_request.client if authenticated else None
    if client is None or (declared and declared != client.client_id):
        raise Refusal("invalid_client", "Client authentication failed.", "client_auth", 401)
    return client


def _audiences(claims: dict[str, Any]) -> list[Any]:
    audience = claims.get("aud")
    return (
        [audience] if isinstance(audience, str) else audience if isinstance(audience, list) else []
    )


def _scope(request: HttpRequest, claims: dict[str, Any]) -> str:
    """Grantry's one scope, when both the request and the assertion allow it."""
    allowed = {SCOPE}
    granted = claims.get("scope")
    if granted is not None:
        if not isinstance(granted, str):
            raise _refuse("invalid_grant", "bad_claims")
        allowed &= set(granted.split())
    requested = set(_one(request, "scope", required=False).split())
    if requested and not requested <= allowed:
        raise Refusal("invalid_scope", f"Only `{SCOPE}` can be granted to this client.", "scope")
    if not allowed:
        raise Refusal("invalid_scope", f"The assertion does not grant `{SCOPE}`.", "scope")
    return SCOPE


def _choose(
    candidates: list[TrustPolicy], claims: dict[str, Any], context: _Context
) -> tuple[TrustPolicy, dict[str, str]]:
    named = [p for p in candidates if claims["client_id"] in p.clients]
    if not named:
        raise _refuse("invalid_grant", "client_not_allowed")
    accepted: list[tuple[TrustPolicy, dict[str, str]]] = []
    for policy in named:
        matched = trust.claims_match(policy, claims)
        if matched is not None:
            accepted.append((policy, matched))
    if not accepted:
        context.organization_ids = {p.organization_id for p in named}
        raise _refuse("invalid_grant", "claims_mismatch")
    context.organization_ids = {p.organization_id for p, _ in accepted}
    if len(context.organization_ids) > 1:
        raise _refuse("invalid_grant", "ambiguous")
    return accepted[0]  # one organization's: the oldest policy, like the token exchange


def _check_resource_parameter(request: HttpRequest) -> None:
    """RFC 8707 on the request, when sent: Grantry's /mcp only."""
    for resource in request.POST.getlist("resource"):
        if resource.rstrip("/") != services.mcp_resource_url():
            raise Refusal(
                "invalid_target",
                f"This server issues tokens for {services.mcp_resource_url()} only.",
                "resource",
            )


def _read(assertion: str, context: _Context) -> dict[str, Any]:
    """The assertion's header; who it names goes into the context, not verified yet."""
    try:
        header, unverified = peek_jwt(assertion)
    except Refusal as refusal:
        raise _refuse("invalid_grant", refusal.reason) from None
    context.issuer, context.subject, context.client_id = (
        value if isinstance(value, str) else ""
        for value in (unverified.get("iss"), unverified.get("sub"), unverified.get("client_id"))
    )
    return header


def _verified(assertion: str, header: dict[str, Any], context: _Context, now: int) -> Any:
    """The claims, once the signature, the times and the required claims check out."""
    kid = header.get("kid")
    try:
        _, claims = verify_jwt(
            assertion,
            context.issuer,
            kid if isinstance(kid, str) else None,
            now,
            essential=("iat",),
        )
    except Refusal as refusal:
        if refusal.reason in TEXT:
            raise _refuse(refusal.error, refusal.reason, refusal.status) from None
        raise  # the issuer's keys could not be read: 503
    context.verified = True
    return claims


def _check_claims(claims: dict[str, Any], client: Any) -> None:
    """`aud` is this authorization server, `resource` its /mcp, `client_id` the client."""
    if _audiences(claims) != [services.issuer_url()]:
        raise _refuse("invalid_grant", "wrong_audience")
    resource = claims.get("resource")
    if not isinstance(resource, str) or not isinstance(claims.get("client_id"), str):
        raise _refuse("invalid_grant", "bad_claims")
    if resource.rstrip("/") != services.mcp_resource_url():
        raise _refuse("invalid_grant", "wrong_resource")
    if claims["client_id"] != client.client_id:
        raise _refuse("invalid_grant", "client_mismatch")


def _grant(request: HttpRequest, context: _Context) -> dict[str, Any]:
    if _one(request, "grant_type") != GRANT_TYPE:
        raise Refusal("unsupported_grant_type", "Not a jwt-bearer grant.", "grant_type")
    assertion = _one(request, "assertion")
    _check_resource_parameter(request)
    header = _read(assertion, context)
    client = _client(request)
    context.authenticated_client = client.client_id
    # The organizations that trust the issuer, so that a refusal shows in their trail.
    candidates = trust.idjag_candidates(context.issuer) if context.issuer else []
    context.organization_ids = {p.organization_id for p in candidates}
    if not is_id_jag(header):
        raise _refuse("invalid_grant", "typ")
    if header.get("alg") not in ALGORITHMS:
        raise _refuse("invalid_grant", "algorithm")
    if not candidates:
        raise _refuse("invalid_grant", "no_policy")
    now = int(time.time())
    claims = _verified(assertion, header, context, now)
    _check_claims(claims, client)
    scope = _scope(request, claims)
    policy, matched = _choose(candidates, claims, context)
    context.policy = policy
    organization = policy.organization
    if not services.policy_for(organization).allows(client.client_id):
        raise _refuse("invalid_grant", "org_policy")
    if not policy.worker.is_active():
        raise _refuse("invalid_grant", "worker_disabled")
    if policy.worker.acts_for_id is not None:
        # Bound to a member after the policy was made: the IdP's person is not that member.
        raise _refuse("invalid_grant", "acts_for")
    # Bound to the key of the request's DPoP proof when it has one; a worker that requires
    # DPoP gets nothing without it. Checked before the assertion's `jti` is spent.
    jkt = dpop_binding(request, policy.worker)
    if not first_use(context.issuer, claims["jti"], int(claims["exp"]), now):
        raise _refuse("invalid_grant", "replayed")
    try:
        token, raw = trust.exchanged_token_mint(
            policy=policy,
            subject=claims["sub"],
            matched=matched,
            max_seconds=services.token_seconds(organization),
            audience=services.mcp_resource_url(),
            oauth_client=client.name or client.client_id,
            action="mcp.id_jag_accepted",
            details={"client_id": client.client_id, "scope": scope},
            dpop_jkt=jkt,
        )
    except ValidationError:
        raise _refuse("invalid_grant", "worker_disabled") from None
    return {
        "access_token": raw,
        "token_type": "DPoP" if jkt else "Bearer",
        "expires_in": max(1, int(token.expires_at.timestamp()) - now),
        "scope": scope,
    }


def _record_refusal(request: HttpRequest, refusal: Refusal, context: _Context) -> None:
    auth_failure_count(request)
    policy = context.policy
    organization_id = (
        policy.organization_id
        if policy is not None
        else next(iter(context.organization_ids))
        if len(context.organization_ids) == 1
        else None
    )
    with transaction.atomic():
        audit_record(
            action="mcp.id_jag_refused",
            outcome=Outcome.FAILURE,
            reason=refusal.description,
            organization_id=organization_id,
            metadata={
                "code": refusal.reason,
                "error": refusal.error,
                "issuer": context.issuer[:255],
                "subject": context.subject[:255],
                "client_id": context.client_id[:255],
                "authenticated_client": context.authenticated_client[:255],
                "signature_verified": context.verified,
                "trust_policy": policy.pk if policy is not None else None,
            },
            worker_id=policy.worker_id if policy is not None else None,
            actor_type=ActorType.ANONYMOUS,
        )


def id_jag_response(request: HttpRequest) -> JsonResponse:
    """The token endpoint's answer to a jwt-bearer grant carrying an ID-JAG."""
    throttled = throttled_response(request, "grants")
    if throttled is not None:
        return throttled
    context = _Context()
    try:
        body = _grant(request, context)
    except Refusal as refusal:
        _record_refusal(request, refusal, context)
        headers = {"WWW-Authenticate": "Basic"} if refusal.status == 401 else None
        return json_response(
            {"error": refusal.error, "error_description": refusal.description},
            refusal.status,
            headers,
        )
    return json_response(body, 200)
