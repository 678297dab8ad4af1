"""Management API shapes for workers and tokens. No serializer has a digest or raw token
field except `MintedTokenSerializer`, which is used only in a mint/roll response."""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib.auth import get_user_model
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.policies.models import Role
from apps.workers.dpop import jkt_from
from apps.workers.models import TrustPolicy, Worker, WorkerToken
from apps.workers.services import ROLL_OVERLAPS


@extend_schema_field(OpenApiTypes.INT)
class _OrgScopedField(serializers.PrimaryKeyRelatedField):
    """A primary key that only resolves inside the view's organization."""

    def get_queryset(self) -> Any:
        view = self.context["view"]
        return self.queryset_for(view.organization)

    def queryset_for(self, organization: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class OrgRoleField(_OrgScopedField):
    def queryset_for(self, organization: Any) -> Any:
        return Role.objects.filter(organization=organization)


class OrgMemberField(_OrgScopedField):
    def queryset_for(self, organization: Any) -> Any:
        return get_user_model().objects.filter(memberships__organization=organization)


class WorkerSerializer(serializers.ModelSerializer[Worker]):
    default_role = OrgRoleField()
    owner = OrgMemberField(required=False, allow_null=True)
    acts_for = OrgMemberField(
        required=False,
        allow_null=True,
        help_text="User id of the member this worker acts for: rules with connection "
        '"on_behalf_of" use their personal connections. Admins bind any member.',
    )
    acts_for_email = serializers.EmailField(source="acts_for.email", read_only=True, default=None)
    default_role_name = serializers.CharField(source="default_role.name", read_only=True)
    owner_email = serializers.EmailField(source="owner.email", read_only=True, default=None)
    created_by_email = serializers.EmailField(
        source="created_by.email", read_only=True, default=None
    )

    class Meta:
        model = Worker
        fields = (
            "id",
            "name",
            "description",
            "status",
            "default_role",
            "default_role_name",
            "owner",
            "owner_email",
            "acts_for",
            "acts_for_email",
            "created_by_email",
            "require_dpop",
            "created_at",
        )
        read_only_fields = ("id", "status", "created_at")
        # Uniqueness per org is checked by the service (the org is not a field).
        validators: tuple[Any, ...] = ()


class WorkerTokenSerializer(serializers.ModelSerializer[WorkerToken]):
    id = serializers.CharField(source="public_id", read_only=True)
    worker = serializers.IntegerField(source="worker_id", read_only=True)
    worker_name = serializers.CharField(source="worker.name", read_only=True)
    role = serializers.IntegerField(source="role_id", read_only=True)
    role_name = serializers.CharField(source="role.name", read_only=True)
    status = serializers.CharField(read_only=True)
    expires_soon = serializers.BooleanField(read_only=True)
    rolled_from = serializers.CharField(
        source="rolled_from.public_id", read_only=True, default=None
    )
    created_by_email = serializers.EmailField(
        source="created_by.email",
        read_only=True,
        default=None,
        help_text="Who minted it (null: issued by Grantry, e.g. to an MCP OAuth client).",
    )

    class Meta:
        model = WorkerToken
        fields: tuple[str, ...] = (
            "id",
            "name",
            "created_by_email",
            "worker",
            "worker_name",
            "role",
            "role_name",
            "last4",
            "status",
            "created_at",
            "expires_at",
            "expires_soon",
            "revoked_at",
            "revoke_reason",
            "rolled_from",
            "last_used_at",
            "last_used_ip",
            "dpop_jkt",
        )
        read_only_fields = fields
        extra_kwargs: ClassVar[dict[str, Any]] = {
            "dpop_jkt": {
                "help_text": "The RFC 7638 thumbprint of the public key the token is bound to "
                "(DPoP, RFC 9449); empty for a bearer token."
            }
        }


class MintedTokenSerializer(WorkerTokenSerializer):
    """The only place the raw token appears: once, in the mint/roll response."""

    token = serializers.CharField(
        read_only=True,
        source="raw_token",
        help_text="Shown once. Store it now; it cannot be shown again.",
    )

    class Meta(WorkerTokenSerializer.Meta):
        fields = ("token", *WorkerTokenSerializer.Meta.fields)
        read_only_fields = fields


class TokenMintSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=100,
        default="",
        help_text="What the token is for (the dashboard requires one).",
    )
    role = OrgRoleField(
        required=False, allow_null=True, help_text="Defaults to the worker's default role."
    )
    expires_in_days = serializers.IntegerField(
        required=False, min_value=1, max_value=366, help_text="Default 30; at most the org maximum."
    )
    dpop_jwk = serializers.JSONField(
        required=False,
        help_text="Bind the token to this public key (a JWK object; DPoP, RFC 9449): it then "
        "works only with proofs signed by the key. Required (or dpop_jkt) when the worker "
        "requires DPoP.",
    )
    dpop_jkt = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=43,
        help_text="Or bind it by the key's RFC 7638 SHA-256 thumbprint (base64url).",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        jwk = attrs.pop("dpop_jwk", None)
        try:
            attrs["dpop_jkt"] = jkt_from(jwk=jwk, jkt=attrs.get("dpop_jkt", ""))
        except ValueError as exc:
            field = "dpop_jwk" if jwk not in (None, "", {}) else "dpop_jkt"
            raise serializers.ValidationError({field: str(exc)}) from None
        return attrs


