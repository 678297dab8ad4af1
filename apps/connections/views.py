"""Dashboard pages for connections (members read, admins write) and the one
OAuth callback route. The organization always comes from the URL (or, for the
callback, from the server-side state row), never from a form field."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect, render, resolve_url
from django.urls import reverse
from django.views import View
from django.views.generic import TemplateView
from typing_extensions import override

from apps.audit.selectors import recent_calls
from apps.connections import services
from apps.connections.forms import ConnectApiKeyForm, ConnectOAuthForm, ProviderAppForm
from apps.connections.models import MCP_PROVIDER_KEY, Connection, ProviderApp
from apps.connections.selectors import connection_users
from apps.core.confirm import Confirmation, confirmation_page, is_confirmed
from apps.core.pagination import KeysetListMixin
from apps.organizations.models import OrgRole
from apps.organizations.tenancy import OrgViewMixin, require_role
from apps.providers.catalog import AuthType, Provider
from apps.providers.registry import UnknownProvider, all_providers, get_provider

logger = logging.getLogger(__name__)


def _provider_or_404(key: str, organization: Any) -> Provider:
    try:
        return get_provider(key, organization=organization)
    except UnknownProvider:
        raise Http404("No such provider.") from None


def _provider_or_none(key: str, organization: Any) -> Provider | None:
    """The provider of an existing connection; None once a custom provider is gone."""
    try:
        return _provider_or_404(key, organization)
    except Http404:
        return None


def _visible(view: Any) -> Any:
    """The connections a member sees: the shared ones and their own personal ones; an
    admin sees every member's personal connections too (never their secrets)."""
    return view.tenant_rows(Connection).visible_to(
        user=view.request.user, sees_all=view.membership.can_manage()
    )


class ConnectionListView(OrgViewMixin, KeysetListMixin, TemplateView):
    template_name = "connections/list.html"
    search_fields = ("name", "provider_key", "account_label")

    def scope_queryset(self) -> Any:
        return _visible(self).select_related("created_by", "owner")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        page = self.paginate(self.scope_queryset())
        context.update(page=page, connections=page.rows)
        names: dict[str, str] = {}
        for connection in context["connections"]:
            if connection.provider_key == MCP_PROVIDER_KEY:
                connection.provider_name = "MCP server"
                continue
            if connection.provider_key not in names:
                try:
                    names[connection.provider_key] = get_provider(
                        connection.provider_key, organization=self.organization
                    ).display_name
                except UnknownProvider:
                    names[connection.provider_key] = connection.provider_key
            connection.provider_name = names[connection.provider_key]
        context["can_manage"] = self.membership.can_manage()
        context["provider_apps"] = self.tenant_rows(ProviderApp)
        context["personal_providers"] = _personal_providers(self)
        return context


def _personal_providers(view: Any) -> list[Provider]:
    """Providers a member can connect their own account of: OAuth, with the
    organization's OAuth app set up (a personal connection uses the organization's app)."""
    configured = set(view.tenant_rows(ProviderApp).values_list("provider_key", flat=True))
    return [
        p
        for p in all_providers(organization=view.organization)
        if p.key in configured and AuthType.OAUTH2 in p.auth_types
    ]


class PersonalConnectView(OrgViewMixin, TemplateView):
    """A member connects their own account of a provider (a personal connection): the
    OAuth connect flow, with the member as the connection's owner. Any member, for
    themselves only; rules reach it only as `connection: on_behalf_of`, for a worker
    that acts for this member."""

    template_name = "connections/connect_personal.html"

    def _setup(self) -> None:
        self.provider = _provider_or_404(self.kwargs["provider_key"], self.organization)
        if self.provider not in _personal_providers(self):
            raise Http404(
                "Connect your own account of this provider once an admin set up its OAuth app."
            )

    def _form(self, data: Any = None) -> ConnectOAuthForm:
        params = tuple(getattr(self.provider, "base_url_params", ()) or ())
        user = self.request.user
        initial = {"name": f"{self.provider.key}-{getattr(user, 'pk', '')}"[:60]}
        return ConnectOAuthForm(
            data, organization=self.organization, url_params=params, initial=initial
        )

    @override
    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        self._setup()
        return self.render_to_response(
            self.get_context_data(form=self._form(), provider=self.provider)
        )

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        self._setup()
        form = self._form(request.POST)
        if form.is_valid():
            if not request.session.session_key:
                request.session.save()
            try:
                url = services.connection_oauth_start(
                    organization=self.organization,
                    provider_key=self.provider.key,
                    name=form.cleaned_data["name"],
                    actor=request.user,
                    session_key=request.session.session_key or "",
                    base_url_params=form.base_url_params(),
                    personal=True,
                )
            except ValueError as exc:  # BaseURLParamError
                form.add_error(None, str(exc))
            else:
                return HttpResponseRedirect(url)
        return self.render_to_response(
            self.get_context_data(form=form, provider=self.provider), status=400
        )


