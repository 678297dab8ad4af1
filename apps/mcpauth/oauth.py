"""Grantry's authorization server for /mcp: RFC 8414 metadata, consent (the
authorization endpoint), token, revocation (RFC 7009) and registration (RFC 7591).

The protocol views are django-oauth-toolkit's, each given Grantry's validator
(`GrantryValidator`) and backend, so they never serve the Sandbox's clients."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters
from oauth2_provider import views as dot_views
from oauth2_provider.exceptions import OAuthToolkitError
from oauth2_provider.models import get_application_model
from oauth2_provider.oauth2_backends import _add_iss_to_redirect
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.views.dynamic_client_registration import (
    _build_application_kwargs,
    _error_response,
)
from oauthlib.oauth2.rfc6749 import errors as oauth_errors

from apps.core.audit_context import client_ip
from apps.core.json_input import HostileInput, loads
from apps.mcpauth import exchange, idjag, services
from apps.mcpauth.forms import ConsentForm
from apps.mcpauth.models import McpClientRegistration
from apps.mcpauth.validator import (
    GRANT_CLAIM,
    SCOPE,
    GrantryOAuthLibCore,
    GrantryValidator,
    redirect_uri_safe,
)
from apps.organizations.models import Membership
from apps.organizations.tenancy import resolve_membership, second_factor_missing
from apps.workers import dpop


def _endpoint(name: str) -> str:
    return f"{settings.GRANTRY_BASE_URL}{reverse(f'mcpauth:{name}')}"


def authorization_server_metadata(_request: HttpRequest) -> JsonResponse:
    """RFC 8414 metadata (served at /.well-known/oauth-authorization-server/oauth)."""
    return JsonResponse(
        {
            "issuer": services.issuer_url(),
            "authorization_endpoint": _endpoint("authorize"),
            "token_endpoint": _endpoint("token"),
            "revocation_endpoint": _endpoint("revoke"),
            "registration_endpoint": _endpoint("register"),
            "response_types_supported": ["code"],
            "grant_types_supported": [
                "authorization_code",
                "refresh_token",
                exchange.GRANT_TYPE,
                idjag.GRANT_TYPE,
            ],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": [
                "none",
                "client_secret_post",
                "client_secret_basic",
            ],
            "revocation_endpoint_auth_methods_supported": [
                "none",
                "client_secret_post",
                "client_secret_basic",
            ],
            "scopes_supported": [SCOPE],
            "client_id_metadata_document_supported": True,
            "authorization_response_iss_parameter_supported": True,
            # RFC 9449 §5.1: a DPoP proof on a token request binds the token to its key.
            "dpop_signing_alg_values_supported": list(dpop.ALGORITHMS),
            "service_documentation": f"{settings.GRANTRY_BASE_URL}/api/docs/",
        }
    )


class _Grantry:
    validator_class = GrantryValidator
    oauthlib_backend_class = GrantryOAuthLibCore

    @classmethod
    def get_oauthlib_core(cls) -> Any:
        """DOT caches the core on the view class behind `hasattr()`, which also finds
        the core its parent view cached for the Sandbox's server (whose validator
        refuses Grantry's clients: `invalid_client`). Each of our views keeps its own."""
        core = cls.__dict__.get("_grantry_oauthlib_core")
        if core is None:
            core = cls.get_oauthlib_backend_class()(cls.get_server())  # type: ignore[attr-defined]
            cls._grantry_oauthlib_core = core  # type: ignore[attr-defined]
        return core


