"""OpenAPI (drf-spectacular) description of the personal API token scheme used by
the management API. (The worker-token scheme of the agent API is documented in
apps.broker.schema.) Imported from WorkersConfig.ready()."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from typing_extensions import override


class PersonalTokenScheme(OpenApiAuthenticationExtension):
    """Documents `Authorization: Bearer gryp_…` for the management API."""

    target_class = "apps.accounts.auth.PersonalTokenAuthentication"
    name = "personalToken"

    @override
    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "gryp_ personal API token",
            "description": "A personal API token from /accounts/tokens/. It acts with your "
            "current role in the one organization it was minted for.",
        }
