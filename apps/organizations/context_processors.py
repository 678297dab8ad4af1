from typing import Any

from django.http import HttpRequest


def current_organization(request: HttpRequest) -> dict[str, Any]:
    """The org the page is scoped to (set by OrgViewMixin) and the user's other orgs."""
    user = getattr(request, "user", None)
    context: dict[str, Any] = {
        "current_org": getattr(request, "organization", None),
        "current_membership": getattr(request, "membership", None),
    }
    if user is not None and user.is_authenticated:
        context["my_memberships"] = list(
            user.memberships.select_related("organization").order_by("organization__name")
        )
    return context
