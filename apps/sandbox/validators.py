"""The Sandbox's authorization server serves only its own applications.

django-oauth-toolkit also runs Grantry's authorization server for /mcp
(apps.mcpauth), whose clients are registered by a Client ID Metadata Document or
Dynamic Client Registration. This validator (the default one while the Sandbox is
installed: settings.OAUTH2_PROVIDER["OAUTH2_VALIDATOR_CLASS"]) refuses those clients,
their scope and their tokens, so a Grantry client can never get a Sandbox token and a
Grantry token never opens the Sandbox API."""

from __future__ import annotations

from typing import Any

from oauth2_provider.models import get_application_model
from oauth2_provider.oauth2_validators import OAuth2Validator

SANDBOX_SCOPES = frozenset({"read", "write"})


def _is_sandbox_application(application: Any) -> bool:
    return (
        application is not None
        and application.registration_source == get_application_model().RegistrationSource.MANUAL
    )


class SandboxValidator(OAuth2Validator):
    def _load_application(self, client_id: str, request: Any) -> Any:
        client = super()._load_application(client_id, request)
        if client is not None and not _is_sandbox_application(client):
            request.client = None
            return None
        return client

    def validate_scopes(
        self,
        client_id: str,
        scopes: list[str],
        client: Any,
        request: Any,
        *args: Any,
        **kwargs: Any,
    ) -> bool:
        return set(scopes) <= SANDBOX_SCOPES and super().validate_scopes(
            client_id, scopes, client, request, *args, **kwargs
        )

    def validate_bearer_token(self, token: str, scopes: list[str], request: Any) -> bool:
        if not super().validate_bearer_token(token, scopes, request):
            return False
        access_token = getattr(request, "access_token", None)
        return _is_sandbox_application(getattr(access_token, "application", None))
