from typing import Any

from django.apps import AppConfig
from django.core import checks


class AuditConfig(AppConfig):
    name = "apps.audit"
    label = "audit"

    def ready(self) -> None:
        checks.register(check_audit_fields, checks.Tags.models)


def check_audit_fields(
    app_configs: Any = None,  # noqa: ARG001 - Django's check framework passes it by name
    **kwargs: Any,
) -> list[checks.CheckMessage]:
    """The one list of audit fields must keep every existing chain verifiable."""
    from apps.audit import chain, fields

    problems = chain.later_field_problems(fields.FIELDS)
    problems += [
        f"AuditEvent.{name} was in every event's digest and cannot be removed"
        for name in chain.missing_v1_fields(fields.HASHED)
    ]
    return [checks.Error(problem, id="audit.E001") for problem in problems]
