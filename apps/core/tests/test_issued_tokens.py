"""One token lifecycle: worker tokens and personal API tokens are both IssuedTokens
(apps.core.models) and share the lifecycle helpers of apps.core.tokens."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import PersonalAPIToken
from apps.accounts.services import personal_token_mint, personal_token_revoke
from apps.core.models import IssuedToken, IssuedTokenQuerySet
from apps.core.tokens import (
    DEFAULT_TOKEN_DAYS,
    LAST_USED_THROTTLE,
    issued_token_create,
    issued_token_revoke,
    last_used_touch,
    leak_notify,
    leak_report,
    parse_token,
    token_digest,
    token_lifetime,
)
from apps.organizations.models import Organization
from apps.workers.models import WorkerToken


def test_both_token_kinds_share_the_model_and_the_queryset() -> None:
    for model in (WorkerToken, PersonalAPIToken):
        assert issubclass(model, IssuedToken)
        assert isinstance(model.objects.all(), IssuedTokenQuerySet)
        names = {f.name for f in model._meta.concrete_fields}
        assert {"public_id", "digest", "last4", "expires_at", "revoked_at", "last_used_at"} <= names


@pytest.mark.django_db
def test_last_use_is_written_once_a_minute_and_usable_follows_revocation(
    org: Organization, admin: User
) -> None:
    token, _raw = personal_token_mint(user=admin, organization=org, name="ci")
    now = timezone.now()
    assert last_used_touch(PersonalAPIToken, pk=token.pk, last_used_at=None, now=now)
    # A second process that read the row before the write: the UPDATE's condition refuses.
    assert not last_used_touch(PersonalAPIToken, pk=token.pk, last_used_at=None, now=now)
    later = now + LAST_USED_THROTTLE + timedelta(seconds=1)
    token.refresh_from_db()
    assert token.last_used_at == now
    assert last_used_touch(PersonalAPIToken, pk=token.pk, last_used_at=now, now=later)
    assert list(PersonalAPIToken.objects.usable()) == [token]
    personal_token_revoke(token=token, actor=admin)
    token.refresh_from_db()
    assert token.is_revoked()
    assert not token.is_usable()
    assert list(PersonalAPIToken.objects.usable()) == []


@pytest.mark.django_db
def test_the_lifetime_is_bounded_by_the_organizations_maximum(org: Organization) -> None:
    now = timezone.now()
    assert token_lifetime(org, None, now=now) == now + timedelta(days=DEFAULT_TOKEN_DAYS)
    org.max_token_days = 10
    assert token_lifetime(org, None, now=now) == now + timedelta(days=10)
    for days in (0, 11, -1):
        with pytest.raises(ValidationError) as refused:
            token_lifetime(org, days, now=now)
        assert "between 1 and 10 days" in str(refused.value.message_dict["expires_in_days"])


@pytest.mark.django_db
def test_mint_stores_the_digest_never_the_token_and_revoke_happens_once(
    org: Organization, admin: User
) -> None:
    token, raw = issued_token_create(
        PersonalAPIToken,
        kind="personal",
        user=admin,
        organization=org,
        name="ci",
        expires_at=timezone.now() + timedelta(days=1),
    )
    assert parse_token(raw, kind="personal") is not None
    assert token.digest == token_digest(raw)
    assert token.last4 == raw[-4:]
    stored = PersonalAPIToken.objects.filter(pk=token.pk).values()[0]
    assert raw not in {str(value) for value in stored.values()}
    with transaction.atomic():
        revoked, first = issued_token_revoke(PersonalAPIToken, pk=token.pk)
    when = revoked.revoked_at
    assert first
    assert when is not None
    with transaction.atomic():
        again, second = issued_token_revoke(PersonalAPIToken, pk=token.pk)
    assert not second
    assert again.revoked_at == when  # permanent: the first time stands


NOTICE = {
    "subject": "leaked",
    "label": "personal API token ci",
    "where": "a URL's query string",
    "method": "GET",
    "path": "/api/v1/whoami",
    "remedy": "Mint a new one",
}


def _notify_then_roll_back() -> None:
    with transaction.atomic():
        leak_notify(recipients=["a@example.test"], **NOTICE)
        raise RuntimeError("the revocation rolled back")


@pytest.mark.django_db
def test_a_leak_mails_only_after_the_revocation_commits(
    mailoutbox: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
    ):
        _notify_then_roll_back()
    assert callbacks == []
    assert mailoutbox == []
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        leak_notify(recipients=["", "a@example.test"], **NOTICE)
        leak_notify(recipients=[""], **NOTICE)  # nobody to tell: no mail at all
    assert len(callbacks) == 1
    assert [m.to for m in mailoutbox] == [["a@example.test"]]
    assert "GET /api/v1/whoami" in mailoutbox[0].body
    assert leak_report(kind="worker", where="x", method="GET", path="/p")["metadata"] == {
        "where": "x",
        "kind": "worker",
        "method": "GET",
        "path": "/p",
    }
