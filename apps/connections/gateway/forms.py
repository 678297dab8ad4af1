"""The form that adds an MCP server. Secret inputs are write-only: never rendered back."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.validators import URLValidator, validate_slug

from apps.connections.gateway.services import HttpServer, StdioServer
from apps.connections.mcp_models import McpAuth, McpTransport
from apps.connections.models import Connection
from apps.isolation.packages import PackageError, parse_package
from apps.isolation.sandbox import env_name_problem
from apps.organizations.models import Organization

MAX_ENV = 20


class WriteOnlyTextarea(forms.Textarea):
    """A textarea that never shows its value again (it holds secrets)."""

    def format_value(self, value: Any) -> str | None:  # noqa: ARG002 - Django's signature
        return None


def parse_env(text: str) -> dict[str, str]:
    """`NAME=value` lines into a mapping; ValidationError names the bad line (never its
    value)."""
    env: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not value.strip():
            raise forms.ValidationError(f"Line {number}: write NAME=value.")
        problem = env_name_problem(name)
        if problem:
            raise forms.ValidationError(f"Line {number}: {problem}")
        env[name] = value.strip()
    if len(env) > MAX_ENV:
        raise forms.ValidationError(f"At most {MAX_ENV} variables.")
    return env


def connection_name_problem(organization: Organization, name: str) -> str:
    if "__" in name:
        return (
            "An MCP connection's name may not contain '__': it separates the connection "
            "from the tool in the names agents see."
        )
    if Connection.objects.for_organization(organization).filter(name=name).exists():
        return f"A connection named '{name}' already exists. Pick another name."
    return ""


class McpServerForm(forms.Form):
    name = forms.CharField(
        max_length=60,
        validators=[validate_slug],
        help_text="Short unique name roles and agents refer to, e.g. linear. Agents see "
        "its tools as <name>__<tool>.",
    )
    transport = forms.ChoiceField(
        choices=McpTransport.choices, initial=McpTransport.HTTP, widget=forms.RadioSelect
    )
    url = forms.CharField(
        label="Server URL",
        required=False,
        max_length=500,
        help_text="The Streamable HTTP endpoint, e.g. https://mcp.linear.app/mcp.",
    )
    auth = forms.ChoiceField(
        label="Credential",
        choices=[
            (McpAuth.OAUTH, "OAuth: sign in at the server (Grantry registers itself)"),
            (McpAuth.STATIC, "A bearer token or API key header"),
            (McpAuth.NONE, "None"),
        ],
        initial=McpAuth.OAUTH,
        required=False,
    )
    secret = forms.CharField(
        label="Token or API key",
        required=False,
        max_length=4000,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Checked with the server before it is saved; stored encrypted, never shown.",
    )
    header_name = forms.CharField(max_length=100, required=False, initial="Authorization")
    header_prefix = forms.CharField(
        max_length=40,
        required=False,
        initial="Bearer ",
        strip=False,
        help_text="Sent before the token (keep the space).",
    )
    package = forms.CharField(
        label="npm package",
        required=False,
        max_length=600,
        help_text="A pinned version, as in an MCP client config: "
        "npx -y @modelcontextprotocol/server-github@2025.4.8",
    )
    env = forms.CharField(
        label="Credentials in its environment",
        required=False,
        max_length=20_000,
        widget=WriteOnlyTextarea(attrs={"rows": 3, "autocomplete": "off"}),
        help_text="One NAME=value per line, e.g. GITHUB_PERSONAL_ACCESS_TOKEN=ghp_…; stored "
        "encrypted, never shown again, given only to this server's sandbox.",
    )
    network = forms.BooleanField(
        required=False,
        label="Let the server reach the network",
        help_text="Off: the sandbox has no network at all. On: the server can reach what "
        "this host can (Grantry's egress guard does not apply to it).",
    )

    def __init__(self, *args: Any, organization: Organization, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.organization = organization

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip().lower()
        problem = connection_name_problem(self.organization, name)
        if problem:
            raise forms.ValidationError(problem)
        return name

    def clean_env(self) -> dict[str, str]:
        return parse_env(self.cleaned_data.get("env") or "")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("transport") == McpTransport.STDIO:
            try:
                parse_package(cleaned.get("package") or "")
            except PackageError as exc:
                self.add_error("package", str(exc))
            return cleaned
        url = (cleaned.get("url") or "").strip()
        try:
            URLValidator(schemes=["https", "http"])(url)
        except forms.ValidationError:
            self.add_error("url", "Enter the server's http(s) URL.")
        if cleaned.get("auth") == McpAuth.STATIC and not cleaned.get("secret"):
            self.add_error("secret", "Enter the token or key.")
        return cleaned

    def server(self) -> HttpServer | StdioServer:
        data = self.cleaned_data
        if data["transport"] == McpTransport.STDIO:
            return StdioServer(
                package=data["package"], env=data.get("env") or {}, network=data["network"]
            )
        return HttpServer(
            url=data["url"].strip(),
            auth=data.get("auth") or McpAuth.NONE,
            secret=data.get("secret") or "",
            header_name=data.get("header_name") or "Authorization",
            header_prefix=data.get("header_prefix") or "",
        )
