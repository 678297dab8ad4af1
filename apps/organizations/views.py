from __future__ import annotations

from typing import Any

from django.http import Http404
from django.views.generic import TemplateView

from apps.organizations.tenancy import OrgViewMixin

UPCOMING_SECTIONS = {
    "connections": ("Connections", "Connected SaaS accounts will be listed and managed here."),
    "workers": ("Workers", "Agent workers and their scoped tokens will be managed here."),
    "roles": ("Roles", "Roles and their deny-by-default rules will be edited here."),
    "audit": ("Audit", "Reviewers will browse, filter and export the audit trail here."),
    "members": ("Members", "Members and invitations will be managed here."),
    "settings": ("Settings", "Organization settings will be changed here."),
}


class OverviewView(OrgViewMixin, TemplateView):
    template_name = "organizations/overview.html"


class UpcomingSectionView(OrgViewMixin, TemplateView):
    """Placeholder for a dashboard section that is not built yet (no broken links)."""

    template_name = "organizations/upcoming.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        section = UPCOMING_SECTIONS.get(self.kwargs["section"])
        if section is None:
            raise Http404("No such section.")
        context["section_label"], context["section_help"] = section
        return context
