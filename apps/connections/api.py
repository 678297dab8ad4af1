"""Management API for connections (/api/v1/orgs/<org_slug>/connections/…) and the
organization's OAuth apps (provider-apps/…).

Reviewers read metadata; admins connect (API key, or the start of an OAuth
connect), disconnect and manage OAuth apps. No secret is ever serialized: the
serializers name their fields explicitly and hold none of the encrypted ones
(API keys and client secrets are write-only). Input is validated by the
dashboard's own forms and written by the same services, which audit."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.models import PersonalAPIToken
from apps.connections import services
from apps.connections.forms import ConnectApiKeyForm, ConnectOAuthForm, ProviderAppForm
from apps.connections.models import OAUTH_STATE_TTL, Connection, ProviderApp
from apps.core.api import APIError, body_object, from_form_errors
from apps.core.openapi import error_responses
from apps.organizations.models import OrgRole
from apps.organizations.tenancy import OrgAPIMixin, require_role
from apps.providers.catalog import AuthType
from apps.providers.registry import UnknownProvider, get_provider


class ConnectionSerializer(serializers.ModelSerializer[Connection]):
    created_by_email = serializers.SerializerMethodField()
    has_credential = serializers.SerializerMethodField()
    personal = serializers.SerializerMethodField(
        help_text="A member's own account: only a worker acting for them uses it, under a "
        'rule that says connection "on_behalf_of".'
    )
    owner_email = serializers.SerializerMethodField(
        help_text="Whose personal connection it is (null: the organization's)."
    )

    class Meta:
        model = Connection
        fields = (
            "id",
            "name",
            "provider_key",
            "auth_type",
            "account_label",
            "scopes",
            "base_url_params",
            "status",
            "status_detail",
            "has_credential",
            "expires_at",
            "last_refreshed_at",
            "refresh_failures",
            "last_used_at",
            "created_at",
            "created_by_email",
            "revoked_at",
            "revocation_result",
            "personal",
            "owner_email",
        )
        read_only_fields = fields

    def get_created_by_email(self, obj: Connection) -> str:
        return obj.created_by.email if obj.created_by else ""

    def get_personal(self, obj: Connection) -> bool:
        return obj.owner_id is not None

    def get_owner_email(self, obj: Connection) -> str | None:
        return obj.owner.email if obj.owner is not None else None

    def get_has_credential(self, obj: Connection) -> bool:
        return obj.status != "revoked"


class _VisibleConnections(OrgAPIMixin):
    """Every member reads the shared connections and their own personal ones; admins and
    owners read every member's personal connections too (metadata only)."""

    model = Connection
    read_role = OrgRole.MEMBER

    def scope_queryset(self) -> QuerySet[Any]:
        rows = super().scope_queryset().select_related("created_by", "owner")
        if self.membership.can_manage():
            return rows
        user = self.request.user  # type: ignore[attr-defined]
        return rows.filter(Q(owner__isnull=True) | Q(owner=user))


@extend_schema_view(get=extend_schema(tags=["connections"], summary="List connections"))
class ConnectionListAPIView(_VisibleConnections, generics.ListAPIView[Connection]):
    serializer_class = ConnectionSerializer


@extend_schema_view(get=extend_schema(tags=["connections"], summary="Read one connection"))
class ConnectionDetailAPIView(_VisibleConnections, generics.RetrieveAPIView[Connection]):
    serializer_class = ConnectionSerializer
    lookup_url_kwarg = "connection_id"


class ConnectionDisconnectAPIView(_VisibleConnections, APIView):
    """Admins disconnect any connection; a member their own personal ones (another
    member's does not exist for them: 404; a shared one needs an admin: 403)."""

    write_role = OrgRole.MEMBER

    @extend_schema(
        tags=["connections"],
        summary="Disconnect (revoke and destroy secrets)",
        request=None,
        responses=ConnectionSerializer,
    )
    def post(self, request: Request, org_slug: str, connection_id: int) -> Response:  # noqa: ARG002 - a URL kwarg, passed by name
        connection = get_object_or_404(self.scope_queryset(), pk=connection_id)
        if connection.owner_id != request.user.pk:
            require_role(self.membership, OrgRole.ADMIN)
        connection = services.connection_disconnect(
            connection_id=connection.pk, organization=self.organization
        )
        return Response(ConnectionSerializer(connection).data)


# --- Provider apps (the org's OAuth clients) ----------------------------------------------


def _provider_or_404(key: str, organization: Any, *, oauth: bool = False) -> Any:
    try:
        provider = get_provider(key, organization=organization)
    except UnknownProvider:
        raise Http404("No such provider.") from None
    if oauth and AuthType.OAUTH2 not in provider.auth_types:
        raise Http404("This provider does not use OAuth.")
    return provider


