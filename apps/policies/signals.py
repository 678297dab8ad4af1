"""Rules can disappear without a policies service: a deleted connection takes
its rules with it (on_delete=CASCADE). Raise the role's rules version then too,
in the same transaction."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete
from django.dispatch import receiver

from apps.policies.models import Rule
from apps.policies.selectors import bump_rules_version


@receiver(post_delete, sender=Rule, dispatch_uid="policies.rule_deleted")
def rule_deleted(sender: type[Rule], instance: Rule, **kwargs: Any) -> None:
    bump_rules_version(instance.role_id)
