"""One token lifecycle: worker tokens and personal API tokens are both IssuedTokens
(apps.core.models) and share the lifecycle helpers of apps.core.tokens."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from apps.accounts.models import PersonalAPIToken
from apps.accounts.services import personal_token_mint, personal_token_revoke
from apps.core.models import IssuedToken, IssuedTokenQuerySet
from apps.core.tokens import LAST_USED_THROTTLE, last_used_touch
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
