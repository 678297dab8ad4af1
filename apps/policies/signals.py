"""Rules can disappear without a policies service: a deleted connection takes
its rules with it (on_delete=CASCADE). Refresh the cached rule set then too."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from apps.policies.models import Rule
from apps.policies.selectors import bump_role_version


@receiver(post_delete, sender=Rule, dispatch_uid="policies.rule_deleted")
def rule_deleted(sender: type[Rule], instance: Rule, **kwargs: Any) -> None:
    role_id = instance.role_id
    transaction.on_commit(lambda: bump_role_version(role_id))