class ProviderPickView(OrgViewMixin, TemplateView):
    """Connect, step 1: pick a provider."""

    template_name = "connections/pick.html"
    required_role = OrgRole.ADMIN

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        configured = set(self.tenant_rows(ProviderApp).values_list("provider_key", flat=True))
        query = self.request.GET.get("q", "").strip()[:60]
        needle = query.lower()
        context["providers"] = [
            {
                "provider": p,
                "oauth": AuthType.OAUTH2 in p.auth_types,
                "api_key": AuthType.API_KEY in p.auth_types,
                "configured": p.key in configured,
            }
            for p in all_providers(organization=self.organization)
            if not needle or needle in p.display_name.lower() or needle in p.key.lower()
        ]
        context["query"] = query
        return context


class ConnectView(OrgViewMixin, TemplateView):
    """Connect, step 2: OAuth (start the browser flow) and/or an API key."""

    template_name = "connections/connect.html"
    required_role = OrgRole.ADMIN
    write_role = OrgRole.ADMIN

    def _setup(self) -> None:
        self.provider = _provider_or_404(self.kwargs["provider_key"], self.organization)
        self.app = self.tenant_rows(ProviderApp).filter(provider_key=self.provider.key).first()

    def _forms(self, data: Any = None, which: str = "") -> dict[str, Any]:
        params = tuple(getattr(self.provider, "base_url_params", ()) or ())
        return {
            "oauth_form": ConnectOAuthForm(
                data if which == "oauth" else None,
                organization=self.organization,
                url_params=params,
                prefix="oauth",
            ),
            "key_form": ConnectApiKeyForm(
                data if which == "api_key" else None,
                organization=self.organization,
                url_params=params,
                prefix="key",
            ),
        }

    @override
    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        self._setup()
        return self.render_to_response(self.get_context_data(**self._forms()))

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(
            provider=self.provider,
            app=self.app,
            supports_oauth=AuthType.OAUTH2 in self.provider.auth_types,
            supports_api_key=AuthType.API_KEY in self.provider.auth_types,
            redirect_uri=services.oauth_redirect_uri(),
            sandbox_one_click=self._sandbox_one_click(),
        )
        return context

    def _sandbox_one_click(self) -> bool:
        """In development the built-in Sandbox can register this org's OAuth app itself."""
        return (
            self.provider.key == "sandbox"
            and self.app is None
            and bool(getattr(settings, "GRANTRY_SANDBOX_ENABLED", False))
        )

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        self._setup()
        which = request.POST.get("kind", "")
        if which == "sandbox_app" and self._sandbox_one_click():
            from apps.connections.demo import sandbox_app_register

            sandbox_app_register(organization=self.organization, actor=request.user)
            messages.success(
                request, "The Sandbox registered this organization's OAuth app. Connect below."
            )
            return redirect(
                "connections:connect", org_slug=self.organization.slug, provider_key="sandbox"
            )
        forms = self._forms(request.POST, which)
        if which == "oauth" and self._sandbox_one_click() and forms["oauth_form"].is_valid():
            # Development: "Continue to Sandbox" registers the org's Sandbox OAuth app
            # first, so connecting the Sandbox is one click, not two.
            from apps.connections.demo import sandbox_app_register

            sandbox_app_register(organization=self.organization, actor=request.user)
            self._setup()
        if which == "oauth" and AuthType.OAUTH2 in self.provider.auth_types:
            done = self._oauth_start(request, forms["oauth_form"])
        elif which == "api_key" and AuthType.API_KEY in self.provider.auth_types:
            done = self._api_key_save(request, forms["key_form"])
        else:
            raise Http404("This provider does not support that kind of connection.")
        if done is not None:
            return done
        return self.render_to_response(self.get_context_data(**forms), status=400)

    def _oauth_start(self, request: HttpRequest, form: ConnectOAuthForm) -> HttpResponse | None:
        """The redirect to the provider's consent page, or None with the form's errors."""
        if self.app is None:
            form.add_error(None, "Set up the OAuth app for this provider first.")
            return None
        if not form.is_valid():
            return None
        if not request.session.session_key:
            request.session.save()
        try:
            url = services.connection_oauth_start(
                organization=self.organization,
                provider_key=self.provider.key,
                name=form.cleaned_data["name"],
                actor=request.user,
                session_key=request.session.session_key or "",
                base_url_params=form.base_url_params(),
            )
        except ValueError as exc:  # BaseURLParamError: a bad subdomain or similar
            form.add_error(None, str(exc))
            return None
        return HttpResponseRedirect(url)

    def _api_key_save(self, request: HttpRequest, form: ConnectApiKeyForm) -> HttpResponse | None:
        """A connection with a key the provider accepted, or None with the form's errors."""
        if not form.is_valid():
            return None
        try:
            connection = services.connection_create_api_key(
                organization=self.organization,
                provider_key=self.provider.key,
                name=form.cleaned_data["name"],
                api_key=form.cleaned_data["api_key"],
                base_url_params=form.base_url_params(),
                actor=request.user,
            )
        except services.CredentialRejected as exc:
            form.add_error(
                "api_key",
                f"{exc} Check that you copied the whole key "
                "and that it is still active. Nothing was saved.",
            )
            return None
        except services.ProviderUnreachable as exc:
            form.add_error(None, f"{exc} Nothing was saved; try again in a moment.")
            return None
        except ValueError as exc:  # BaseURLParamError
            form.add_error(None, str(exc))
            return None
        messages.success(request, f"Connected '{connection.name}'.")
        return redirect("connections:list", org_slug=self.organization.slug)


