"""The tenant boundary. Every tenant view goes through one of these two mixins.

* The organization comes from the URL (`/o/<org_slug>/…`, `/api/v1/orgs/<org_slug>/…`)
  and never from a request body or form field.
* A user who is not a member gets 404, so ids and slugs do not leak.
* A member whose org role is too low gets 403.
* Tenant data is read only through `scope_queryset()`, which starts from the
  organization. Reaching `Model.objects` for tenant data elsewhere is a bug;
  the few deliberate escape hatches are named `dangerously_*` or `unscoped()`.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponseBase, HttpResponseRedirect
from django.urls import reverse
from rest_framework.request import Request

from apps.audit.models import ActorType, Outcome
from apps.audit.services import audit_record
from apps.core.api import APIError
from apps.core.models import tenant_rows
from apps.organizations.mfa import has_second_factor
from apps.organizations.models import Membership, Organization, OrgRole

_M = TypeVar("_M", bound=Model)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def resolve_membership(user: Any, org_slug: str | None) -> Membership:
    """The user's membership of the org named in the URL, or 404."""
    if not org_slug or user is None or not user.is_authenticated:
        raise Http404("No such organization.")
    membership = (
        Membership.objects.select_related("organization")
        .filter(organization__slug=org_slug, user=user)
        .first()
    )
    if membership is None:
        raise Http404("No such organization.")
    return membership


def require_role(membership: Membership, role: str) -> None:
    if not membership.has_at_least(role):
        raise PermissionDenied(
            f"This needs the {OrgRole(role).label} role or higher in {membership.organization}."
        )


def second_factor_missing(request: HttpRequest, organization: Organization) -> bool:
    """True when the org requires MFA and the user has none. The first refusal in a
    session is audited (not every request: the member is sent to set one up)."""
    if not organization.require_mfa or has_second_factor(request.user):
        return False
    session = getattr(request, "session", None)
    marker = f"grantry:mfa_block_audited:{organization.pk}"
    if session is None or not session.get(marker):
        audit_record(
            action="org.mfa_required_blocked",
            organization=organization,
            target=request.user,
            actor_type=ActorType.USER,
            actor_id=request.user.pk or "",
            actor_label=request.user.get_username(),
            outcome=Outcome.DENIED,
            metadata={"path": request.path[:200]},
        )
        if session is not None:
            session[marker] = True
    return True


class _TenantScope:
    """What both mixins share once the membership is known."""

    organization: Organization
    membership: Membership
    model: ClassVar[type[Model] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Refuse a view that would bypass the scope (after PostHog's routing.py): no
        class between a view and this one may define `get_queryset`. Narrow the rows in
        `scope_queryset()`; a view that truly needs rows of no organization defines
        `dangerously_get_queryset()`, which a reviewer can grep for."""
        super().__init_subclass__(**kwargs)
        for klass in cls.__mro__:
            if klass is _TenantScope:
                break
            if "get_queryset" in vars(klass):
                raise TypeError(
                    f"{klass.__qualname__} defines get_queryset(), which would bypass the "
                    "tenant scope: override scope_queryset() instead (or, for rows of no "
                    "organization, dangerously_get_queryset())."
                )

    def tenant_rows(self, model: type[_M]) -> QuerySet[_M]:
        """This organization's rows of `model`, directly or through its parent
        (apps.core.models.tenant_rows): the one way a view reaches tenant rows that are not
        `scope_queryset()`'s. tests/test_tenant_rows.py refuses `<TenantModel>.objects` in a
        view or API module."""
        return tenant_rows(model, self.organization)

    def scope_queryset(self) -> QuerySet[Any]:
        """Tenant rows of `model`. Override to add select_related or filters."""
        if self.model is None:
            raise NotImplementedError("Set `model` or override scope_queryset().")
        return self.tenant_rows(self.model)

    def dangerously_get_queryset(self) -> QuerySet[Any] | None:
        """The escape hatch: rows that are not scoped to the URL's organization. None
        (the default) means the view reads only `scope_queryset()`."""
        return None

    def get_queryset(self) -> QuerySet[Any]:
        unscoped = self.dangerously_get_queryset()
        return self.scope_queryset() if unscoped is None else unscoped


class OrgViewMixin(LoginRequiredMixin, _TenantScope):
    """Dashboard views under /o/<org_slug>/.

    `required_role` guards every method; `write_role` additionally guards
    unsafe methods (POST and friends)."""

    required_role: ClassVar[str] = OrgRole.MEMBER
    write_role: ClassVar[str | None] = None

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        self.membership = resolve_membership(request.user, kwargs.get("org_slug"))
        self.organization = self.membership.organization
        request.organization = self.organization  # type: ignore[attr-defined]
        request.membership = self.membership  # type: ignore[attr-defined]
        if second_factor_missing(request, self.organization):
            messages.warning(
                request,
                f"{self.organization.name} requires two-factor authentication. Add an "
                "authenticator app or a passkey, then open the organization again.",
            )
            return HttpResponseRedirect(reverse("mfa_index"))
        require_role(self.membership, self.required_role)
        if request.method not in SAFE_METHODS and self.write_role:
            require_role(self.membership, self.write_role)
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context: dict[str, Any] = super().get_context_data(**kwargs)  # type: ignore[misc]
        context["organization"] = self.organization
        context["membership"] = self.membership
        return context


class OrgAPIMixin(_TenantScope):
    """DRF views under /api/v1/orgs/<org_slug>/ (management API).

    Reviewers and above read; `write_role` (admin by default) writes."""

    read_role: ClassVar[str] = OrgRole.REVIEWER
    write_role: ClassVar[str] = OrgRole.ADMIN

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        self.membership = resolve_membership(request.user, kwargs.get("org_slug"))
        self.organization = self.membership.organization
        # A credential bound to one organization (a personal API token) is bound to
        # the org it was minted for: elsewhere, 404. A session has no such binding.
        bound_to = getattr(request.auth, "organization_id", None)
        if bound_to is not None and bound_to != self.organization.pk:
            raise Http404("No such organization.")
        if second_factor_missing(request, self.organization):
            raise APIError(
                "mfa_required",
                f"{self.organization.name} requires two-factor authentication: add an "
                "authenticator app or a passkey to your account first.",
                status_code=403,
            )
        require_role(self.membership, self.read_role)
        if request.method not in SAFE_METHODS:
            require_role(self.membership, self.write_role)
