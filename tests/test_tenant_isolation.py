"""Walks EVERY URL pattern and proves another organization cannot reach it.

For each route that names an organization (`org_slug`) or an object (any
other URL parameter), a user of another organization requests it (GET and
POST) and must get 404 (or 405 where the method is not allowed): never 200,
never a redirect into data, never 403 (which would confirm the object exists).

* `org_slug` is the victim org's slug; other parameters are filled with real
  ids/slugs of the victim org's objects, found generically: every model with an
  `organization` foreign key (and models hanging off those) gets one victim row.
* When every object parameter was filled with a real victim object, the route
  is also requested under the attacker's OWN org slug (cross-tenant object
  reference) and must 404 as well.
* /api/v1/orgs/<slug>/ routes are also requested with the attacker's personal
  API token (`Authorization: Bearer gryp_…`).

Routes added later are picked up automatically. A route that is neither
checked nor in ALLOWLIST below makes the test fail, so nothing slips through.
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.db import models, transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.converters import IntConverter, UUIDConverter
from django.urls.resolvers import RoutePattern
from django.utils import timezone
from oauth2_provider.models import get_application_model
from pytest_django.fixtures import Settings

from apps.audit.services import audit_record
from apps.organizations import services as org_services
from apps.organizations.models import Membership, Organization, OrgRole
from tests.factories import MembershipFactory, OrganizationFactory, UserFactory

pytestmark = pytest.mark.django_db

# Routes that are public by design or authenticated by something other than an
# org membership. Each entry: (regex on the route as written, why it is safe).
ALLOWLIST: list[tuple[str, str]] = [
    (r"^healthz$", "liveness probe: public by design, no tenant data"),
    (
        r"^metrics$",
        "Prometheus metrics: off unless GRANTRY_METRICS_TOKEN, then that bearer only; totals "
        "over all organizations, no organization named (apps/broker/tests/test_metrics.py)",
    ),
    (r"^admin/", "Django admin: staff only (is_staff), deliberately cross-tenant"),
    (r"^accounts/(?!tokens/)", "allauth pages: public, or about the signed-in user only"),
    (r"^accounts/tokens/$", "the signed-in user's own personal tokens; no id in the URL"),
    (r"^api/(schema|docs|redoc)/$", "OpenAPI schema and docs: public"),
    (r"^api/v1/(?!orgs/)", "agent API: worker-token auth, org comes from the token (broker tests)"),
    (r"^mcp$", "MCP endpoint: worker-token auth like the agent API (broker tests)"),
    (
        r"^mcp/c/<str:connection>$",
        "one MCP connection's tools: worker-token auth, the connection looked up in the "
        "token's organization (apps/broker/tests/test_mcp_gateway.py)",
    ),
    (
        r"^oauth/mcp-client\.json$",
        "Grantry's own OAuth client metadata document for upstream MCP servers: public",
    ),
    (r"^\.well-known/", "OAuth protected-resource metadata: public"),
    (r"^sandbox/", "offline demo SaaS: its own users and data, not Grantry tenants"),
    (r"^oauth/callback/$", "OAuth redirect target: bound to session + signed state (connections)"),
    (
        r"^oauth/(\.well-known/oauth-authorization-server|authorize/|token/|revoke/|register/)$",
        "Grantry's OAuth server for /mcp: public protocol endpoints; consent resolves the org "
        "with resolve_membership and binds only its own workers (apps/mcpauth tests)",
    ),
    (r"^invitations/<str:key>/$", "the secret key is the credential (organizations tests)"),
    (r"^$", "landing page"),
    (r"^home/$", "redirects to the signed-in user's own org"),
    (r"^switch/$", "org from ?org=, resolved by resolve_membership (tested below)"),
]

ALLOWED_STATUSES = {404, 405}
# Parameters whose values are vocabulary, not tenant objects.
NON_OBJECT_PARAMS = {"section", "fmt", "format"}
# Parameters whose name does not say their model (app_label.ModelName).
PARAM_MODELS = {
    "provider_slug": "providers.CustomProvider",
    "action_name": "providers.CustomAction",
}
# Parameters that name the view's own model (its `model` attribute).
OWN_MODEL_PARAMS = {"pk", "id", "public_id"}


# --- walking the resolver ------------------------------------------------------------


@dataclass
class Route:
    route: str  # e.g. "o/<slug:org_slug>/workers/<int:worker_id>/"
    view: Any
    converters: dict[str, Any] = field(default_factory=dict)
    is_regex: bool = False

    @property
    def params(self) -> list[str]:
        if self.is_regex:
            return re.findall(r"\(\?P<(\w+)>", self.route)
        return re.findall(r"<(?:\w+:)?(\w+)>", self.route)

    @property
    def view_class(self) -> Any:
        return getattr(self.view, "view_class", None) or getattr(self.view, "cls", None)


def all_routes() -> list[Route]:
    routes: list[Route] = []

    def walk(resolver: URLResolver, prefix: str, converters: dict[str, Any], regex: bool) -> None:
        for entry in resolver.url_patterns:
            pattern = entry.pattern
            is_route = isinstance(pattern, RoutePattern)
            text = prefix + str(pattern)
            convs = {**converters, **(pattern.converters if is_route else {})}
            if isinstance(entry, URLResolver):
                walk(entry, text, convs, regex or not is_route)
            elif isinstance(entry, URLPattern):
                routes.append(Route(text, entry.callback, convs, regex or not is_route))

    walk(get_resolver(), "", {}, False)
    return routes


def allowlisted(route: Route) -> str | None:
    for regex, reason in ALLOWLIST:
        if re.search(regex, route.route):
            return reason
    return None


# --- the victim's objects ------------------------------------------------------------


def _org_owned_models() -> list[type[models.Model]]:
    found = []
    for model in django_apps.get_models():
        fk = next((f for f in model._meta.fields if f.name == "organization"), None)
        if fk is not None and fk.related_model is Organization:
            found.append(model)
    return found


def _dependent_models(owned: set[type[models.Model]]) -> list[type[models.Model]]:
    """Models without an organization FK that hang off an org-owned model."""
    found = []
    for model in django_apps.get_models():
        if model in owned:
            continue
        for f in model._meta.fields:
            if isinstance(f, models.ForeignKey) and f.related_model in owned and not f.null:
                found.append(model)
                break
    return found


# A fake value per model field type, first match wins (an EmailField is a CharField too).
_FAKES: tuple[tuple[type[models.Field] | tuple[type[models.Field], ...], Any], ...] = (
    (models.EmailField, lambda _: f"{secrets.token_hex(4)}@victim.test"),
    (models.URLField, lambda _: "https://victim.example.test/"),
    (models.GenericIPAddressField, lambda _: "127.0.0.1"),
    (models.UUIDField, lambda _: uuid.uuid4()),
    (
        (models.CharField, models.TextField),
        lambda f: ("v" + secrets.token_hex(8))[: min(getattr(f, "max_length", None) or 16, 16)],
    ),
    (models.BooleanField, lambda _: False),
    (models.DateTimeField, lambda _: timezone.now() + timedelta(days=1)),
    (models.DateField, lambda _: timezone.now().date()),
    (models.DurationField, lambda _: timedelta(days=1)),
    ((models.IntegerField, models.FloatField, models.DecimalField), lambda _: 1),
    (models.JSONField, lambda _: {}),
    (models.BinaryField, lambda _: b"x"),
)


def _dummy(f: models.Field, victim: Organization, user: Any, index: dict) -> Any:
    if isinstance(f, models.ForeignKey):
        if f.related_model is Organization:
            return victim
        if f.related_model is type(user):
            return user
        return index.get(f.related_model, _MISSING)
    if f.choices:
        return f.choices[0][0]
    for kind, fake in _FAKES:
        if isinstance(f, kind):
            return fake(f)
    return _MISSING


_MISSING = object()


def _build(model: type[models.Model], victim: Organization, user: Any, index: dict) -> Any:
    values = {}
    for f in model._meta.concrete_fields:
        if f.primary_key or f.has_default() or getattr(f, "auto_now", False):
            continue
        if getattr(f, "auto_now_add", False) or (f.null and not isinstance(f, models.ForeignKey)):
            continue
        if isinstance(f, models.ForeignKey) and f.null and f.related_model is not Organization:
            continue
        if f.blank and not f.choices and isinstance(f, (models.CharField, models.TextField)):
            values[f.attname] = ""
            continue
        value = _dummy(f, victim, user, index)
        if value is _MISSING:
            return None
        values[f.name] = value
    with transaction.atomic():
        obj = model(**values)
        obj.save()
    return obj


@dataclass
class Victim:
    org: Organization
    owner: Any
    objects: dict[type[models.Model], Any]
    not_built: list[str]


def build_victim() -> Victim:
    org = OrganizationFactory(name="Victim Co", slug="victim")
    owner = MembershipFactory(organization=org, role=OrgRole.OWNER).user
    MembershipFactory(organization=org, role=OrgRole.MEMBER)
    owner_membership = Membership.objects.get(organization=org, user=owner)
    org_services.invitation_create(
        organization=org,
        email="invitee@victim.test",
        role="member",
        actor_membership=owner_membership,
    )
    audit_record(action="org.updated", organization=org)
    index: dict[type[models.Model], Any] = {}
    # An OAuth (MCP) client belongs to no organization; the victim's McpGrant binds it.
    application_model = get_application_model()
    index[application_model] = application_model.objects.create(
        name="Victim's MCP client",
        client_type=application_model.CLIENT_PUBLIC,
        authorization_grant_type=application_model.GRANT_AUTHORIZATION_CODE,
        redirect_uris="http://127.0.0.1:9/callback",
        registration_source=application_model.RegistrationSource.DCR,
    )
    owned = _org_owned_models()
    pending = owned + _dependent_models(set(owned))
    for _ in range(3):  # a few passes so models can refer to each other
        for model in list(pending):
            existing = _victim_row(model, org, owned)
            if existing is None:
                try:
                    existing = _build(model, org, owner, index)
                except Exception:  # a model we cannot fake: fall back below
                    existing = None
            if existing is not None:
                index[model] = existing
                pending.remove(model)
    return Victim(org, owner, index, [m._meta.label for m in pending])


def _victim_row(model: type[models.Model], org: Organization, owned: list) -> Any:
    manager = model._default_manager
    if model in owned:
        return manager.filter(organization=org).order_by("pk").first()
    for f in model._meta.fields:
        if isinstance(f, models.ForeignKey) and f.related_model in owned:
            return manager.filter(**{f"{f.name}__organization": org}).order_by("pk").first()
    return None


# --- filling URL parameters ------------------------------------------------------------


def _norm(name: str) -> str:
    return name.replace("_", "").lower()


def _model_for(param: str, route: Route, victim: Victim) -> type[models.Model] | None:
    view_model = None
    view_class = route.view_class
    if view_class is not None:
        view_model = getattr(view_class, "model", None)
        queryset = getattr(view_class, "queryset", None)
        if view_model is None and queryset is not None:
            view_model = queryset.model
    if param in OWN_MODEL_PARAMS and view_model in victim.objects:
        return view_model
    if param in PARAM_MODELS:
        model = django_apps.get_model(PARAM_MODELS[param])
        return model if model in victim.objects else None
    base = _norm(re.sub(r"_?(id|pk)$", "", param))
    candidates = [m for m in victim.objects if m._meta.model_name == base]
    candidates = candidates or [m for m in victim.objects if m._meta.model_name.endswith(base)]
    if view_model in candidates:
        return view_model
    return candidates[0] if candidates else None


def _value_from(obj: Any, param: str, converter: Any) -> Any:
    names = [param, "public_id", "slug", "key", "name"]
    if isinstance(converter, IntConverter):
        return obj.pk
    for name in names:
        if hasattr(obj, name) and getattr(obj, name) not in (None, ""):
            return getattr(obj, name)
    return obj.pk


def fill(route: Route, victim: Victim, org_slug: str) -> tuple[dict[str, Any], bool]:
    """URL kwargs, and whether every object parameter is a real victim object."""
    kwargs: dict[str, Any] = {}
    all_real = True
    for param in route.params:
        converter = route.converters.get(param)
        if param == "org_slug":
            kwargs[param] = org_slug
            continue
        model = _model_for(param, route, victim)
        value = None
        if model is not None:
            value = _value_from(victim.objects[model], param, converter)
        else:  # a field of that name on any victim object (slug, public_id, …)
            for obj in victim.objects.values():
                if not isinstance(converter, IntConverter) and getattr(obj, param, None):
                    value = getattr(obj, param)
                    break
        if value is None:
            all_real = False
            value = _placeholder(converter)
        if param in NON_OBJECT_PARAMS:
            all_real = False
        kwargs[param] = value
    return kwargs, all_real


def _placeholder(converter: Any) -> Any:
    if isinstance(converter, IntConverter):
        return 999999
    if isinstance(converter, UUIDConverter):
        return uuid.uuid4()
    return "placeholder"


def build_path(route: Route, kwargs: dict[str, Any]) -> str:
    def repl(match: re.Match[str]) -> str:
        name = match.group(1)
        converter = route.converters.get(name)
        value = kwargs[name]
        return str(converter.to_url(value)) if converter is not None else str(value)

    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", repl, route.route)


# --- the test ------------------------------------------------------------------------


@pytest.fixture
def attacker() -> Any:
    org = OrganizationFactory(name="Attacker Inc", slug="attacker")
    user = UserFactory(email="mallory@attacker.test")
    MembershipFactory(organization=org, user=user, role=OrgRole.OWNER)
    return org, user


def _attacker_token(attacker_org: Organization, user: Any) -> str | None:
    try:
        from apps.accounts.services import personal_token_mint
    except ImportError:
        return None
    _token, raw = personal_token_mint(user=user, organization=attacker_org, name="isolation")
    return raw


def _unwalkable(route: Any) -> str | None:
    """Why the walk cannot build a URL for a route it must check (None: it can)."""
    if not route.params:
        return f"{route.route}  (no org or object in the URL; allowlist it or scope it)"
    if route.is_regex:
        return f"{route.route}  (regex route with parameters: cannot build a URL)"
    return None


def _refused(
    attempts: list[tuple[str, str]], clients: list[tuple[str, Any]], is_api: bool
) -> tuple[int, list[str]]:
    """Send every attempt with every client and method: (requests sent, the answers that
    were not a refusal)."""
    checked, problems = 0, []
    for label, path in attempts:
        for auth, http in clients:
            # API detail routes often take PATCH/DELETE: an IDOR there is the worst kind.
            for method in ("get", "post", "patch", "delete") if is_api else ("get", "post"):
                extra = {}
                if method in ("post", "patch") and is_api:
                    extra = {"data": "{}", "content_type": "application/json"}
                response = getattr(http, method)(path, **extra)
                checked += 1
                if response.status_code not in ALLOWED_STATUSES:
                    where = response.get("Location", "")
                    problems.append(
                        f"{method.upper()} {path} [{label}, {auth}] -> "
                        f"{response.status_code} {where}".rstrip()
                    )
    return checked, problems


def test_every_tenant_route_is_404_for_another_organization(client: Client, attacker: Any) -> None:
    attacker_org, mallory = attacker
    victim = build_victim()
    token = _attacker_token(attacker_org, mallory)
    assert token, "PersonalAPIToken minting is expected to exist (apps.accounts.services)"
    client.force_login(mallory)
    token_client = client.__class__(HTTP_AUTHORIZATION=f"Bearer {token}")

    problems: list[str] = []
    unchecked: list[str] = []
    checked = 0
    placeholders: list[str] = []

    for route in all_routes():
        params = route.params
        if allowlisted(route):
            continue
        reason = _unwalkable(route)
        if reason is not None:
            unchecked.append(reason)
            continue
        kwargs, all_real = fill(route, victim, victim.org.slug)
        attempts = [("victim org", build_path(route, kwargs))]
        if all_real and "org_slug" in params and len(params) > 1:
            own_kwargs = {**kwargs, "org_slug": attacker_org.slug}
            attempts.append(("attacker org + victim ids", build_path(route, own_kwargs)))
        if not all_real and len(params) > ("org_slug" in params):
            placeholders.append(route.route)
        clients = [("session", client)]
        if route.route.startswith("api/v1/orgs/"):
            clients.append(("personal token", token_client))
        sent, not_refused = _refused(attempts, clients, route.route.startswith("api/"))
        checked += sent
        problems.extend(not_refused)

    print(f"\nTenant isolation: {checked} requests checked.")
    if placeholders:
        print("Routes filled with placeholder ids (no victim object found):")
        for placeholder in placeholders:
            print("   ", placeholder)
    if victim.not_built:
        print("Models the test could not fake for the victim org:", ", ".join(victim.not_built))
    assert not unchecked, "Routes neither checked nor allowlisted:\n" + "\n".join(unchecked)
    assert not problems, "Cross-tenant access not refused with 404/405:\n" + "\n".join(problems)
    assert checked > 0


# The management API routes that mirror the dashboard (issue 17). Each must be walked
# with REAL victim objects in its URL (no placeholder), so the cross-tenant attempt
# "attacker's org slug + victim's ids" is made for every one of them, with the
# attacker's session and with the attacker's personal token.
MANAGEMENT_ROUTES = [
    "members/",
    "members/<int:membership_id>/",
    "invitations/",
    "invitations/<int:invitation_id>/revoke/",
    "settings/",
    "provider-apps/",
    "provider-apps/<str:provider_key>/",
    "connections/api-key/",
    "connections/oauth/start/",
    "custom-providers/",
    "custom-providers/<slug:provider_slug>/",
    "custom-providers/<slug:provider_slug>/actions/",
    "custom-providers/<slug:provider_slug>/actions/<slug:action_name>/",
    "custom-providers/<slug:provider_slug>/openapi-import/",
    "custom-providers/<slug:provider_slug>/openapi-import/<int:pk>/",
    "personal-tokens/",
    "personal-tokens/<str:public_id>/revoke/",
    "audit/exports/",
    "audit/exports/<int:export_id>/",
    "audit/exports/<int:export_id>/download/",
    "roles/<int:role_id>/test/",
    "mcp/policy/",
    "mcp/grants/",
    "mcp/grants/<int:grant_id>/",
    "mcp/grants/<int:grant_id>/revoke/",
    # issue 25: the inventory of raw keys
    "inventory/summary/",
    "inventory/scans/",
    "inventory/findings/",
    "inventory/findings/<str:finding_id>/",
    "inventory/findings/<str:finding_id>/import/",
    "inventory/findings/<str:finding_id>/config-replaced/",
    "inventory/findings/<str:finding_id>/new-key/",
    "inventory/findings/<str:finding_id>/confirm-rotated/",
    "inventory/findings/<str:finding_id>/role-proposal/",
]


def test_management_routes_are_walked_with_real_victim_objects() -> None:
    prefix = "api/v1/orgs/<slug:org_slug>/"
    routes = {r.route: r for r in all_routes()}
    victim = build_victim()
    for suffix in MANAGEMENT_ROUTES:
        route = routes.get(prefix + suffix)
        assert route is not None, f"{suffix} is not routed"
        assert not allowlisted(route), suffix
        _kwargs, all_real = fill(route, victim, victim.org.slug)
        assert all_real, f"{suffix}: no real victim object for its parameters"


def test_walker_sees_the_known_tenant_routes() -> None:
    """Guards the walker itself: if it stopped finding routes, the test above
    would pass vacuously."""
    texts = {r.route for r in all_routes()}
    assert "o/<slug:org_slug>/members/" in texts
    assert "o/<slug:org_slug>/members/<int:membership_id>/role/" in texts
    assert any(t.startswith("api/v1/orgs/<slug:org_slug>/") for t in texts)


def test_an_unscoped_view_would_be_caught(
    client: Client, attacker: Any, settings: Settings
) -> None:
    """A deliberately leaky route (no membership check) must fail the check."""
    from django.http import HttpResponse
    from django.urls import clear_url_caches, path

    import grantry.urls

    def leaky(_request: Any, org_slug: Any) -> Any:
        return HttpResponse(Organization.objects.get(slug=org_slug).name)

    module = type(grantry)("leaky_urls")
    module.__dict__["urlpatterns"] = [
        *grantry.urls.urlpatterns,
        path("o/<slug:org_slug>/leak/", leaky),
    ]
    settings.ROOT_URLCONF = module
    clear_url_caches()
    try:
        _org, mallory = attacker
        victim = build_victim()
        client.force_login(mallory)
        leak = next(r for r in all_routes() if r.route == "o/<slug:org_slug>/leak/")
        assert not allowlisted(leak)
        kwargs, _ = fill(leak, victim, victim.org.slug)
        assert client.get(build_path(leak, kwargs)).status_code == 200  # i.e. would be reported
    finally:
        clear_url_caches()


def test_org_switch_to_a_foreign_org_is_404(client: Client, attacker: Any) -> None:
    _org, mallory = attacker
    victim = build_victim()
    client.force_login(mallory)
    assert client.get("/switch/", {"org": victim.org.slug}).status_code == 404


APPROVAL_ROUTES = {
    "o/<slug:org_slug>/approvals/",
    "o/<slug:org_slug>/approvals/settings/",
    "o/<slug:org_slug>/approvals/<str:approval_id>/",
    "o/<slug:org_slug>/approvals/<str:approval_id>/link/<str:token>/",
    "api/v1/orgs/<slug:org_slug>/approvals/",
    "api/v1/orgs/<slug:org_slug>/approvals/<str:approval_id>/",
    "api/v1/orgs/<slug:org_slug>/approvals/<str:approval_id>/approve/",
    "api/v1/orgs/<slug:org_slug>/approvals/<str:approval_id>/deny/",
}


def test_the_walk_reaches_approval_routes_with_a_real_victim_approval() -> None:
    """The approvals queue, decisions and API are in the walk above, filled with the
    victim's real approval id (so a cross-tenant IDOR would be caught)."""
    from apps.approvals.models import Approval

    routes = {r.route: r for r in all_routes()}
    assert set(routes) >= APPROVAL_ROUTES
    victim = build_victim()
    assert Approval in victim.objects, victim.not_built
    real = victim.objects[Approval].public_id
    for text in APPROVAL_ROUTES:
        route = routes[text]
        assert not allowlisted(route)
        kwargs, _ = fill(route, victim, victim.org.slug)
        if "approval_id" in kwargs:
            assert kwargs["approval_id"] == real


def test_the_agent_approval_status_is_404_for_another_organizations_token(client: Client) -> None:
    """The agent route is allowlisted above (worker-token auth): checked here."""
    from apps.approvals.models import Approval
    from apps.policies.services import role_create
    from apps.workers.services import token_mint, worker_create

    victim = build_victim()
    approval = victim.objects[Approval]
    attacker_org = OrganizationFactory(name="Agent Attacker", slug="agent-attacker")
    role = role_create(organization=attacker_org, name="r")
    worker = worker_create(organization=attacker_org, name="w", default_role=role)
    _token, raw = token_mint(worker=worker)
    response = client.get(
        f"/api/v1/approvals/{approval.public_id}", HTTP_AUTHORIZATION=f"Bearer {raw}"
    )
    assert response.status_code == 404