class ReconnectView(OrgViewMixin, View):
    """Admins reconnect the organization's connections; a member (admins too) their own
    personal ones, and nobody another member's."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        connection = self.scope_queryset().filter(pk=kwargs["pk"]).first()
        if connection is None or not connection.is_oauth():
            raise Http404("No such OAuth connection.")
        if connection.owner_id is not None and connection.owner_id != request.user.pk:
            raise Http404("No such OAuth connection.")  # another member's own account
        if connection.owner_id is None:
            require_role(self.membership, OrgRole.ADMIN)
        if connection.provider_key == MCP_PROVIDER_KEY:
            return self._reconnect_mcp(request, connection)
        if not self.tenant_rows(ProviderApp).filter(provider_key=connection.provider_key).exists():
            messages.error(request, "Set up the OAuth app for this provider first.")
            return redirect(
                "connections:provider-app",
                org_slug=self.organization.slug,
                provider_key=connection.provider_key,
            )
        if not request.session.session_key:
            request.session.save()
        url = services.connection_oauth_start(
            organization=self.organization,
            provider_key=connection.provider_key,
            name=connection.name,
            actor=request.user,
            session_key=request.session.session_key or "",
            reconnect=connection,
            scopes=connection.scopes or None,
        )
        return HttpResponseRedirect(url)

    def _reconnect_mcp(self, request: HttpRequest, connection: Connection) -> HttpResponse:
        """An upstream MCP server's own authorization server: the client Grantry
        registered there, consent again (apps.connections.gateway.oauth)."""
        from apps.connections.gateway.oauth import mcp_oauth_start

        if not request.session.session_key:
            request.session.save()
        url = mcp_oauth_start(
            organization=self.organization,
            name=connection.name,
            url="",
            actor=request.user,
            session_key=request.session.session_key or "",
            reconnect=connection,
        )
        return HttpResponseRedirect(url)

    def scope_queryset(self) -> Any:
        return _visible(self)


class DisconnectView(OrgViewMixin, TemplateView):
    """Admins disconnect any connection; a member their own personal ones (which stops
    every worker acting for them from using it at once)."""

    def scope_queryset(self) -> Any:
        return _visible(self)

    def _connection(self) -> Connection:
        """Another member's personal connection does not exist here (404); a shared one
        needs an admin (403)."""
        connection = self.scope_queryset().filter(pk=self.kwargs["pk"]).first()
        if connection is None:
            raise Http404("No such connection.")
        if connection.owner_id != self.request.user.pk:
            require_role(self.membership, OrgRole.ADMIN)
        return connection

    def _confirm(self, request: HttpRequest, connection: Connection) -> HttpResponse:
        roles, workers = connection_users(connection)
        provider = _provider_or_none(connection.provider_key, self.organization)
        name = provider.display_name if provider else connection.provider_key
        if provider and provider.supports_revocation and connection.is_oauth():
            revocation = (
                f"Grantry asks {name} to revoke its access (revocation: supported) and "
                "destroys the stored credentials."
            )
        elif connection.is_oauth():
            revocation = (
                f"Grantry destroys the stored credentials. Revocation: not supported — {name} "
                "offers no revocation endpoint: remove Grantry's access in its own settings too."
            )
        else:
            revocation = (
                "Grantry destroys the stored credentials. Revocation: not supported — an API "
                f"key cannot be revoked by Grantry: delete it in {name}'s own settings too."
            )
        calls = recent_calls(self.organization, connection_id=connection.pk)
        confirmation = Confirmation(
            title=f"Disconnect {connection.name}?",
            stops=[
                f"Every agent call through {connection.name} fails from now on: "
                f"{len(workers)} worker{'' if len(workers) == 1 else 's'} can use it; "
                f"{calls} call{'' if calls == 1 else 's'} in the last hour.",
                revocation,
                "The name, account and history stay in the inventory and the audit trail.",
            ],
            button="Disconnect and destroy credentials",
            cancel_url=reverse("connections:list", kwargs={"org_slug": self.organization.slug}),
            lists=[("Workers that can use it", workers), ("Roles that allow it", roles)],
        )
        return confirmation_page(request, confirmation, self.get_context_data())

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self._confirm(request, self._connection())

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not is_confirmed(request):
            return self._confirm(request, self._connection())
        connection = services.connection_disconnect(
            connection_id=self._connection().pk, organization=self.organization
        )
        if connection.revocation_result == "failed":
            messages.warning(
                request,
                f"Disconnected '{connection.name}' and destroyed its secrets here, but the "
                "provider did not confirm the revocation. Revoke Grantry's access in the "
                "provider's settings too.",
            )
        else:
            messages.success(
                request,
                f"Disconnected '{connection.name}'. Its secrets are destroyed; connect again "
                "to restore access.",
            )
        return redirect("connections:list", org_slug=self.organization.slug)


class ProviderAppView(OrgViewMixin, TemplateView):
    """The org's OAuth client for one provider: client id, write-only secret."""

    template_name = "connections/provider_app.html"
    required_role = OrgRole.ADMIN
    write_role = OrgRole.ADMIN

    def _setup(self) -> None:
        self.provider = _provider_or_404(self.kwargs["provider_key"], self.organization)
        if AuthType.OAUTH2 not in self.provider.auth_types:
            raise Http404("This provider does not use OAuth.")
        self.app = self.tenant_rows(ProviderApp).filter(provider_key=self.provider.key).first()

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(
            provider=self.provider, app=self.app, redirect_uri=services.oauth_redirect_uri()
        )
        return context

    @override
    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        self._setup()
        initial = {"client_id": self.app.client_id} if self.app else {}
        form = ProviderAppForm(initial=initial, has_secret=bool(self.app and self.app.has_secret()))
        return self.render_to_response(self.get_context_data(form=form))

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        self._setup()
        form = ProviderAppForm(request.POST, has_secret=bool(self.app and self.app.has_secret()))
        if not form.is_valid():
            return self.render_to_response(self.get_context_data(form=form), status=400)
        services.provider_app_save(
            organization=self.organization,
            provider_key=self.provider.key,
            client_id=form.cleaned_data["client_id"],
            client_secret=form.cleaned_data["client_secret"] or None,
            actor=request.user,
        )
        messages.success(request, f"Saved the {self.provider.display_name} OAuth app.")
        return redirect(
            "connections:connect", org_slug=self.organization.slug, provider_key=self.provider.key
        )


