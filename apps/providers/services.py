"""Writes to the catalog: custom providers and their actions, each audited.

Every service validates with the model's `full_clean()` before it writes, so a
bad value raises `ValidationError` and nothing is saved; the audit event is
written in the same transaction as the change."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from apps.audit.services import audit_record
from apps.core.ports import Port
from apps.organizations.models import Organization
from apps.providers.models import CustomAction, CustomProvider
from apps.providers.registry import bump_revision

# Fields an admin may change after creation. The slug (and so the catalog key
# that rules and connections refer to) and the organization never change.
EDITABLE_FIELDS = (
    "display_name",
    "description",
    "auth_type",
    "api_base_url",
    "authorize_url",
    "token_url",
    "revocation_url",
    "userinfo_url",
    "userinfo_account_field",
    "default_scopes",
    "placement",
    "header_name",
    "header_prefix",
)

# Fields that decide where a stored credential (and the OAuth client secret) is
# sent, or how. They are frozen while the provider has live connections: a new
# host would otherwise receive those connections' credentials on the next call.
CREDENTIAL_ROUTING_FIELDS = (
    "auth_type",
    "api_base_url",
    "authorize_url",
    "token_url",
    "revocation_url",
    "userinfo_url",
    "placement",
    "header_name",
    "header_prefix",
)


def _describe(provider: CustomProvider) -> dict[str, Any]:
    return {"key": provider.key, **{f: getattr(provider, f) for f in EDITABLE_FIELDS}}


def _save_new(instance: CustomProvider | CustomAction, unique_field: str, message: str) -> None:
    try:
        with transaction.atomic():
            instance.save(force_insert=True)
    except IntegrityError:
        # A concurrent create won the unique constraint.
        raise ValidationError({unique_field: message}) from None


@transaction.atomic
def custom_provider_create(
    *,
    organization: Organization,
    actor: Any,
    slug: str,
    display_name: str,
    auth_type: str,
    api_base_url: str,
    description: str = "",
    authorize_url: str = "",
    token_url: str = "",
    revocation_url: str = "",
    userinfo_url: str = "",
    userinfo_account_field: str = "",
    default_scopes: list[str] | None = None,
    placement: str = "bearer",
    header_name: str = "Authorization",
    header_prefix: str = "Bearer ",
) -> CustomProvider:
    provider = CustomProvider(
        organization=organization,
        created_by=actor,
        slug=slug,
        display_name=display_name,
        description=description,
        auth_type=auth_type,
        api_base_url=api_base_url,
        authorize_url=authorize_url,
        token_url=token_url,
        revocation_url=revocation_url,
        userinfo_url=userinfo_url,
        userinfo_account_field=userinfo_account_field,
        default_scopes=list(default_scopes or []),
        placement=placement,
        header_name=header_name,
        header_prefix=header_prefix,
    )
    taken_message = f"This organization already has a custom provider '{slug}'."
    if CustomProvider.objects.for_organization(organization).filter(slug=slug).exists():
        raise ValidationError({"slug": taken_message})
    provider.full_clean(validate_constraints=False)
    _save_new(provider, "slug", taken_message)
    audit_record(
        action="provider.custom_created",
        organization=organization,
        target=provider,
        metadata=_describe(provider),
        provider=provider.key,
        actor=actor,
    )
    return provider


@transaction.atomic
def custom_provider_update(
    *,
    provider: CustomProvider,
    actor: Any,
    changes: dict[str, Any],
) -> CustomProvider:
    """Apply `changes` (only EDITABLE_FIELDS) and record what changed."""
    unknown = sorted(set(changes) - set(EDITABLE_FIELDS))
    if unknown:
        raise ValidationError(f"These fields cannot be changed: {', '.join(unknown)}.")
    locked = CustomProvider.objects.select_for_update().get(pk=provider.pk)
    before = _describe(locked)
    for name, value in changes.items():
        setattr(locked, name, value)
    locked.full_clean(validate_constraints=False)
    after = _describe(locked)
    diff = {f: [before[f], after[f]] for f in EDITABLE_FIELDS if before[f] != after[f]}
    if not diff:
        return locked
    frozen = [f for f in CREDENTIAL_ROUTING_FIELDS if f in diff]
    if frozen:
        live = _live_connection_names(locked)
        if live:
            message = (
                f"This cannot change while {locked.display_name} has live connections "
                f"({', '.join(live)}): their credentials would be sent to the new "
                "address. Disconnect them first."
            )
            raise ValidationError({f: message for f in frozen})
    locked.save()
    bump_revision(locked.pk)
    audit_record(
        action="provider.custom_updated",
        organization=locked.organization,
        target=locked,
        metadata={"key": locked.key, "changes": diff},
        provider=locked.key,
        actor=actor,
    )
    return locked


# The catalog never imports apps.connections (a layer above): connections plugs in the names
# of a provider's live connections, which keep an admin from stranding their credentials
# (delete) or sending them elsewhere (a changed URL). apps.connections.selectors answers.
live_connection_names: Port[[CustomProvider], list[str]] = Port(
    "live_connection_names", answered_by="apps.connections.selectors.live_connection_names"
)


def _live_connection_names(provider: CustomProvider) -> list[str]:
    return live_connection_names(provider)


def _live_connection_count(provider: CustomProvider) -> int:
    return len(live_connection_names(provider))


@transaction.atomic
def custom_provider_delete(*, provider: CustomProvider, actor: Any) -> None:
    locked = CustomProvider.objects.select_for_update().get(pk=provider.pk)
    in_use = _live_connection_count(locked)
    if in_use:
        raise ValidationError(
            f"{locked.display_name} still has {in_use} connection(s). Disconnect them first, "
            "so their credentials are revoked and destroyed."
        )
    audit_record(
        action="provider.custom_deleted",
        organization=locked.organization,
        target=locked,
        metadata={
            **_describe(locked),
            "actions": sorted(locked.actions.values_list("name", flat=True)),
        },
        provider=locked.key,
        actor=actor,
    )
    locked.delete()


@transaction.atomic
def custom_action_create(
    *,
    provider: CustomProvider,
    actor: Any,
    name: str,
    description: str,
    action_class: str,
    method: str,
    path: str,
    input_schema: dict[str, Any],
    scopes: list[str] | None = None,
    query_params: list[str] | None = None,
    body_encoding: str = "json",
) -> CustomAction:
    action = CustomAction(
        provider=provider,
        name=name,
        description=description,
        action_class=action_class,
        method=method,
        path=path,
        input_schema=input_schema,
        scopes=list(scopes or []),
        query_params=list(query_params or []),
        body_encoding=body_encoding,
    )
    taken_message = f"{provider.display_name} already has an action '{name}'."
    if provider.actions.filter(name=name).exists():
        raise ValidationError({"name": taken_message})
    action.full_clean(validate_constraints=False)
    _save_new(action, "name", taken_message)
    bump_revision(provider.pk)
    audit_record(
        action="provider.custom_action_created",
        organization=provider.organization,
        target=action,
        target_label=f"{provider.key}.{action.name}",
        metadata={
            "key": provider.key,
            "action": f"{provider.key}.{action.name}",
            "class": action.action_class,
            "method": action.method,
            "path": action.path,
            "scopes": action.scopes,
            "body_encoding": action.body_encoding,
        },
        provider=provider.key,
        actor=actor,
    )
    return action


@transaction.atomic
def custom_action_delete(*, action: CustomAction, actor: Any) -> None:
    provider = action.provider
    full_name = f"{provider.key}.{action.name}"
    audit_record(
        action="provider.custom_action_deleted",
        organization=provider.organization,
        target=action,
        target_label=full_name,
        metadata={
            "key": provider.key,
            "action": full_name,
            "method": action.method,
            "path": action.path,
        },
        provider=provider.key,
        actor=actor,
    )
    action.delete()
    bump_revision(provider.pk)


IMPORT_FIELDS = (
    "name",
    "description",
    "action_class",
    "method",
    "path",
    "input_schema",
    "scopes",
    "query_params",
    "body_encoding",
)


class ImportFailed(ValidationError):
    """One imported action is invalid; `index` says which (nothing was saved)."""

    def __init__(self, index: int, error: ValidationError) -> None:
        super().__init__(error.error_dict if hasattr(error, "error_dict") else error.messages)
        self.index = index
        self.error = error


@transaction.atomic
def custom_actions_import(
    *,
    provider: CustomProvider,
    actor: Any,
    actions: list[dict[str, Any]],
    source: dict[str, Any],
) -> list[CustomAction]:
    """Create several actions from an OpenAPI import: all of them or none. Each is
    validated and audited like a hand-made action, and one more event records the
    document they came from (`source`: title, version, sha256, url or file name)."""
    if not actions:
        raise ValidationError("Choose at least one operation to import.")
    created = []
    for index, fields in enumerate(actions):
        unknown = sorted(set(fields) - set(IMPORT_FIELDS))
        if unknown:
            raise ImportFailed(index, ValidationError(f"Unknown fields: {', '.join(unknown)}."))
        try:
            with transaction.atomic():
                created.append(custom_action_create(provider=provider, actor=actor, **fields))
        except ValidationError as error:
            raise ImportFailed(index, error) from None
    audit_record(
        action="provider.custom_actions_imported",
        organization=provider.organization,
        target=provider,
        metadata={
            "key": provider.key,
            "source": {k: str(v)[:300] for k, v in source.items()},
            "actions": [f"{provider.key}.{a.name}" for a in created],
        },
        provider=provider.key,
        actor=actor,
    )
    return created
