"""Management API for your own personal API tokens in this organization
(/api/v1/orgs/<org_slug>/personal-tokens/…): list and revoke.

Minting stays in the browser (/accounts/tokens/), where the raw token is shown
once to a signed-in person; a token cannot mint more tokens. Any member may
list and revoke their own tokens; nobody sees or revokes anyone else's (404).
Revoking calls the service the dashboard calls, which audits it."""

from __future__ import annotations

from typing import Any, cast

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.models import PersonalAPIToken, PersonalAPITokenQuerySet
from apps.accounts.services import personal_token_revoke
from apps.core.openapi import error_responses
from apps.organizations.models import OrgRole
from apps.organizations.tenancy import OrgAPIMixin


class PersonalTokenSerializer(serializers.ModelSerializer[PersonalAPIToken]):
    """Never the token nor its digest: only the last four characters."""

    id = serializers.CharField(source="public_id", read_only=True)
    status = serializers.CharField(read_only=True)
    is_current = serializers.SerializerMethodField(
        help_text="True for the token that authenticated this request."
    )

    class Meta:
        model = PersonalAPIToken
        fields = (
            "id",
            "name",
            "last4",
            "status",
            "is_current",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
        )
        read_only_fields = fields

    def get_is_current(self, obj: PersonalAPIToken) -> bool:
        request = self.context.get("request")
        auth = getattr(request, "auth", None)
        return isinstance(auth, PersonalAPIToken) and auth.pk == obj.pk


class _OwnTokens(OrgAPIMixin):
    model = PersonalAPIToken
    # Your own tokens: every member, and revoking your own is not an admin act.
    read_role = OrgRole.MEMBER
    write_role = OrgRole.MEMBER

    def scope_queryset(self) -> QuerySet[PersonalAPIToken]:
        rows = cast(PersonalAPITokenQuerySet, self.tenant_rows(PersonalAPIToken))
        return rows.for_user(self.request.user)  # type: ignore[attr-defined]


@extend_schema_view(
    get=extend_schema(
        tags=["personal tokens"],
        summary="List your own personal API tokens for this organization",
        responses={200: PersonalTokenSerializer(many=True), **error_responses(404)},
    )
)
class PersonalTokenListAPIView(_OwnTokens, generics.ListAPIView[PersonalAPIToken]):
    serializer_class = PersonalTokenSerializer


class PersonalTokenRevokeAPIView(_OwnTokens, APIView):
    @extend_schema(
        tags=["personal tokens"],
        summary="Revoke one of your own personal API tokens (immediate)",
        description="Revoking the token this request uses works; later requests with it get 401.",
        request=None,
        responses={200: PersonalTokenSerializer, **error_responses(404)},
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        token = get_object_or_404(self.scope_queryset(), public_id=kwargs["public_id"])
        token = personal_token_revoke(token=token, actor=request.user)
        return Response(PersonalTokenSerializer(token, context={"request": request}).data)