# --- The OAuth callback (/oauth/callback/) ---------------------------------------------

FAILURE_PAGES = {
    "consent_denied": (
        "Access was not granted",
        "You (or the provider) declined the request for access, so nothing was connected.",
        "If that was a mistake, start Connect again and approve the request.",
    ),
    "provider_error": (
        "The provider reported an error",
        "The provider sent the browser back with an error instead of a grant.",
        "Check the OAuth app settings (client id, redirect URI, allowed scopes) at the "
        "provider, then start Connect again.",
    ),
    "state_invalid": (
        "This sign-in link is not valid here",
        "The answer from the provider does not belong to a connect attempt started in this "
        "browser session.",
        "Start Connect again from the Connections page, in the same browser.",
    ),
    "state_reused": (
        "This sign-in link was already used",
        "Each connect attempt can be completed only once (for example, the page was "
        "reloaded or the back button was used).",
        "Check the Connections page: the connection may already be there. Otherwise start "
        "Connect again.",
    ),
    "state_expired": (
        "The connect attempt expired",
        "More than 10 minutes passed between starting Connect and coming back.",
        "Start Connect again and finish within 10 minutes.",
    ),
    "token_exchange_failed": (
        "Could not get a token from the provider",
        "The provider answered, but exchanging the grant for a token failed.",
        "Check the client id and secret in the OAuth app settings (and that the redirect "
        "URI matches exactly), then start Connect again.",
    ),
    "issuer_mismatch": (
        "The answer came from an unexpected server",
        "The authorization server named in the answer is not the one this provider uses. "
        "Nothing was connected.",
        "Start Connect again. If this repeats, tell your security team.",
    ),
    "name_taken": (
        "That connection name is taken",
        "Another connection with the same name was created meanwhile.",
        "Start Connect again with a different name.",
    ),
    "forbidden": (
        "You cannot connect accounts here",
        "Only admins and owners of the organization can connect accounts.",
        "Ask an admin of the organization to connect it.",
    ),
}


