"""Writes to roles and rules. Every change is audited in its own transaction
and raises the role's rules version in that transaction (see selectors)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from apps.audit.services import audit_record
from apps.policies.approvers import approval_shortfalls
from apps.policies.models import Role, Rule
from apps.policies.selectors import bump_rules_version, rule_document
from apps.policies.validation import clean_rules


def _rules_snapshot(role: Role) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in rule_document(r).items() if k != "id"}
        for r in role.rules.select_related("connection").order_by("position", "id")
    ]


def _rules_changed(role_id: int) -> None:
    bump_rules_version(role_id)


def _check_name(*, organization: Any, name: Any, exclude_pk: int | None = None) -> str:
    from django.core.validators import validate_slug

    if not isinstance(name, str) or not name.strip():
        raise ValidationError({"name": ["Enter a name."]})
    name = name.strip()
    try:
        validate_slug(name)
    except ValidationError:
        raise ValidationError(
            {"name": ["Use letters, numbers, hyphens and underscores only."]}
        ) from None
    if len(name) > 60:
        raise ValidationError({"name": ["Use at most 60 characters."]})
    clash = Role.objects.for_organization(organization).filter(name=name)
    if exclude_pk is not None:
        clash = clash.exclude(pk=exclude_pk)
    if clash.exists():
        raise ValidationError({"name": [f"A role named '{name}' already exists."]})
    return name


def _save_rules(role: Role, cleaned: list[dict[str, Any]]) -> None:
    Rule.objects.bulk_create(
        [Rule(role=role, position=i, **data) for i, data in enumerate(cleaned)]
    )


@transaction.atomic
def role_create(
    *,
    organization: Any,
    name: str,
    description: str = "",
    rules: list[dict[str, Any]] | None = None,
    actor: Any = None,
) -> Role:
    errors: dict[str, list[str]] = {}
    try:
        name = _check_name(organization=organization, name=name)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    cleaned: list[dict[str, Any]] = []
    try:
        cleaned = clean_rules(organization=organization, rules=rules or [])
    except ValidationError as exc:
        errors.update(exc.message_dict)
    else:
        errors.update(approval_shortfalls(organization=organization, role=None, rules=cleaned))
    if errors:
        raise ValidationError(errors)
    try:
        with transaction.atomic():
            role = Role.objects.create(
                organization=organization,
                name=name,
                description=description or "",
                created_by=actor,
            )
    except IntegrityError:
        raise ValidationError({"name": [f"A role named '{name}' already exists."]}) from None
    _save_rules(role, cleaned)
    audit_record(
        action="role.created",
        organization=organization,
        target=role,
        metadata={"rules": {"before": [], "after": _rules_snapshot(role)}},
        actor=actor,
    )
    _rules_changed(role.pk)
    return role


def _cleaned_rules(
    role: Role, rules: list[dict[str, Any]], errors: dict[str, list[str]]
) -> list[dict[str, Any]] | None:
    """`rules` checked for `role` (None when they are invalid: `errors` says why)."""
    try:
        cleaned = clean_rules(organization=role.organization, rules=rules)
    except ValidationError as exc:
        errors.update(exc.message_dict)
        return None
    # A rule whose requests nobody could ever approve is refused now, not
    # discovered by an agent waiting for an approval that cannot come.
    errors.update(approval_shortfalls(organization=role.organization, role=role, rules=cleaned))
    return cleaned


@transaction.atomic
def role_update(
    *,
    role: Role,
    name: str | None = None,
    description: str | None = None,
    rules: list[dict[str, Any]] | None = None,
    actor: Any = None,
) -> Role:
    """Change name/description and, when `rules` is given, replace the whole rule set."""
    role = Role.objects.select_for_update().get(pk=role.pk)
    errors: dict[str, list[str]] = {}
    changes: dict[str, Any] = {}
    if name is not None and name != role.name:
        try:
            changes["name"] = {
                "before": role.name,
                "after": _check_name(organization=role.organization, name=name, exclude_pk=role.pk),
            }
        except ValidationError as exc:
            errors.update(exc.message_dict)
    if description is not None and description != role.description:
        changes["description"] = {"before": role.description, "after": description}
    cleaned = None if rules is None else _cleaned_rules(role, rules, errors)
    if errors:
        raise ValidationError(errors)
    before = _rules_snapshot(role)
    if "name" in changes:
        role.name = changes["name"]["after"]
    if "description" in changes:
        role.description = description or ""
    role.save()
    if cleaned is not None:
        role.rules.all().delete()
        _save_rules(role, cleaned)
    after = _rules_snapshot(role)
    if changes or after != before:  # a save that changes nothing is not an event
        _audit_change(role, before, after, changes, actor)
    else:
        _rules_changed(role.pk)  # the rule rows (and their ids) were still rewritten
    return role


def _audit_change(
    role: Role,
    before: list[dict[str, Any]],
    after: list[dict[str, Any]],
    changes: dict[str, Any],
    actor: Any,
) -> None:
    metadata: dict[str, Any] = dict(changes)
    metadata["rules"] = {
        "before": before,
        "after": after,
        "added": [r for r in after if r not in before],
        "removed": [r for r in before if r not in after],
    }
    audit_record(
        action="role.changed",
        organization=role.organization,
        target=role,
        metadata=metadata,
        actor=actor,
    )
    _rules_changed(role.pk)


@transaction.atomic
def rule_add(*, role: Role, rule: dict[str, Any], actor: Any = None) -> Rule:
    role = Role.objects.select_for_update().get(pk=role.pk)
    cleaned = clean_rules(organization=role.organization, rules=[rule])[0]
    before = _rules_snapshot(role)
    last = role.rules.order_by("-position").values_list("position", flat=True).first()
    created = Rule.objects.create(
        role=role, position=(last or 0) + 1 if last is not None else 0, **cleaned
    )
    role.save(update_fields=["updated_at"])
    _audit_change(role, before, _rules_snapshot(role), {}, actor)
    return created


@transaction.atomic
def rule_delete(*, rule: Rule, actor: Any = None) -> None:
    role = Role.objects.select_for_update().get(pk=rule.role_id)
    before = _rules_snapshot(role)
    Rule.objects.filter(pk=rule.pk, role=role).delete()
    role.save(update_fields=["updated_at"])
    _audit_change(role, before, _rules_snapshot(role), {}, actor)


@transaction.atomic
def role_delete(*, role: Role, actor: Any = None) -> None:
    role = Role.objects.select_for_update().get(pk=role.pk)
    before = _rules_snapshot(role)
    role_id, organization, label = role.pk, role.organization, role.name
    audit_record(
        action="role.deleted",
        organization=organization,
        target_type="role",
        target_id=role_id,
        target_label=label,
        metadata={"rules": {"before": before, "after": []}},
        actor=actor,
    )
    try:
        with transaction.atomic():
            role.delete()
    except IntegrityError:
        raise ValidationError(
            {"role": ["This role is still used (by a worker or a token). Change those first."]}
        ) from None
    _rules_changed(role_id)


@transaction.atomic
def role_narrow(
    *,
    role: Role,
    days: int,
    worker_id: int | None = None,
    proposal_digest: str,
    actor: Any = None,
) -> Role:
    """Apply a least-privilege proposal in one step. The proposal is computed again
    here (never taken from the client) and must be the one the admin reviewed."""
    from apps.policies.least_privilege import least_privilege_report

    role = Role.objects.select_for_update().get(pk=role.pk)
    report = least_privilege_report(role=role, worker_id=worker_id, days=days)
    current = report.proposal_digest()
    if current != proposal_digest:
        scope = f"worker {worker_id}" if worker_id else "all workers"
        raise ValidationError(
            {
                "proposal": [
                    ValidationError(
                        "The proposal changed since it was shown (new calls or rules): for "
                        f"the last {days} days of {scope} its digest is now {current}, not "
                        f"{proposal_digest or '(none)'}. Review it again.",
                        code="proposal_changed",
                        params={"proposal_digest": current},
                    )
                ]
            }
        )
    if not report.changes:
        raise ValidationError(
            {"proposal": ["The role is already as narrow as this report can make it."]}
        )
    audit_record(
        action="role.narrowed",
        organization=role.organization,
        target=role,
        metadata={
            "days": days,
            "worker_id": worker_id,
            "calls": report.calls,
            "unused_rules": [r.rule_id for r in report.unused_rules],
            "proposal_digest": proposal_digest,
        },
        actor=actor,
    )
    return role_update(role=role, rules=report.proposal, actor=actor)
