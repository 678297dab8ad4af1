"""Dashboard forms. They only shape input; rule validation lives in
apps.policies.validation and runs inside the services."""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, ClassVar, cast

from django import forms
from django.core.exceptions import ValidationError

from apps.connections.models import ON_BEHALF_OF, Connection
from apps.policies.evaluate import CONSTRAINT_OPS, HTTP_METHODS
from apps.policies.windows import DAY_NAMES
from apps.providers.registry import all_actions

CONSTRAINT_ROWS = 3
OP_LABELS = {
    "equals": "equals",
    "one_of": "is one of (comma-separated)",
    "glob": "matches glob (* within a segment, ** across /)",
    "prefix": "starts with",
    "max": "is at most (number)",
}


class RoleForm(forms.Form):
    name = forms.CharField(
        max_length=60,
        help_text="Letters, numbers, hyphens and underscores, e.g. “triage” or “sandbox-reader”.",
    )
    description = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="What this role is for, in one or two sentences.",
    )


def _schema_type(actions: list[Any], field: str) -> str:
    for action in actions:
        prop = (action.input_schema or {}).get("properties", {}).get(field)
        if isinstance(prop, dict):
            kind = prop.get("type")
            return kind if isinstance(kind, str) else "string"
    return "string"


def _coerce(text: str, kind: str, op: str) -> Any:
    """Typed constraint value from what an admin typed, using the input schema's type."""
    if op in ("glob", "prefix"):
        return text
    if op == "max" or kind in ("integer", "number"):
        try:
            number = json.loads(text)
        except ValueError:
            raise ValidationError(f"“{text}” is not a number.") from None
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise ValidationError(f"“{text}” is not a number.")
        return number
    if kind == "boolean":
        if text.lower() not in ("true", "false"):
            raise ValidationError("Enter true or false.")
        return text.lower() == "true"
    return text


class ApprovalFields(forms.Form):
    """Approval settings shared by the action and proxy rule forms."""

    approval_required = forms.BooleanField(
        label="Require a person's approval for each call",
        required=False,
        help_text="The agent gets 202 and an approval id; the call runs once, after approval, "
        "with exactly the input that was approved.",
    )
    approval_expires_minutes = forms.IntegerField(
        label="Approval request valid for (minutes)",
        required=False,
        min_value=1,
        max_value=7 * 24 * 60,
        help_text="Default 60. An unanswered or unused request expires after this.",
    )
    approvers = forms.MultipleChoiceField(
        label="Approvers",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: the organization's admins and owners.",
    )

    def setup_approvers(self, members: list[Any] | None) -> None:
        cast(forms.MultipleChoiceField, self.fields["approvers"]).choices = [
            (str(u.pk), u.email) for u in members or []
        ]

    def approval_rule(self) -> dict[str, Any]:
        data = self.cleaned_data
        if not data.get("approval_required"):
            return {}
        minutes = data.get("approval_expires_minutes")
        return {
            "required": True,
            "expires_in": minutes * 60 if minutes else None,
            "approvers": [int(pk) for pk in data.get("approvers") or []],
        }

    def approval_fields(self) -> list[Any]:
        return [self["approval_required"], self["approval_expires_minutes"], self["approvers"]]


class WindowQuotaForm(forms.Form):
    """A rule's optional time window and per-worker quota (apps/policies/windows.py)."""

    window_days = forms.MultipleChoiceField(
        label="Only on these days",
        required=False,
        choices=[(d, d.capitalize()) for d in DAY_NAMES],
        widget=forms.CheckboxSelectMultiple,
        help_text="Leave all unticked for any time. Outside the window calls get 403 with "
        "the time it reopens.",
    )
    window_start = forms.CharField(
        label="From",
        required=False,
        max_length=5,
        widget=forms.TextInput(attrs={"placeholder": "09:00"}),
    )
    window_end = forms.CharField(
        label="Until",
        required=False,
        max_length=5,
        widget=forms.TextInput(attrs={"placeholder": "18:00"}),
        help_text="Exclusive; before 'From' means over midnight; 24:00 is the end of the day.",
    )
    window_timezone = forms.CharField(
        label="Time zone",
        required=False,
        max_length=60,
        initial="UTC",
        help_text="e.g. Europe/Berlin",
    )
    quota_limit = forms.IntegerField(
        label="Quota (calls per worker)",
        required=False,
        min_value=1,
        help_text="Leave empty for no quota. Over it calls get 429 with Retry-After.",
    )
    quota_per = forms.ChoiceField(
        label="per",
        required=False,
        choices=[("day", "day"), ("hour", "hour"), ("minute", "minute")],
        initial="day",
    )

    def window_fields(self) -> list[Any]:
        return [self[n] for n in ("window_days", "window_start", "window_end", "window_timezone")]

    def quota_fields(self) -> list[Any]:
        return [self["quota_limit"], self["quota_per"]]

    def window_and_quota(self) -> dict[str, Any]:
        data = self.cleaned_data
        schedule = None
        if data.get("window_days"):
            schedule = {
                "days": list(data["window_days"]),
                "start": data.get("window_start") or "",
                "end": data.get("window_end") or "",
                "timezone": data.get("window_timezone") or "UTC",
            }
        quota = None
        if data.get("quota_limit"):
            quota = {"limit": data["quota_limit"], "per": data.get("quota_per") or "day"}
        return {"schedule": schedule, "quota": quota}