def _same_resource(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


class ConsentView(_Grantry, dot_views.AuthorizationView):
    """The authorization endpoint. A signed-in member picks the organization and the
    worker the client will act as (or creates one); DOT issues the code."""

    template_name = "mcpauth/consent.html"
    form_class = ConsentForm

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        self.membership: Membership | None = None
        slug = request.GET.get("org")
        if not slug and request.user.is_authenticated:
            bindable = services.bindable_memberships(request.user)
            if len(bindable) == 1:  # nothing to choose
                slug = bindable[0].organization.slug
        if slug and request.user.is_authenticated:
            self.membership = resolve_membership(request.user, slug)  # 404 for a non-member
            if second_factor_missing(request, self.membership.organization):
                messages.warning(
                    request,
                    f"{self.membership.organization.name} requires two-factor authentication. "
                    "Add an authenticator app or a passkey, then connect the client again.",
                )
                return HttpResponseRedirect(reverse("mfa_index"))
        return super().dispatch(request, *args, **kwargs)

    def validate_authorization_request(self, request: HttpRequest) -> Any:
        """DOT's checks, then Grantry's: PKCE with S256 only, and the one resource."""
        scopes, credentials = super().validate_authorization_request(request)
        redirect_uri = credentials.get("redirect_uri")
        state = credentials.get("state")
        if credentials.get("code_challenge_method") != "S256":
            raise OAuthToolkitError(
                error=oauth_errors.InvalidRequestError(
                    description="PKCE with code_challenge_method=S256 is required.", state=state
                ),
                redirect_uri=redirect_uri,
            )
        for resource in request.GET.getlist("resource"):
            if not _same_resource(resource, services.mcp_resource_url()):
                raise OAuthToolkitError(
                    error=oauth_errors.CustomOAuth2Error(
                        error="invalid_target",
                        description="This server issues tokens for "
                        f"{services.mcp_resource_url()} only.",
                        state=state,
                    ),
                    redirect_uri=redirect_uri,
                )
        return scopes, credentials

    def redirect(self, redirect_to: str, application: Any) -> HttpResponse:
        """Every authorization response names Grantry as its issuer (RFC 9207 §2), the
        errors (`invalid_request`, `invalid_target`, `access_denied`) too: DOT adds
        `iss` only to a successful response, and with the Sandbox's issuer."""
        if oauth2_settings.COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS:
            redirect_to = _add_iss_to_redirect(redirect_to, services.issuer_url())
        return super().redirect(redirect_to, application)

    def get_form_kwargs(self) -> dict[str, Any]:
        kwargs = super().get_form_kwargs()
        kwargs["organization"] = self.membership.organization if self.membership else None
        kwargs["user"] = self.request.user
        kwargs["admin"] = self.membership is None or self.membership.has_at_least(
            services.BIND_ROLE
        )
        return kwargs

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        bindable = services.bindable_memberships(self.request.user)
        query = self.request.GET.copy()
        choices = []
        for membership in bindable:
            query["org"] = membership.organization.slug
            choices.append((membership, f"?{query.urlencode()}"))
        context["org_choices"] = choices
        context["membership"] = self.membership
        context["can_bind"] = self.membership is not None and services.may_bind(self.membership)
        context["binds_for_self_only"] = self.membership is not None and not (
            self.membership.has_at_least(services.BIND_ROLE)
        )
        if self.membership is not None:
            context["policy_allows"] = services.policy_for(self.membership.organization).allows(
                str(context.get("client_id") or "")
            )
        application = context.get("application")
        if application is not None:
            context["client_label"] = application.name or application.client_id
            context["is_cimd"] = application.registration_source == "cimd"
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if (
            request.POST.get("allow")
            and self.membership is not None
            and not services.may_bind(self.membership)
        ):
            # Before the form: its choices are already narrowed to what this member may
            # bind, and a member who may bind nothing is refused outright.
            raise PermissionDenied("Only an admin of the organization may connect a client.")
        return super().post(request, *args, **kwargs)

    def form_valid(self, form: ConsentForm) -> HttpResponse:
        data = form.cleaned_data
        application = get_application_model().objects.get(client_id=data["client_id"])
        for resource in (data.get("resource") or "").split():
            if not _same_resource(resource, services.mcp_resource_url()):
                raise PermissionDenied("This server issues tokens for its /mcp resource only.")
        data["claims"] = None
        if data.get("allow"):
            if self.membership is None:
                form.add_error(None, "Choose an organization first.")
                return self.form_invalid(form)
            try:
                with transaction.atomic():
                    grant = services.grant_approve(
                        application=application,
                        organization=self.membership.organization,
                        actor=self.request.user,
                        worker=data.get("worker_obj"),
                        new_worker_name=data.get("new_worker_name") or "",
                        role=data.get("role"),
                        for_myself=bool(data.get("for_myself")),
                    )
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    form.add_error(field if field in form.fields else None, errors)
                return self.form_invalid(form)
            data["claims"] = {GRANT_CLAIM: grant.pk}
        return super().form_valid(form)

    def form_invalid(self, form: Any) -> HttpResponse:
        # Shown again with its errors; DOT validates the request itself when the
        # corrected form creates the authorization response.
        data = form.data
        application = (
            get_application_model().objects.filter(client_id=data.get("client_id")).first()
        )
        return self.render_to_response(
            self.get_context_data(
                form=form,
                application=application,
                client_id=data.get("client_id"),
                redirect_uri=data.get("redirect_uri"),
            )
        )


def nul_in_request(request: HttpRequest) -> bool:
    """Whether a form value or the HTTP Basic client credentials carry NUL, which no client id,
    code or token has, and which PostgreSQL text refuses (DOT's lookups would answer 500)."""
    if any("\x00" in value for values in request.POST.lists() for value in values[1]):
        return True
    authorization = request.META.get("HTTP_AUTHORIZATION")
    return authorization is not None and "\x00" in idjag.basic_credentials(authorization)


def _nul_refused() -> JsonResponse:
    response = JsonResponse(
        {"error": "invalid_request", "error_description": "A parameter holds a NUL character."},
        status=400,
    )
    response["Cache-Control"] = "no-store"
    return response


class TokenView(_Grantry, dot_views.TokenView):
    """The one token endpoint: DOT's grants (authorization code, refresh), the RFC 8693
    token exchange of a workload's identity for a worker token (apps.mcpauth.exchange), and
    the jwt-bearer grant of a company IdP's ID-JAG for an MCP client (apps.mcpauth.idjag)."""

    @method_decorator(sensitive_post_parameters("subject_token", "assertion", "client_secret"))
    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if nul_in_request(request):
            return _nul_refused()
        if request.POST.get("grant_type") == exchange.GRANT_TYPE:
            return exchange.token_exchange_response(request)
        if request.POST.get("grant_type") == idjag.GRANT_TYPE:
            return idjag.id_jag_response(request)
        return super().post(request, *args, **kwargs)


class RevokeTokenView(_Grantry, dot_views.RevokeTokenView):
    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if nul_in_request(request):
            return _nul_refused()
        return super().post(request, *args, **kwargs)


# OpenID Connect Dynamic Client Registration 1.0 §2 (MCP clients send it).
APPLICATION_TYPES = ("web", "native")


def _registration_allowed(request: HttpRequest) -> bool:
    """At most GRANTRY_MCP_DCR_PER_HOUR registrations per address and hour."""
    key = f"grantry:mcp:dcr:{client_ip(request)}"
    cache.add(key, 0, timeout=3600)
    try:
        count = cache.incr(key)
    except ValueError:
        count = 1
    return count <= int(settings.GRANTRY_MCP_DCR_PER_HOUR)


def _parse_metadata(body: bytes) -> dict[str, Any] | HttpResponse:
    """The registration request through the one JSON gate (apps.core.json_input): a
    hostile body (nesting past the interpreter's limit, a lone surrogate, NUL) is 400
    `invalid_client_metadata`, not a 500 (DOT's own parser let both through)."""
    try:
        data = loads(body, max_depth=16, max_nodes=10_000)
    except HostileInput as problem:
        return _error_response("invalid_client_metadata", problem.message)
    if not isinstance(data, dict):
        return _error_response("invalid_client_metadata", "The body must be a JSON object.")
    return data


def _refused_metadata(data: dict[str, Any], kwargs: dict[str, Any]) -> HttpResponse | None:
    """Grantry's limits on top of DOT's parsing: the grant, the redirect URIs (how
    many, which kinds) and application_type."""
    if kwargs["authorization_grant_type"] != "authorization-code":
        return _error_response(
            "invalid_client_metadata", "Only the authorization_code grant is supported."
        )
    uris = kwargs["redirect_uris"].split()
    cap = int(settings.GRANTRY_MCP_DCR_MAX_REDIRECT_URIS)
    if len(uris) > cap:
        return _error_response(
            "invalid_redirect_uri", f"Register at most {cap} redirect URIs per client."
        )
    if not all(redirect_uri_safe(uri) for uri in uris):
        return _error_response(
            "invalid_redirect_uri",
            "Redirect URIs must be https, http on a loopback address, or an allowed "
            "private-use scheme.",
        )
    if data.get("application_type", "web") not in APPLICATION_TYPES:
        return _error_response("invalid_client_metadata", "application_type is 'web' or 'native'.")
    return None


@method_decorator(csrf_exempt, name="dispatch")
class RegisterView(View):
    """RFC 7591 Dynamic Client Registration, open and rate-limited. A client that is
    never used is deleted after GRANTRY_MCP_DCR_UNUSED_HOURS (mcpauth.tasks)."""

    def post(self, request: HttpRequest) -> HttpResponse:
        if not _registration_allowed(request):
            response = _error_response(
                "rate_limited", "Too many client registrations from this address.", status=429
            )
            response["Retry-After"] = "3600"
            return response
        data = _parse_metadata(request.body)
        if isinstance(data, HttpResponse):
            return data
        kwargs, error = _build_application_kwargs(data)
        if error:
            return error
        refused = _refused_metadata(data, kwargs)
        if refused is not None:
            return refused
        application_type = data.get("application_type", "web")
        application_model = get_application_model()
        application = application_model(
            user=None, registration_source=application_model.RegistrationSource.DCR, **kwargs
        )
        raw_secret = (
            application.client_secret if application.client_type == "confidential" else None
        )
        try:
            application.full_clean()
        except ValidationError as exc:
            return _error_response("invalid_client_metadata", "; ".join(exc.messages))
        with transaction.atomic():
            application.save()
            McpClientRegistration.objects.create(
                application=application, application_type=application_type
            )
        body: dict[str, Any] = {
            "client_id": application.client_id,
            "client_id_issued_at": int(application.created.timestamp()),
            "redirect_uris": application.redirect_uris.split(),
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": data.get(
                "token_endpoint_auth_method", "client_secret_basic"
            )
            if raw_secret
            else "none",
            "scope": SCOPE,
            "application_type": application_type,
        }
        if application.name:
            body["client_name"] = application.name
        if raw_secret:
            body["client_secret"] = raw_secret
            body["client_secret_expires_at"] = 0
        return JsonResponse(body, status=201)
