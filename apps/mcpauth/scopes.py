"""Two authorization servers share django-oauth-toolkit's one scopes backend: Grantry's
clients (registered by CIMD or DCR) are offered `mcp` only, the Sandbox's manual
applications (and the Sandbox's RFC 8414 metadata) everything else."""

from __future__ import annotations

from typing import Any

from oauth2_provider.models import get_application_model
from oauth2_provider.scopes import SettingsScopes

MCP_SCOPE = "mcp"


def _is_grantry_client(application: Any) -> bool:
    return (
        application is not None
        and application.registration_source != get_application_model().RegistrationSource.MANUAL
    )


class SeparateScopes(SettingsScopes):
    def get_available_scopes(
        self, application: Any = None, request: Any = None, *args: Any, **kwargs: Any
    ) -> list[str]:
        if _is_grantry_client(application):
            return [MCP_SCOPE]
        scopes = super().get_available_scopes(application, request, *args, **kwargs)
        return [s for s in scopes if s != MCP_SCOPE]

    def get_default_scopes(
        self, application: Any = None, request: Any = None, *args: Any, **kwargs: Any
    ) -> list[str]:
        if _is_grantry_client(application):
            return [MCP_SCOPE]
        scopes = super().get_default_scopes(application, request, *args, **kwargs)
        return [s for s in scopes if s != MCP_SCOPE]
