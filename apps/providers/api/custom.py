"""Management API for the organization's custom providers and their actions
(/api/v1/orgs/<org_slug>/custom-providers/…).

Reviewers read, admins and owners write (OrgAPIMixin). Input is validated by
the dashboard's own forms (CustomProviderForm, CustomActionForm: the model's
validators and clean()), then written by the same services, which validate
again, refuse to re-route credentials of live connections, and audit. As on the
dashboard, a provider's key (slug) never changes and actions are added or
deleted, not edited. Custom providers hold no secrets (an OAuth client secret
belongs to the provider app, see provider-apps/)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.forms.models import model_to_dict
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import APIError, body_object, from_form_errors, from_service_error
from apps.core.openapi import error_responses
from apps.organizations.tenancy import OrgAPIMixin
from apps.providers.forms import CustomActionForm, CustomProviderForm
from apps.providers.models import CustomAction, CustomProvider
from apps.providers.services import (
    EDITABLE_FIELDS,
    custom_action_create,
    custom_action_delete,
    custom_provider_create,
    custom_provider_delete,
    custom_provider_update,
)


class CustomActionSerializer(serializers.ModelSerializer[CustomAction]):
    full_name = serializers.SerializerMethodField()
    input_schema = serializers.JSONField(
        help_text='A JSON Schema object ("type": "object"); every {placeholder} in the path '
        "must be a required property."
    )
    scopes = serializers.ListField(child=serializers.CharField(), required=False)
    # Plain text in the schema: its enum would collide with the agent API's action_class.
    action_class = serializers.CharField(help_text='"read" or "write".')

    class Meta:
        model = CustomAction
        fields = (
            "name",
            "full_name",
            "description",
            "action_class",
            "method",
            "path",
            "input_schema",
            "scopes",
            "body_encoding",
            "created_at",
        )
        read_only_fields = ("full_name", "created_at")

    def get_full_name(self, obj: CustomAction) -> str:
        return f"{obj.provider.key}.{obj.name}"


class CustomProviderSerializer(serializers.ModelSerializer[CustomProvider]):
    key = serializers.CharField(read_only=True, help_text='The catalog key: "custom-<slug>".')
    default_scopes = serializers.ListField(child=serializers.CharField(), required=False)
    actions = CustomActionSerializer(many=True, read_only=True)

    class Meta:
        model = CustomProvider
        # The editable fields are the service's one list; the slug is set at creation.
        fields = ("key", "slug", *EDITABLE_FIELDS, "actions", "created_at", "updated_at")
        read_only_fields = ("key", "actions", "created_at", "updated_at")


class _CustomScope(OrgAPIMixin):
    model = CustomProvider
    kwargs: dict[str, Any]

    def scope_queryset(self) -> QuerySet[CustomProvider]:
        return self.tenant_rows(CustomProvider).prefetch_related("actions")

    def get_custom(self) -> CustomProvider:
        return get_object_or_404(self.scope_queryset(), slug=self.kwargs["provider_slug"])


_PROVIDER_EXAMPLE = {
    "slug": "acme-crm",
    "display_name": "Acme CRM",
    "auth_type": "api_key",
    "api_base_url": "https://api.acme-crm.example/v1",
    "userinfo_url": "https://api.acme-crm.example/v1/me",
    "userinfo_account_field": "email",
    "placement": "bearer",
}


@extend_schema_view(
    get=extend_schema(
        tags=["custom providers"],
        summary="List custom providers with their actions",
        responses={200: CustomProviderSerializer(many=True), **error_responses(403, 404)},
    )
)
class CustomProviderListCreateAPIView(_CustomScope, generics.ListAPIView[CustomProvider]):
    serializer_class = CustomProviderSerializer

    @extend_schema(
        tags=["custom providers"],
        summary="Define a custom provider",
        request=CustomProviderSerializer,
        responses={201: CustomProviderSerializer, **error_responses(400, 403, 404)},
        examples=[OpenApiExample("API key provider", value=_PROVIDER_EXAMPLE, request_only=True)],
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        # What is not sent takes the model's default, as the dashboard's blank form shows it.
        defaults = model_to_dict(CustomProvider(), fields=list(EDITABLE_FIELDS))
        form = CustomProviderForm(data={**defaults, **body_object(request)})
        if not form.is_valid():
            raise from_form_errors(form)
        try:
            provider = custom_provider_create(
                organization=self.organization,
                actor=request.user,
                **form.cleaned_data,
            )
        except DjangoValidationError as exc:
            raise from_service_error(exc) from None
        return Response(CustomProviderSerializer(provider).data, status=status.HTTP_201_CREATED)


class CustomProviderDetailAPIView(_CustomScope, APIView):
    @extend_schema(
        tags=["custom providers"],
        summary="One custom provider with its actions",
        responses={200: CustomProviderSerializer, **error_responses(403, 404)},
    )
    def get(self, _request: Request, **kwargs: Any) -> Response:
        return Response(CustomProviderSerializer(self.get_custom()).data)

    @extend_schema(
        tags=["custom providers"],
        summary="Change some fields of a custom provider (the slug never changes)",
        description="Fields that decide where credentials go (URLs, auth type, placement) "
        "cannot change while the provider has live connections.",
        request=CustomProviderSerializer,
        responses={200: CustomProviderSerializer, **error_responses(400, 403, 404)},
    )
    def patch(self, request: Request, **kwargs: Any) -> Response:
        custom = self.get_custom()
        data = body_object(request)
        if "slug" in data and data["slug"] != custom.slug:
            raise APIError(
                "invalid_input",
                "The request has invalid fields.",
                details={"fields": {"slug": ["The key of a provider never changes."]}},
            )
        # Validate a copy with the dashboard's form: what is not sent keeps its value.
        copy = self.tenant_rows(CustomProvider).get(pk=custom.pk)
        current = model_to_dict(copy, fields=list(EDITABLE_FIELDS))
        form = CustomProviderForm(data={**current, **data}, instance=copy)
        if not form.is_valid():
            raise from_form_errors(form)
        changes = {k: v for k, v in form.cleaned_data.items() if k in EDITABLE_FIELDS}
        try:
            provider = custom_provider_update(provider=custom, actor=request.user, changes=changes)
        except DjangoValidationError as exc:
            raise from_service_error(exc) from None
        return Response(CustomProviderSerializer(self.scope_queryset().get(pk=provider.pk)).data)

    @extend_schema(
        tags=["custom providers"],
        summary="Delete a custom provider and its actions",
        description="Refused (409) while it has live connections: disconnect them first.",
        responses={204: None, **error_responses(403, 404, 409)},
    )
    def delete(self, request: Request, **kwargs: Any) -> Response:
        try:
            custom_provider_delete(provider=self.get_custom(), actor=request.user)
        except DjangoValidationError as exc:
            raise APIError(
                "conflict", " ".join(exc.messages), status_code=status.HTTP_409_CONFLICT
            ) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


_ACTION_EXAMPLE = {
    "name": "get_contact",
    "description": "Fetch one contact by id, with its name, email and company.",
    "action_class": "read",
    "method": "GET",
    "path": "/contacts/{contact_id}",
    "input_schema": {
        "type": "object",
        "properties": {"contact_id": {"type": "integer", "description": "Contact id."}},
        "required": ["contact_id"],
        "additionalProperties": False,
    },
    "scopes": [],
}


class CustomActionListCreateAPIView(_CustomScope, APIView):
    @extend_schema(
        tags=["custom providers"],
        summary="List a custom provider's actions",
        responses={200: CustomActionSerializer(many=True), **error_responses(403, 404)},
    )
    def get(self, _request: Request, **kwargs: Any) -> Response:
        actions = self.get_custom().actions.order_by("name")
        return Response(CustomActionSerializer(actions, many=True).data)

    @extend_schema(
        tags=["custom providers"],
        summary="Add an action to a custom provider",
        request=CustomActionSerializer,
        responses={201: CustomActionSerializer, **error_responses(400, 403, 404)},
        examples=[OpenApiExample("read action", value=_ACTION_EXAMPLE, request_only=True)],
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        custom = self.get_custom()
        defaults = model_to_dict(
            CustomAction(), fields=["action_class", "method", "scopes", "body_encoding"]
        )
        form = CustomActionForm(data={**defaults, **body_object(request)}, provider=custom)
        if not form.is_valid():
            raise from_form_errors(form)
        try:
            action = custom_action_create(provider=custom, actor=request.user, **form.cleaned_data)
        except DjangoValidationError as exc:
            raise from_service_error(exc) from None
        return Response(CustomActionSerializer(action).data, status=status.HTTP_201_CREATED)


class CustomActionDetailAPIView(_CustomScope, APIView):
    def get_action(self) -> CustomAction:
        return get_object_or_404(self.get_custom().actions.all(), name=self.kwargs["action_name"])

    @extend_schema(
        tags=["custom providers"],
        summary="One action of a custom provider",
        responses={200: CustomActionSerializer, **error_responses(403, 404)},
    )
    def get(self, _request: Request, **kwargs: Any) -> Response:
        return Response(CustomActionSerializer(self.get_action()).data)

    @extend_schema(
        tags=["custom providers"],
        summary="Delete an action (role rules that name it stop matching)",
        responses={204: None, **error_responses(403, 404)},
    )
    def delete(self, request: Request, **kwargs: Any) -> Response:
        custom_action_delete(action=self.get_action(), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
