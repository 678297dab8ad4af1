"""Management API for connections (/api/v1/orgs/<org_slug>/connections/…).

Reviewers read metadata, admins disconnect. No secret is ever serialized:
the serializer names its fields explicitly and holds none of the encrypted ones."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.connections import services
from apps.connections.models import Connection
from apps.organizations.tenancy import OrgAPIMixin


class ConnectionSerializer(serializers.ModelSerializer[Connection]):
    created_by_email = serializers.SerializerMethodField()
    has_credential = serializers.SerializerMethodField()

    class Meta:
        model = Connection
        fields = [
            "id",
            "name",
            "provider_key",
            "auth_type",
            "account_label",
            "scopes",
            "base_url_params",
            "status",
            "status_detail",
            "has_credential",
            "expires_at",
            "last_refreshed_at",
            "refresh_failures",
            "last_used_at",
            "created_at",
            "created_by_email",
            "revoked_at",
            "revocation_result",
        ]
        read_only_fields = fields

    def get_created_by_email(self, obj: Connection) -> str:
        return obj.created_by.email if obj.created_by else ""

    def get_has_credential(self, obj: Connection) -> bool:
        return obj.status != "revoked"


@extend_schema_view(get=extend_schema(tags=["connections"], summary="List connections"))
class ConnectionListAPIView(OrgAPIMixin, generics.ListAPIView[Connection]):
    model = Connection
    serializer_class = ConnectionSerializer

    def scope_queryset(self) -> QuerySet[Any]:
        return super().scope_queryset().select_related("created_by")


@extend_schema_view(get=extend_schema(tags=["connections"], summary="Read one connection"))
class ConnectionDetailAPIView(OrgAPIMixin, generics.RetrieveAPIView[Connection]):
    model = Connection
    serializer_class = ConnectionSerializer
    lookup_url_kwarg = "connection_id"

    def scope_queryset(self) -> QuerySet[Any]:
        return super().scope_queryset().select_related("created_by")


class ConnectionDisconnectAPIView(OrgAPIMixin, APIView):
    model = Connection

    @extend_schema(
        tags=["connections"],
        summary="Disconnect (revoke and destroy secrets)",
        request=None,
        responses=ConnectionSerializer,
    )
    def post(self, request: Request, org_slug: str, connection_id: int) -> Response:
        connection = get_object_or_404(self.scope_queryset(), pk=connection_id)
        connection = services.connection_disconnect(
            connection_id=connection.pk, organization=self.organization, request=request
        )
        return Response(ConnectionSerializer(connection).data)
