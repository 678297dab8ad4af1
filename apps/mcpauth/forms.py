from __future__ import annotations

from typing import Any, ClassVar

from django import forms
from django.db.models import Q
from oauth2_provider.forms import AllowForm

from apps.mcpauth.models import McpPolicy
from apps.organizations.models import Organization
from apps.policies.models import Role
from apps.workers.models import Worker, WorkerStatus

NEW_WORKER = "new"


class ConsentForm(AllowForm):
    """DOT's hidden authorization fields, plus the worker the client will act as."""

    worker = forms.ChoiceField(label="Act as worker", required=False)
    new_worker_name = forms.SlugField(
        label="New worker name",
        max_length=60,
        required=False,
        help_text="Unique in the organization.",
    )
    role = forms.ModelChoiceField(
        label="Role of the new worker", queryset=Role.objects.none(), required=False
    )

    for_myself = forms.BooleanField(
        label="Act for me",
        required=False,
        help_text="The worker acts for you: rules with connection “on behalf of” use your "
        "personal connections, and every call names the worker and you.",
    )

    def __init__(
        self,
        *args: Any,
        organization: Organization | None = None,
        user: Any = None,
        admin: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.organization = organization
        self.admin = admin
        workers = (
            Worker.objects.filter(organization=organization, status=WorkerStatus.ACTIVE).order_by(
                "name"
            )
            if organization is not None
            else Worker.objects.none()
        )
        # Never a worker that acts for someone else; a member only their own.
        workers = (
            workers.filter(Q(acts_for__isnull=True) | Q(acts_for=user))
            if admin
            else (workers.filter(acts_for=user))
        )
        self.fields["worker"].choices = [
            # A worker that requires DPoP gives a client a token only with a proof
            # (apps.mcpauth.validator), which few MCP clients can sign: say so here.
            *[
                (str(w.pk), f"{w.name} (requires DPoP)" if w.require_dpop else w.name)
                for w in workers
            ],
            (NEW_WORKER, "A new worker…"),
        ]
        self.fields["role"].queryset = (
            Role.objects.filter(organization=organization).order_by("name")
            if organization is not None
            else Role.objects.none()
        )
        if not admin:  # the admins chose the role of members' own clients
            del self.fields["role"], self.fields["for_myself"]
        self.workers = {str(w.pk): w for w in workers}

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not data.get("allow"):
            return data  # a refusal needs no worker
        choice = data.get("worker") or ""
        if choice == NEW_WORKER:
            if not data.get("new_worker_name"):
                self.add_error("new_worker_name", "Name the new worker.")
            if self.admin and data.get("role") is None:
                self.add_error("role", "Choose the new worker's role.")
            data["worker_obj"] = None
        elif choice in self.workers:
            data["worker_obj"] = self.workers[choice]
            data["role"] = None  # an existing worker acts with its own default role
        else:
            self.add_error("worker", "Choose a worker of this organization.")
        return data


class PolicyForm(forms.ModelForm):
    class Meta:
        model = McpPolicy
        fields = ("clients_allowed", "allowed_clients", "token_minutes", "member_role")
        labels: ClassVar[dict[str, str]] = {
            "clients_allowed": "Allow OAuth (MCP) clients",
            "allowed_clients": "Allowed client ids",
            "token_minutes": "Access token lifetime (minutes)",
            "member_role": "Members' own clients: role",
        }
        widgets: ClassVar[dict[str, Any]] = {"allowed_clients": forms.Textarea(attrs={"rows": 4})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        organization_id = self.instance.organization_id
        field = self.fields["member_role"]
        field.queryset = Role.objects.filter(organization_id=organization_id).order_by("name")  # type: ignore[attr-defined]
        field.empty_label = "Members may not connect clients (only admins)"  # type: ignore[attr-defined]