class TokenRevokeSerializer(serializers.Serializer[Any]):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")


class TokenRollSerializer(serializers.Serializer[Any]):
    overlap = serializers.ChoiceField(
        choices=list(ROLL_OVERLAPS),
        default="none",
        help_text="How long the old token keeps working.",
    )
    expires_in_days = serializers.IntegerField(required=False, min_value=1, max_value=366)


class KillSwitchSerializer(serializers.Serializer[Any]):
    confirm = serializers.CharField(help_text="The organization's slug, typed to confirm.")


class RevokedCountSerializer(serializers.Serializer[Any]):
    revoked = serializers.IntegerField()


class TrustConditionSerializer(serializers.Serializer[Any]):
    claim = serializers.CharField(max_length=100)
    value = serializers.CharField(
        max_length=255, help_text="An exact value or an fnmatch glob (`*`, `?`, `[…]`)."
    )


class TrustPolicySerializer(serializers.ModelSerializer[TrustPolicy]):
    """A trust policy: which outside tokens may become the worker (RFC 8693 exchange)."""

    role = OrgRoleField()
    role_name = serializers.CharField(source="role.name", read_only=True)
    conditions = TrustConditionSerializer(
        many=True,
        required=False,
        help_text="Claim conditions, all of which must match; at least one (on the preset's "
        "identifying claim) except for the idjag preset.",
    )
    clients = serializers.ListField(
        child=serializers.CharField(max_length=255),
        required=False,
        max_length=20,
        help_text="idjag preset only: the MCP client ids (OAuth `client_id`) the company IdP "
        "may issue ID-JAGs for.",
    )
    issuer = serializers.URLField(
        max_length=255,
        required=False,
        allow_blank=True,
        help_text="The issuer's URL (its `iss`); fixed by the github and gitlab presets.",
    )
    audience = serializers.CharField(
        max_length=255,
        required=False,
        allow_blank=True,
        help_text="The `aud` the tokens must carry (default: Grantry's base URL; for the "
        "idjag preset always Grantry's OAuth issuer, <base URL>/oauth).",
    )

    class Meta:
        model = TrustPolicy
        fields = (
            "id",
            "worker",
            "preset",
            "issuer",
            "audience",
            "conditions",
            "clients",
            "role",
            "role_name",
            "max_minutes",
            "enabled",
            "created_at",
        )
        read_only_fields = ("id", "worker", "created_at")


class TrustPolicyEnabledSerializer(serializers.Serializer[Any]):
    enabled = serializers.BooleanField()