class ActionRuleForm(ApprovalFields, WindowQuotaForm):
    """One action rule for one provider: which actions, where, under which conditions."""

    actions = forms.ChoiceField(label="Actions")
    connection = forms.ChoiceField(
        label="Connection",
        required=False,
        help_text="Any shared connection of this provider in the organization, only one, or "
        "the personal connection of the member the worker acts for (on behalf of).",
    )
    rate_limit_per_minute = forms.IntegerField(
        label="Rate limit (calls per minute per token)",
        required=False,
        min_value=1,
        help_text="Leave empty for no limit.",
    )

    def __init__(
        self,
        *args: Any,
        provider: Any,
        connections: list[Any],
        members: list[Any] | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.setup_approvers(members)
        self.provider = provider
        self.provider_actions = list(provider.actions)
        key = provider.key
        cast(forms.ChoiceField, self.fields["actions"]).choices = [
            (
                "Groups",
                [
                    (f"all:{key}", f"All actions of {provider.display_name}"),
                    (f"read:{key}", f"All read actions of {provider.display_name}"),
                    (f"write:{key}", f"All write actions of {provider.display_name}"),
                ],
            ),
            (
                "One action",
                [
                    (f"exact:{a.name}", f"{a.name} ({a.action_class})")
                    for a in self.provider_actions
                ],
            ),
        ]
        cast(forms.ChoiceField, self.fields["connection"]).choices = [
            ("", f"Any {provider.display_name} connection"),
            (
                ON_BEHALF_OF,
                f"On behalf of: the personal {provider.display_name} connection of the member "
                "the worker acts for",
            ),
        ] + [
            (str(c.pk), f"{c.name} ({c.account_label or c.provider_key})")
            for c in connections
            if getattr(c, "owner_id", None) is None
        ]
        fields = sorted(
            {f for a in self.provider_actions for f in (a.input_schema or {}).get("properties", {})}
        )
        for i in range(CONSTRAINT_ROWS):
            self.fields[f"c{i}_field"] = forms.ChoiceField(
                label=f"Condition {i + 1}: input field",
                required=False,
                choices=[("", "— no condition —")] + [(f, f) for f in fields],
            )
            self.fields[f"c{i}_op"] = forms.ChoiceField(
                label=f"Condition {i + 1}: operator",
                required=False,
                choices=[(op, OP_LABELS[op]) for op in CONSTRAINT_OPS],
            )
            self.fields[f"c{i}_value"] = forms.CharField(
                label=f"Condition {i + 1}: value", required=False, max_length=500
            )

    def constraint_rows(self) -> list[tuple[Any, Any, Any]]:
        return [
            (self[f"c{i}_field"], self[f"c{i}_op"], self[f"c{i}_value"])
            for i in range(CONSTRAINT_ROWS)
        ]

    def _matched(self, kind: str, target: str) -> list[Any]:
        if kind == "exact":
            return [a for a in self.provider_actions if a.name == target]
        if kind in ("read", "write"):
            return [a for a in self.provider_actions if str(a.action_class) == kind]
        return self.provider_actions

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind, _, target = (data.get("actions") or "").partition(":")
        matched = self._matched(kind, target)
        constraints = []
        for i in range(CONSTRAINT_ROWS):
            field, op = data.get(f"c{i}_field"), data.get(f"c{i}_op")
            text = (data.get(f"c{i}_value") or "").strip()
            if not field:
                continue
            if not text:
                self.add_error(f"c{i}_value", "Enter a value for this condition.")
                continue
            kind_of_field = _schema_type(matched, field)
            try:
                if op == "one_of":
                    parts = [p.strip() for p in text.split(",") if p.strip()]
                    value: Any = [_coerce(p, kind_of_field, "equals") for p in parts]
                else:
                    value = _coerce(text, kind_of_field, op or "")
            except ValidationError as exc:
                self.add_error(f"c{i}_value", exc)
                continue
            constraints.append({"field": field, "op": op, "value": value})
        data["constraint_list"] = constraints
        return data

    def to_rule(self) -> dict[str, Any]:
        data = self.cleaned_data
        kind, _, target = data["actions"].partition(":")
        key = self.provider.key
        return {
            "kind": "action",
            "provider_key": key,
            "action_pattern": target if kind == "exact" else f"{key}.*",
            "action_class": kind if kind in ("read", "write") else "",
            "connection": _rule_connection(data.get("connection")),
            "constraints": data["constraint_list"],
            "rate_limit_per_minute": data.get("rate_limit_per_minute"),
            "approval": self.approval_rule(),
            **self.window_and_quota(),
        }

    # Service error keys (rules.0.<name>…) → the form field that caused them.
    ERROR_FIELDS: ClassVar[dict[str, str]] = {
        "action_pattern": "actions",
        "action_class": "actions",
        "connection": "connection",
        "rate_limit_per_minute": "rate_limit_per_minute",
        "approval": "approval_required",
        "schedule": "window_days",
        "quota": "quota_limit",
    }

    def add_service_errors(self, errors: dict[str, list[str]]) -> None:
        for key, messages in errors.items():
            parts = key.split(".")
            name = parts[2] if len(parts) > 2 else ""
            target = self.ERROR_FIELDS.get(name)
            if name == "constraints" and len(parts) > 3:
                row = int(parts[3]) if parts[3].isdigit() else 0
                part = parts[4] if len(parts) > 4 else "value"
                target = f"c{row}_{part}" if f"c{row}_{part}" in self.fields else None
            for message in messages:
                self.add_error(target, message)


def _rule_connection(value: Any) -> int | str | None:
    """The connection choice as a rule says it: an id, `on_behalf_of`, or any (None)."""
    if value == ON_BEHALF_OF:
        return ON_BEHALF_OF
    return int(value) if value else None


@dataclass(frozen=True)
class ToolChoice:
    """A tool of an MCP connection, in the shape the action form reads (name, class,
    input schema), from its approved definition (or as listed, while not approved)."""

    name: str
    action_class: str
    input_schema: dict[str, Any]

    @classmethod
    def of(cls, tool: Any) -> ToolChoice:
        definition = tool.approved_definition or tool.definition
        read_only = bool((definition.get("annotations") or {}).get("readOnlyHint"))
        return cls(
            name=tool.name,
            action_class="read" if read_only else "write",
            input_schema=dict(definition.get("inputSchema") or {}),
        )


class McpRuleForm(ActionRuleForm):
    """One rule for the tools of one MCP connection: one tool, its read-only tools, its
    other tools or all of them; the same conditions, limits, windows and approval as an
    action rule."""

    def __init__(self, *args: Any, connection: Any, tools: list[ToolChoice], **kwargs: Any):
        shape = SimpleNamespace(key="mcp", display_name=connection.name, actions=tools)
        super().__init__(*args, provider=shape, connections=[connection], **kwargs)
        self.mcp_connection = connection
        cast(forms.ChoiceField, self.fields["actions"]).label = "Tools"
        cast(forms.ChoiceField, self.fields["actions"]).choices = [
            (
                "Groups",
                [
                    ("all:*", f"All tools of {connection.name}"),
                    ("read:*", "Its read-only tools (readOnlyHint)"),
                    ("write:*", "Its other tools"),
                ],
            ),
            ("One tool", [(f"exact:{t.name}", f"{t.name} ({t.action_class})") for t in tools]),
        ]
        connection_field = cast(forms.ChoiceField, self.fields["connection"])
        connection_field.choices = [(str(connection.pk), connection.name)]
        connection_field.required = True
        connection_field.help_text = "An MCP rule is about one server's tools."

    def _matched(self, kind: str, target: str) -> list[Any]:
        return super()._matched(kind, target if kind == "exact" else "")

    def to_rule(self) -> dict[str, Any]:
        rule = super().to_rule()
        kind, _, target = self.cleaned_data["actions"].partition(":")
        rule.update(
            kind="mcp",
            provider_key="mcp",
            action_pattern=target if kind == "exact" else "*",
            connection=self.mcp_connection.pk,
        )
        return rule


class ProxyRuleForm(ApprovalFields, WindowQuotaForm):
    """One proxy rule: HTTP methods and a path glob on one connection."""

    field_order = ("connection", "methods", "path_glob", "rate_limit_per_minute")

    connection = forms.ChoiceField(label="Connection")
    methods = forms.MultipleChoiceField(
        label="HTTP methods",
        choices=[(m, m) for m in HTTP_METHODS],
        widget=forms.CheckboxSelectMultiple,
    )
    path_glob = forms.CharField(
        label="Path glob",
        max_length=300,
        help_text="Starts with “/”. * matches one path segment, ** any number, "
        "e.g. /repos/acme/*/issues.",
    )
    rate_limit_per_minute = forms.IntegerField(
        label="Rate limit (calls per minute per token)",
        required=False,
        min_value=1,
        help_text="Leave empty for no limit.",
    )

    def __init__(
        self,
        *args: Any,
        connections: list[Any],
        members: list[Any] | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.setup_approvers(members)
        self.connections = {str(c.pk): c for c in connections}
        cast(forms.ChoiceField, self.fields["connection"]).choices = [
            (str(c.pk), f"{c.name} ({c.provider_key})") for c in connections
        ]

    def to_rule(self) -> dict[str, Any]:
        data = self.cleaned_data
        conn = self.connections[data["connection"]]
        return {
            "kind": "proxy",
            "provider_key": conn.provider_key,
            "connection": conn.pk,
            "methods": data["methods"],
            "path_glob": data["path_glob"],
            "rate_limit_per_minute": data.get("rate_limit_per_minute"),
            "approval": self.approval_rule(),
            **self.window_and_quota(),
        }

    # Service error keys (rules.0.<name>…) naming no field of their own → the form field.
    ERROR_FIELDS: ClassVar[dict[str, str]] = {
        "approval": "approval_required",
        "schedule": "window_days",
        "quota": "quota_limit",
    }

    def add_service_errors(self, errors: dict[str, list[str]]) -> None:
        for key, messages in errors.items():
            name = key.split(".")[2] if key.count(".") >= 2 else ""
            name = self.ERROR_FIELDS.get(name, name)
            target = name if name in self.fields else None
            for message in messages:
                self.add_error(target, message)


class DryRunForm(forms.Form):
    """“Test a call”: what would this role decide? Nothing is sent anywhere."""

    kind = forms.ChoiceField(
        label="Kind of call",
        choices=[("action", "An action"), ("proxy", "A proxy call")],
        initial="action",
        widget=forms.RadioSelect,
    )
    action = forms.ChoiceField(label="Action", required=False)
    connection = forms.ChoiceField(label="Connection", required=False)
    input = forms.CharField(
        label="Input (JSON object)",
        required=False,
        initial="{}",
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
        help_text='For example {"project_id": 1}. Used for actions only.',
    )
    method = forms.ChoiceField(
        label="Method (proxy)", required=False, choices=[(m, m) for m in HTTP_METHODS]
    )
    path = forms.CharField(label="Path (proxy)", required=False, max_length=500)

    @classmethod
    def for_organization(cls, organization: Any, data: Any = None) -> DryRunForm:
        """The form with the organization's actions and connections to choose from
        (the dashboard's “Test a call” and the API's dry-run share it)."""

        return cls(
            data,
            actions=all_actions(organization=organization),
            connections=list(
                Connection.objects.for_organization(organization).shared().order_by("name")
            ),
        )

    def __init__(self, *args: Any, actions: list[Any], connections: list[Any], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.actions_by_name = {a.name: a for a in actions}
        self.connections = {str(c.pk): c for c in connections}
        # Actions of providers this organization has connected come first.
        connected = {c.provider_key for c in connections}

        def options(rows: list[Any]) -> list[tuple[str, str]]:
            return [(a.name, f"{a.name} ({a.action_class})") for a in rows]

        mine = [a for a in actions if a.provider_key in connected]
        others = [a for a in actions if a.provider_key not in connected]
        groups: list[Any] = [("", "— pick an action —")]
        if mine:
            groups.append(("Connected providers", options(mine)))
        if others:
            groups.append(("Not connected" if mine else "All providers", options(others)))
        cast(forms.ChoiceField, self.fields["action"]).choices = groups
        cast(forms.ChoiceField, self.fields["connection"]).choices = [
            ("", "— pick a connection —")
        ] + [(str(c.pk), f"{c.name} ({c.provider_key})") for c in connections]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        conn = self.connections.get(data.get("connection") or "")
        data["connection_obj"] = conn
        if data.get("kind") == "proxy":
            if conn is None:
                self.add_error("connection", "A proxy call goes through one connection.")
            if not data.get("path"):
                self.add_error("path", "Enter the path to test, e.g. /projects.")
            return data
        action = self.actions_by_name.get(data.get("action") or "")
        if action is None:
            self.add_error("action", "Pick the action to test.")
        data["action_obj"] = action
        if conn is not None and action is not None and conn.provider_key != action.provider_key:
            self.add_error(
                "connection",
                f"'{conn.name}' is a {conn.provider_key} connection; "
                f"{action.name} needs a {action.provider_key} one.",
            )
        try:
            data["input_value"] = json.loads(data.get("input") or "{}")
        except ValueError as exc:
            self.add_error("input", f"This is not valid JSON: {exc}.")
        return data