class ProviderAppSerializer(serializers.ModelSerializer[ProviderApp]):
    """The client secret is write-only: only whether one is stored is ever shown."""

    has_client_secret = serializers.SerializerMethodField()
    redirect_uri = serializers.SerializerMethodField(
        help_text="Register this exact redirect URI in the provider's developer console."
    )

    class Meta:
        model = ProviderApp
        fields = (
            "provider_key",
            "client_id",
            "has_client_secret",
            "redirect_uri",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields

    def get_has_client_secret(self, obj: ProviderApp) -> bool:
        return obj.has_secret()

    def get_redirect_uri(self, _obj: ProviderApp) -> str:
        return services.oauth_redirect_uri()


class ProviderAppWriteSerializer(serializers.Serializer[Any]):
    """Documentation of the body; the dashboard's ProviderAppForm validates it."""

    client_id = serializers.CharField(max_length=300)
    client_secret = serializers.CharField(
        max_length=2000,
        required=False,
        write_only=True,
        help_text="Required the first time; leave out to keep the stored one.",
    )


class _ProviderAppScope(OrgAPIMixin):
    model = ProviderApp
    # As on the dashboard: the OAuth app settings are for admins, even to look.
    read_role = OrgRole.ADMIN

    def scope_queryset(self) -> QuerySet[Any]:
        return self.tenant_rows(ProviderApp)


@extend_schema_view(
    get=extend_schema(
        tags=["connections"],
        summary="List the organization's OAuth apps (client secrets are never returned)",
        responses={200: ProviderAppSerializer(many=True), **error_responses(403, 404)},
    )
)
class ProviderAppListAPIView(_ProviderAppScope, generics.ListAPIView[ProviderApp]):
    serializer_class = ProviderAppSerializer


class ProviderAppDetailAPIView(_ProviderAppScope, APIView):
    @extend_schema(
        tags=["connections"],
        summary="The organization's OAuth app for one provider",
        responses={200: ProviderAppSerializer, **error_responses(403, 404)},
    )
    def get(self, _request: Request, org_slug: str, provider_key: str) -> Response:  # noqa: ARG002 - a URL kwarg, passed by name
        provider = _provider_or_404(provider_key, self.organization, oauth=True)
        app = get_object_or_404(self.scope_queryset(), provider_key=provider.key)
        return Response(ProviderAppSerializer(app).data)

    @extend_schema(
        tags=["connections"],
        summary="Create or change the OAuth app for one provider (secret write-only)",
        request=ProviderAppWriteSerializer,
        responses={200: ProviderAppSerializer, **error_responses(400, 403, 404)},
        examples=[
            OpenApiExample(
                "app",
                value={"client_id": "abc123", "client_secret": "s3cr3t"},
                request_only=True,
            )
        ],
    )
    def put(self, request: Request, org_slug: str, provider_key: str) -> Response:  # noqa: ARG002 - a URL kwarg, passed by name
        provider = _provider_or_404(provider_key, self.organization, oauth=True)
        app = self.scope_queryset().filter(provider_key=provider.key).first()
        form = ProviderAppForm(data=body_object(request), has_secret=bool(app and app.has_secret()))
        if not form.is_valid():
            raise from_form_errors(form)
        app = services.provider_app_save(
            organization=self.organization,
            provider_key=provider.key,
            client_id=form.cleaned_data["client_id"],
            client_secret=form.cleaned_data["client_secret"] or None,
            actor=request.user,
        )
        return Response(ProviderAppSerializer(app).data)


# --- Connect: API key and the start of an OAuth connect -----------------------------------


class _ConnectRequest(serializers.Serializer[Any]):
    provider = serializers.CharField(help_text='Catalog key, e.g. "sandbox" or "custom-acme".')
    name = serializers.CharField(
        max_length=60, help_text="Short unique name workers and roles refer to, e.g. github-main."
    )
    base_url_params = serializers.DictField(
        child=serializers.CharField(),
        required=False,
        help_text="Per-connection URL parameters the provider declares, "
        'e.g. {"subdomain": "acme"}.',
    )


class ApiKeyConnectSerializer(_ConnectRequest):
    api_key = serializers.CharField(
        max_length=4000,
        write_only=True,
        help_text="Checked with the provider's identity call before anything is saved; "
        "stored encrypted and never returned.",
    )


class OAuthStartSerializer(_ConnectRequest):
    personal = serializers.BooleanField(
        default=False,
        help_text="Connect your own account (a personal connection): any member may, for "
        "themselves. Otherwise an organization connection, which only admins make.",
    )


class OAuthStartResponseSerializer(serializers.Serializer[Any]):
    authorization_url = serializers.URLField(
        help_text="Open in a browser signed in to Grantry as the same person; after consent "
        "the provider returns to Grantry's /oauth/callback/, which creates the connection."
    )
    expires_in = serializers.IntegerField(help_text="Seconds the URL stays usable.")
    provider = serializers.CharField()
    name = serializers.CharField()


def _connect_form(form_class: Any, view: OrgAPIMixin, provider: Any, data: dict[str, Any]) -> Any:
    """The dashboard's connect form, bound to the API body (same checks, same messages)."""
    params = tuple(getattr(provider, "base_url_params", ()) or ())
    given = data.get("base_url_params") or {}
    bound = {k: v for k, v in data.items() if k in ("name", "api_key")}
    bound.update({f"param_{p}": given.get(p, "") for p in params})
    form = form_class(data=bound, organization=view.organization, url_params=params)
    if not form.is_valid():
        errors = from_form_errors(form)
        detail = {
            (f"base_url_params.{k[6:]}" if k.startswith("param_") else k): v
            for k, v in errors.detail.items()  # type: ignore[union-attr]
        }
        raise serializers.ValidationError(detail)
    return form


def _connect_provider(view: OrgAPIMixin, key: str, auth_type: str) -> Any:
    try:
        provider = get_provider(key, organization=view.organization)
    except UnknownProvider:
        raise serializers.ValidationError({"provider": ["No such provider."]}) from None
    if auth_type not in provider.auth_types:
        kind = "API keys" if auth_type == AuthType.API_KEY else "OAuth"
        raise serializers.ValidationError(
            {"provider": [f"{provider.display_name} does not support {kind}."]}
        )
    return provider


class ApiKeyConnectAPIView(OrgAPIMixin, APIView):
    @extend_schema(
        tags=["connections"],
        summary="Connect with an API key (checked with the provider before saving)",
        description="The key is sent to the provider's identity endpoint first; a rejected "
        "key answers 400 on `api_key` and nothing is saved. The key is never returned.",
        request=ApiKeyConnectSerializer,
        responses={201: ConnectionSerializer, **error_responses(400, 403, 404, 502)},
    )
    def post(self, request: Request, org_slug: str) -> Response:  # noqa: ARG002 - a URL kwarg, passed by name
        body = ApiKeyConnectSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        provider = _connect_provider(self, body.validated_data["provider"], AuthType.API_KEY)
        form = _connect_form(ConnectApiKeyForm, self, provider, body.validated_data)
        try:
            connection = services.connection_create_api_key(
                organization=self.organization,
                provider_key=provider.key,
                name=form.cleaned_data["name"],
                api_key=form.cleaned_data["api_key"],
                base_url_params=form.base_url_params(),
                actor=request.user,
            )
        except services.CredentialRejected as exc:
            raise serializers.ValidationError(
                {"api_key": [f"{exc} Check the key is whole and active. Nothing was saved."]}
            ) from None
        except services.ProviderUnreachable as exc:
            raise APIError(
                "provider_unreachable",
                f"{exc} Nothing was saved; try again in a moment.",
                status_code=status.HTTP_502_BAD_GATEWAY,
            ) from None
        except ValueError as exc:  # BaseURLParamError
            raise serializers.ValidationError({"base_url_params": [str(exc)]}) from None
        return Response(ConnectionSerializer(connection).data, status=status.HTTP_201_CREATED)


class OAuthStartAPIView(OrgAPIMixin, APIView):
    read_role = OrgRole.MEMBER
    write_role = OrgRole.MEMBER  # a personal connection; the org's own needs an admin (below)

    @extend_schema(
        tags=["connections"],
        summary="Start an OAuth connect: returns the authorization URL to open in a browser",
        description="The attempt is single use, expires after 10 minutes and is bound to "
        "you: open the URL in a browser where you are signed in to Grantry (with a session "
        "instead of a personal token, to that very session). The provider sends the "
        "browser back to /oauth/callback/, which creates the connection; poll "
        "connections/ to see it.",
        request=OAuthStartSerializer,
        responses={201: OAuthStartResponseSerializer, **error_responses(400, 403, 404)},
    )
    def post(self, request: Request, org_slug: str) -> Response:  # noqa: ARG002 - a URL kwarg, passed by name
        body = OAuthStartSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        personal = body.validated_data["personal"]
        if not personal:
            require_role(self.membership, OrgRole.ADMIN)
        provider = _connect_provider(self, body.validated_data["provider"], AuthType.OAUTH2)
        if not self.tenant_rows(ProviderApp).filter(provider_key=provider.key):
            raise serializers.ValidationError(
                {"provider": ["Set up the OAuth app for this provider first (provider-apps/)."]}
            )
        form = _connect_form(ConnectOAuthForm, self, provider, body.validated_data)
        session_key = None
        if not isinstance(request.auth, PersonalAPIToken):  # a browser session
            if not request.session.session_key:
                request.session.save()
            session_key = request.session.session_key
        try:
            url = services.connection_oauth_start(
                organization=self.organization,
                provider_key=provider.key,
                name=form.cleaned_data["name"],
                actor=request.user,
                session_key=session_key,
                base_url_params=form.base_url_params(),
                personal=personal,
            )
        except ValueError as exc:  # BaseURLParamError
            raise serializers.ValidationError({"base_url_params": [str(exc)]}) from None
        response = Response(
            {
                "authorization_url": url,
                "expires_in": int(OAUTH_STATE_TTL.total_seconds()),
                "provider": provider.key,
                "name": form.cleaned_data["name"],
            },
            status=status.HTTP_201_CREATED,
        )
        response["Cache-Control"] = "no-store"
        return response
