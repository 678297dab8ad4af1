from __future__ import annotations

from django import template
from django.urls import NoReverseMatch, reverse

register = template.Library()

# The dashboard's sections, in navigation order: (label, url name, section key, the
# least org role that may open it). A section the viewer's role cannot open is not shown.
SECTIONS = [
    ("Overview", "orgs:overview", "overview", "member"),
    ("Connections", "connections:list", "connections", "member"),
    ("Workers", "workers:list", "workers", "reviewer"),
    ("Roles", "policies:list", "roles", "member"),
    ("Approvals", "approvals:list", "approvals", "member"),
    ("Providers", "providers:catalog", "providers", "member"),
    ("Audit", "audit:list", "audit", "reviewer"),
    ("Inventory", "inventory:list", "inventory", "reviewer"),
    ("Members", "orgs:members", "members", "member"),
    ("Settings", "orgs:settings", "settings", "member"),
]


@register.simple_tag(takes_context=True)
def org_sections(context: template.Context) -> list[dict[str, object]]:
    """Navigation entries for the current org. A section whose pages do not
    exist yet links to a page that says so, never to a 404."""
    org = context.get("current_org") or context.get("organization")
    if org is None:
        return []
    request = context.get("request")
    path = request.path if request is not None else ""
    membership = context.get("current_membership") or context.get("membership")
    entries = []
    for label, url_name, key, least in SECTIONS:
        if membership is not None and not membership.has_at_least(least):
            continue
        try:
            url = reverse(url_name, kwargs={"org_slug": org.slug})
            ready = True
        except NoReverseMatch:
            url = reverse("orgs:upcoming", kwargs={"org_slug": org.slug, "section": key})
            ready = False
        active = path == url if key == "overview" else path.startswith(url)
        entries.append({"label": label, "url": url, "ready": ready, "active": active})
    return entries


@register.simple_tag
def org_overview(organization: object) -> object:
    """The overview page's figures (see apps.dashboard.overview)."""
    from apps.dashboard.overview import organization_overview

    return organization_overview(organization)


@register.simple_tag(takes_context=True)
def undo_offer(context: template.Context) -> dict[str, object] | None:
    """The Undo that the last action offered (apps.core.confirm.offer_undo), once."""
    from apps.core.confirm import take_undo

    org = context.get("current_org") or context.get("organization")
    request = context.get("request")
    if org is None or request is None or not hasattr(request, "session"):
        return None
    return take_undo(request, org.slug)


@register.simple_tag(takes_context=True)
def org_admins(context: template.Context) -> list[str]:
    """Emails of the current org's owners and admins: who can grant a role."""
    org = context.get("current_org") or context.get("organization")
    if org is None:
        return []
    return list(
        org.memberships.filter(role__in=("owner", "admin"))
        .order_by("-role", "user__email")
        .values_list("user__email", flat=True)[:10]
    )
