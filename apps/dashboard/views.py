from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from apps.organizations.selectors import invitations_for_user, memberships_of
from apps.organizations.tenancy import resolve_membership


def landing(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("dashboard:home")
    return render(request, "dashboard/landing.html")


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Send a signed-in user to their last-used (or first) organization."""
    memberships = memberships_of(request.user)
    last = request.session.get("last_org")
    membership = memberships.filter(organization__slug=last).first() if last else None
    membership = membership or memberships.order_by("created_at").first()
    if membership is None:
        invitations = list(invitations_for_user(request.user))
        return render(request, "dashboard/no_org.html", {"invitations": invitations})
    return redirect("orgs:overview", org_slug=membership.organization.slug)


@login_required
def switch(request: HttpRequest) -> HttpResponse:
    """Switch to another of the user's organizations (404 if not a member)."""
    membership = resolve_membership(request.user, request.GET.get("org"))
    request.session["last_org"] = membership.organization.slug
    return redirect("orgs:overview", org_slug=membership.organization.slug)
