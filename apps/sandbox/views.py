"""The Sandbox's browser pages: the OAuth consent screen and a small home page.

The Sandbox shares Grantry's login session (the person connecting is already
signed in to Grantry), so an anonymous visitor is sent to the Grantry login."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from oauth2_provider.views import AuthorizationView

from apps.sandbox import services
from apps.sandbox.models import Project, SandboxApiKey


class SandboxAuthorizationView(AuthorizationView):
    """DOT's authorization endpoint, dressed as the Sandbox product's consent page."""

    template_name = "sandbox/authorize.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        scopes = context.get("scopes") or []
        descriptions = context.get("scopes_descriptions") or []
        context["scope_pairs"] = list(zip(scopes, descriptions, strict=False))
        if isinstance(self.request.user, User):
            context["starts_empty"] = not Project.objects.filter(owner=self.request.user).exists()
        return context

    def form_valid(self, form: Any) -> HttpResponse:
        if form.cleaned_data.get("allow"):
            services.sandbox_account_start(user=_user(self.request))
        return super().form_valid(form)


def _user(request: HttpRequest) -> User:
    """The signed-in person (every page here is behind login_required)."""
    if not isinstance(request.user, User):
        raise PermissionDenied
    return request.user


def _home_context(request: HttpRequest) -> dict[str, object]:
    return {
        "projects": Project.objects.filter(owner=_user(request)).prefetch_related("tasks"),
        "api_keys": SandboxApiKey.objects.filter(user=_user(request)),
    }


@require_GET
@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "sandbox/home.html", _home_context(request))


@require_POST
@login_required
def api_key_create(request: HttpRequest) -> HttpResponse:
    name = request.POST.get("name", "").strip()
    if not name:
        context = _home_context(request) | {"key_name_error": "Give the key a name."}
        return render(request, "sandbox/home.html", context, status=400)
    plaintext = services.sandbox_api_key_create(user=_user(request), name=name)
    services.sandbox_account_start(user=_user(request))
    # Rendered once, never stored: a redirect would need to carry the key somewhere.
    context = _home_context(request) | {"new_key": plaintext, "new_key_name": name}
    response = render(request, "sandbox/home.html", context, status=201)
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@login_required
def api_key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    try:
        api_key = services.sandbox_api_key_revoke(user=_user(request), key_id=key_id)
    except SandboxApiKey.DoesNotExist:
        return render(request, "sandbox/home.html", _home_context(request), status=404)
    messages.success(request, f"Key “{api_key.name}” is revoked; it no longer works.")
    return redirect("sandbox:home")


@require_POST
@login_required
def demo_data_load(request: HttpRequest) -> HttpResponse:
    services.sandbox_seed_user_data(user=_user(request))
    messages.success(request, "Demo projects and tasks are ready.")
    return redirect("sandbox:home")
