"""Writes for the Sandbox: OAuth clients, API keys, and the demo SaaS data.

The Sandbox plays an outside SaaS, so it deliberately writes nothing into
Grantry's audit trail: its events are not Grantry's. Grantry audits its own
side (connecting, refreshing, calling) in apps/connections and apps/broker."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from oauth2_provider.generators import generate_client_id, generate_client_secret
from oauth2_provider.models import (
    get_access_token_model,
    get_application_model,
    get_refresh_token_model,
    set_token_value,
)
from oauth2_provider.settings import oauth2_settings
from oauthlib.common import generate_token

from apps.sandbox.models import Project, SandboxApiKey, Task

API_KEY_PREFIX = "sbx_"


def api_key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@transaction.atomic
def sandbox_client_register(
    *, name: str, redirect_uris: list[str], confidential: bool = True
) -> tuple[str, str]:
    """Register an OAuth client (authorization code + PKCE) and return
    (client_id, client_secret). The secret is returned only here: DOT stores a
    hash of it on save. A public client gets an empty secret."""
    Application = get_application_model()
    client_secret = generate_client_secret() if confidential else ""
    application = Application(
        name=name,
        client_id=generate_client_id(),
        client_secret=client_secret,
        client_type=(
            Application.CLIENT_CONFIDENTIAL if confidential else Application.CLIENT_PUBLIC
        ),
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=" ".join(redirect_uris),
        algorithm=Application.NO_ALGORITHM,
        skip_authorization=False,
    )
    application.full_clean()
    application.save()
    return application.client_id, client_secret


@transaction.atomic
def sandbox_tokens_issue(
    *, client_id: str, user: User, scope: str = "read write"
) -> dict[str, Any]:
    """Issue an access + refresh token pair for `user` to an existing client, as
    the token endpoint would after consent, and return them in the token
    endpoint's JSON shape. For seeding the demo while no server is listening yet;
    the refresh token then rotates through the real /o/token/ like any other."""
    application = get_application_model().objects.get(client_id=client_id)
    unknown = set(scope.split()) - set(oauth2_settings.SCOPES)
    if not scope.split() or unknown:
        raise ValueError(f"Unknown or empty scope: {scope!r}")
    expires_in = oauth2_settings.ACCESS_TOKEN_EXPIRE_SECONDS
    raw_access, raw_refresh = generate_token(), generate_token()
    access = get_access_token_model()(
        user=user,
        application=application,
        scope=scope,
        expires=timezone.now() + timedelta(seconds=expires_in),
    )
    set_token_value(access, raw_access)
    access.save()
    refresh = get_refresh_token_model()(
        user=user, application=application, access_token=access, token_family=uuid.uuid4()
    )
    set_token_value(refresh, raw_refresh)
    refresh.save()
    return {
        "access_token": raw_access,
        "refresh_token": raw_refresh,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "scope": scope,
    }


@transaction.atomic
def sandbox_api_key_create(*, user: User, name: str) -> str:
    """Create an API key for `user` and return its plaintext, which is not stored."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    SandboxApiKey.objects.create(
        user=user,
        name=name.strip()[:100] or "API key",
        key_digest=api_key_digest(key),
        last4=key[-4:],
    )
    return key


@transaction.atomic
def sandbox_api_key_revoke(*, user: User, key_id: int) -> SandboxApiKey:
    """Revoke one of `user`'s keys (another user's key is not found)."""
    api_key = SandboxApiKey.objects.select_for_update().get(user=user, pk=key_id)
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key


@transaction.atomic
def sandbox_project_create(*, owner: User, name: str, description: str = "") -> Project:
    return Project.objects.create(owner=owner, name=name, description=description)


@transaction.atomic
def sandbox_task_create(
    *, project: Project, title: str, priority: int = 3, notes: str = ""
) -> Task:
    return Task.objects.create(project=project, title=title, priority=priority, notes=notes)


@transaction.atomic
def sandbox_task_update(*, task: Task, changes: dict[str, Any]) -> Task:
    """Apply already-validated changes (title, done, priority)."""
    for field in ("title", "done", "priority"):
        if field in changes:
            setattr(task, field, changes[field])
    task.save(update_fields=[f for f in ("title", "done", "priority") if f in changes] or None)
    return task


@transaction.atomic
def sandbox_task_delete(*, task: Task) -> None:
    task.delete()


_DEMO_DATA: list[tuple[str, str, list[tuple[str, int, bool]]]] = [
    (
        "Website relaunch",
        "New marketing site for the spring launch.",
        [
            ("Draft the landing page copy", 2, False),
            ("Pick a colour palette", 3, True),
            ("Set up analytics", 4, False),
        ],
    ),
    (
        "Customer onboarding",
        "Make the first week of a new customer smooth.",
        [("Write the welcome email", 1, False), ("Record a product tour video", 3, False)],
    ),
]


@transaction.atomic
def sandbox_account_start(*, user: User) -> bool:
    """An account that holds no project starts with the demo projects when it first
    lets an application in (a SaaS's starter workspace), so an organization that
    connects the Sandbox has something to list, create tasks in and delete. Returns
    whether the demo projects were added."""
    if Project.objects.filter(owner=user).exists():
        return False
    sandbox_seed_user_data(user=user)
    return True


@transaction.atomic
def sandbox_seed_user_data(*, user: User) -> None:
    """Give `user` two demo projects with a few tasks. Safe to run again."""
    for project_name, description, tasks in _DEMO_DATA:
        project, _ = Project.objects.get_or_create(
            owner=user, name=project_name, defaults={"description": description}
        )
        for title, priority, done in tasks:
            Task.objects.get_or_create(
                project=project, title=title, defaults={"priority": priority, "done": done}
            )
