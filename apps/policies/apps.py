from django.apps import AppConfig


class PoliciesConfig(AppConfig):
    name = "apps.policies"
    label = "policies"

    def ready(self) -> None:
        from apps.audit import filters as audit_filters
        from apps.policies import (
            selectors,
            signals,  # noqa: F401 - connects the receivers
        )

        # The answer the audit filter asks for (apps.core.ports).
        audit_filters.IDS_NAMED["role"].plug(selectors.role_ids_named)
