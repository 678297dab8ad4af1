"""The agent API of this app: `GET /api/v1/whoami`."""

from __future__ import annotations

from typing import Any, cast

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.workers.auth import AgentContext, WorkerTokenAuthentication
from apps.workers.selectors import role_allowances

WHOAMI_EXAMPLE = {
    "worker": {"id": 7, "name": "demo-agent", "status": "active"},
    "acts_for": None,
    "organization": {"slug": "demo", "name": "Demo Org"},
    "role": {"id": 3, "name": "sandbox-read-and-create-tasks"},
    "token": {
        "id": "tok_3kT9aQ2mX7bZ",
        "last4": "a1B2",
        "expires_at": "2026-12-28T10:00:00Z",
        "dpop_jkt": "",
    },
    "allows": {
        "actions": [
            {
                "name": "sandbox.list_tasks",
                "class": "read",
                "description": "List tasks.",
                "connections": ["sandbox-demo"],
            },
        ],
        "proxy": [],
    },
}


class WhoAmIView(APIView):
    """Who this token is: worker, organization, role, expiry, and what the role allows."""

    authentication_classes = (WorkerTokenAuthentication,)
    permission_classes = (IsAuthenticated,)

    @extend_schema(
        operation_id="agent_whoami",
        tags=["agent"],
        responses={
            200: OpenApiResponse(description="The token's identity and allowances."),
            401: OpenApiResponse(
                description="Missing, malformed, unknown, expired or revoked "
                "token, or a disabled worker."
            ),
        },
        examples=[OpenApiExample("whoami", value=WHOAMI_EXAMPLE, response_only=True)],
    )
    def get(self, request: Request) -> Response:
        context = cast(AgentContext, request.auth)
        organization = context.organization
        body: dict[str, Any] = {
            # Authentication refuses a disabled worker, so this one is active.
            "worker": {"id": context.worker_id, "name": context.worker_name, "status": "active"},
            # The member this worker acts for (rules with connection "on_behalf_of" use
            # their personal connections), or null.
            "acts_for": (
                {"id": context.acting_for_id, "email": context.acting_for_label}
                if context.acting_for_id is not None
                else None
            ),
            "organization": {"slug": organization.slug, "name": organization.name},
            "role": {"id": context.role_id, "name": context.role_name},
            "token": {
                "id": context.token_public_id,
                "last4": context.token_last4,
                "expires_at": context.token_expires_at,
                # The thumbprint of the key it is bound to (DPoP), "" for a bearer token.
                "dpop_jkt": context.dpop_jkt,
            },
            "allows": role_allowances(
                role_id=context.role_id,
                organization=organization,
                acting_for=context.acting_for_id,
            ),
        }
        response = Response(body)
        response["Cache-Control"] = "no-store"
        return response