class OAuthCallbackView(LoginRequiredMixin, View):
    def get(self, request: HttpRequest) -> HttpResponse:
        params = {
            k: request.GET.get(k, "")[:2000]
            for k in ("state", "code", "error", "error_description", "iss")
        }
        try:
            connection = services.connection_oauth_complete(
                params=params,
                actor=request.user,
                session_key=request.session.session_key or "",
            )
        except services.ConnectFailure as failure:
            title, what, next_step = FAILURE_PAGES.get(
                failure.code, FAILURE_PAGES["provider_error"]
            )
            back = (
                reverse("connections:list", kwargs={"org_slug": failure.organization_slug})
                if failure.organization_slug
                else resolve_url(settings.LOGIN_REDIRECT_URL)  # home: the project names it
            )
            return render(
                request,
                "connections/callback_error.html",
                {
                    "title": title,
                    "what": what,
                    "next_step": next_step,
                    "code": failure.code,
                    "detail": failure.detail,
                    "back_url": back,
                },
                status=400,
            )
        messages.success(
            request,
            f"Connected '{connection.name}'"
            + (f" as {connection.account_label}." if connection.account_label else "."),
        )
        return redirect("connections:list", org_slug=connection.organization.slug)


def mcp_client_metadata(_request: HttpRequest) -> HttpResponse:
    """Grantry's client ID metadata document, for upstream MCP servers' authorization
    servers (the URL is the client id: apps.connections.gateway.oauth)."""
    from apps.connections.gateway.oauth import client_metadata_document

    response = JsonResponse(client_metadata_document())
    response["Cache-Control"] = "public, max-age=3600"
    return response
