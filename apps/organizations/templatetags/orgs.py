from __future__ import annotations

from django import template

from apps.organizations.invitations import pending_invitation as _pending
from apps.organizations.models import Invitation

register = template.Library()


@register.simple_tag(takes_context=True)
def pending_invitation(context: template.Context) -> Invitation | None:
    """The usable invitation this visitor opened before signing up or logging in."""
    request = context.get("request")
    return _pending(request) if request is not None else None
