"""Management API for members, invitations and organization settings
(/api/v1/orgs/<org_slug>/members/, invitations/, settings/).

Reviewers read, admins and owners write (OrgAPIMixin), as on the dashboard's
Members and Settings pages. Every write calls the service the dashboard calls
(apps.organizations.services), which enforces the owner rules (only an owner
grants or takes away the owner role; the last owner can be neither demoted nor
removed) and audits the change in the same transaction."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.audit.services.archive import RETENTION_MAX_MONTHS
from apps.core.api import from_service_error
from apps.core.openapi import error_responses
from apps.organizations import services
from apps.organizations.models import Invitation, Membership, Organization, OrgRole
from apps.organizations.tenancy import OrgAPIMixin


class MemberSerializer(serializers.ModelSerializer[Membership]):
    user_id = serializers.IntegerField(read_only=True)
    email = serializers.EmailField(source="user.email", read_only=True)
    joined_at = serializers.DateTimeField(source="created_at", read_only=True)

    class Meta:
        model = Membership
        fields = ("id", "user_id", "email", "role", "joined_at")
        read_only_fields = fields


class MemberRoleSerializer(serializers.Serializer[Any]):
    role = serializers.ChoiceField(choices=OrgRole.choices)


class InvitationSerializer(serializers.ModelSerializer[Invitation]):
    """The link key is only in the email; neither it nor its digest is ever shown."""

    invited_by_email = serializers.SerializerMethodField()
    status = serializers.SerializerMethodField()

    class Meta:
        model = Invitation
        fields = (
            "id",
            "email",
            "role",
            "status",
            "invited_by_email",
            "created_at",
            "expires_at",
            "accepted_at",
            "revoked_at",
        )
        read_only_fields = fields

    def get_invited_by_email(self, obj: Invitation) -> str:
        return obj.invited_by.email if obj.invited_by else ""

    def get_status(self, obj: Invitation) -> str:
        if obj.accepted_at is not None:
            return "accepted"
        if obj.revoked_at is not None:
            return "revoked"
        if obj.expires_at <= timezone.now():
            return "expired"
        return "pending"


class InvitationCreateSerializer(serializers.Serializer[Any]):
    email = serializers.EmailField(max_length=254)
    role = serializers.ChoiceField(choices=OrgRole.choices, default=OrgRole.MEMBER)


class OrganizationSettingsSerializer(serializers.ModelSerializer[Organization]):
    max_token_days = serializers.IntegerField(
        allow_null=True,
        required=False,
        min_value=1,
        max_value=services.MAX_TOKEN_DAYS_LIMIT,
        help_text="Longest lifetime of a worker or personal token, in days; "
        f"null means the hard cap ({services.MAX_TOKEN_DAYS_LIMIT}).",
    )
    audit_retention_months = serializers.IntegerField(
        allow_null=True,
        required=False,
        min_value=1,
        max_value=RETENTION_MAX_MONTHS,
        error_messages={
            "min_value": services.RETENTION_MESSAGE,
            "max_value": services.RETENTION_MESSAGE,
            "invalid": services.RETENTION_MESSAGE,
        },
        help_text="Whole months the audit trail stays live after each month ends; then the "
        "month is archived (verified) and leaves the database once every organization's "
        "retention has passed. null: kept for ever.",
    )

    class Meta:
        model = Organization
        fields = (
            "name",
            "slug",
            "max_token_days",
            "store_broker_input",
            "require_mfa",
            "audit_retention_months",
            "created_at",
        )
        read_only_fields = ("slug", "created_at")


class _MembersScope(OrgAPIMixin):
    model = Membership

    def scope_queryset(self) -> QuerySet[Membership]:
        return self.organization.memberships.select_related("user")


@extend_schema_view(
    get=extend_schema(
        tags=["members"],
        summary="List the organization's members",
        responses={200: MemberSerializer(many=True), **error_responses(403, 404)},
    )
)
class MemberListAPIView(_MembersScope, generics.ListAPIView[Membership]):
    serializer_class = MemberSerializer


class MemberDetailAPIView(_MembersScope, APIView):
    def get_member(self) -> Membership:
        return get_object_or_404(self.scope_queryset(), pk=self.kwargs["membership_id"])

    @extend_schema(
        tags=["members"],
        summary="One member",
        responses={200: MemberSerializer, **error_responses(403, 404)},
    )
    def get(self, _request: Request, **kwargs: Any) -> Response:
        return Response(MemberSerializer(self.get_member()).data)

    @extend_schema(
        tags=["members"],
        summary="Change a member's role",
        description="Only an owner grants or takes away the owner role. The last owner "
        "cannot be demoted (409 last_owner).",
        request=MemberRoleSerializer,
        responses={200: MemberSerializer, **error_responses(400, 403, 404, 409)},
        examples=[OpenApiExample("make admin", value={"role": "admin"}, request_only=True)],
    )
    def patch(self, request: Request, **kwargs: Any) -> Response:
        target = self.get_member()
        form = MemberRoleSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            changed = services.membership_change_role(
                membership=target,
                role=form.validated_data["role"],
                actor_membership=self.membership,
            )
        except DjangoValidationError as exc:
            raise from_service_error(exc) from None
        return Response(MemberSerializer(changed).data)

    @extend_schema(
        tags=["members"],
        summary="Remove a member (their personal API tokens for this org are revoked)",
        description="The last owner cannot be removed (409 last_owner).",
        responses={204: None, **error_responses(403, 404, 409)},
    )
    def delete(self, _request: Request, **kwargs: Any) -> Response:
        try:
            services.membership_remove(
                membership=self.get_member(),
                actor_membership=self.membership,
            )
        except DjangoValidationError as exc:
            raise from_service_error(exc) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class _InvitationsScope(OrgAPIMixin):
    model = Invitation

    def scope_queryset(self) -> QuerySet[Invitation]:
        return self.organization.invitations.select_related("invited_by")


@extend_schema_view(
    get=extend_schema(
        tags=["members"],
        summary="List invitations (pending, accepted, revoked and expired)",
        responses={200: InvitationSerializer(many=True), **error_responses(403, 404)},
    )
)
class InvitationListCreateAPIView(_InvitationsScope, generics.ListAPIView[Invitation]):
    serializer_class = InvitationSerializer

    @extend_schema(
        tags=["members"],
        summary="Invite someone by email (a single-use link valid for 7 days is emailed)",
        description="Inviting the same address again replaces the earlier link. Only an "
        "owner invites owners. The link is never in the response.",
        request=InvitationCreateSerializer,
        responses={201: InvitationSerializer, **error_responses(400, 403, 404)},
        examples=[
            OpenApiExample(
                "invite", value={"email": "bob@example.com", "role": "reviewer"}, request_only=True
            )
        ],
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        form = InvitationCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            issued = services.invitation_create(
                organization=self.organization,
                email=form.validated_data["email"],
                role=form.validated_data["role"],
                actor_membership=self.membership,
            )
        except DjangoValidationError as exc:
            raise from_service_error(exc) from None
        return Response(
            InvitationSerializer(issued.invitation).data, status=status.HTTP_201_CREATED
        )


class InvitationRevokeAPIView(_InvitationsScope, APIView):
    @extend_schema(
        tags=["members"],
        summary="Withdraw an invitation (its link stops working)",
        request=None,
        responses={200: InvitationSerializer, **error_responses(403, 404, 409)},
    )
    def post(self, _request: Request, **kwargs: Any) -> Response:
        invitation = get_object_or_404(self.scope_queryset(), pk=kwargs["invitation_id"])
        try:
            invitation = services.invitation_revoke(
                invitation=invitation, actor_membership=self.membership
            )
        except DjangoValidationError as exc:
            raise from_service_error(exc) from None
        return Response(InvitationSerializer(invitation).data)


class OrganizationSettingsAPIView(OrgAPIMixin, APIView):
    """The organization's settings: name, token lifetime cap, broker input storage, and
    whether members need a second factor (an admin needs one first to turn that on)."""

    @extend_schema(
        tags=["organization"],
        summary="Read the organization's settings",
        responses={200: OrganizationSettingsSerializer, **error_responses(403, 404)},
    )
    def get(self, _request: Request, **kwargs: Any) -> Response:
        return Response(OrganizationSettingsSerializer(self.organization).data)

    @extend_schema(
        tags=["organization"],
        summary="Change some settings (fields left out keep their value)",
        request=OrganizationSettingsSerializer,
        responses={200: OrganizationSettingsSerializer, **error_responses(400, 403, 404)},
        examples=[
            OpenApiExample(
                "cap tokens at 30 days",
                value={"max_token_days": 30, "store_broker_input": False},
                request_only=True,
            )
        ],
    )
    def patch(self, request: Request, **kwargs: Any) -> Response:
        org = self.organization
        form = OrganizationSettingsSerializer(org, data=request.data, partial=True)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        try:
            org = services.organization_update(
                organization=org,
                actor=request.user,
                name=data.get("name", org.name),
                max_token_days=data.get("max_token_days", org.max_token_days),
                store_broker_input=data.get("store_broker_input"),
                require_mfa=data.get("require_mfa"),
                audit_retention_months=data.get("audit_retention_months", "keep"),
            )
        except DjangoValidationError as exc:
            raise from_service_error(exc) from None
        return Response(OrganizationSettingsSerializer(org).data)
