"""Reads about people's own things that are more than one line."""

from __future__ import annotations

from typing import Any

from apps.accounts.models import PersonalAPIToken, PersonalAPITokenQuerySet


def personal_tokens_of(user: Any) -> PersonalAPITokenQuerySet:
    """A person's own personal API tokens, in every organization (the Personal tokens page
    is the person's, not an organization's; the API lists one organization's through its
    mixin). Anyone else's token never resolves here, so a foreign id is a 404."""
    return PersonalAPIToken.objects.for_user(user)
