from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "apps.workers"
    label = "workers"

    def ready(self) -> None:
        from apps.audit import filters as audit_filters
        from apps.connections import selectors as connection_selectors
        from apps.policies import approvers, least_privilege
        from apps.policies import selectors as policy_selectors
        from apps.workers import (
            members,  # noqa: F401 - imported for its signal receivers
            schema,  # noqa: F401 - registers the OpenAPI auth scheme
            selectors,
        )

        # The answers lower layers ask for (apps.core.ports).
        connection_selectors.connection_users.plug(selectors.connection_users)
        policy_selectors.role_users.plug(selectors.role_users)
        approvers._role_subjects.plug(selectors.role_subjects)
        least_privilege.worker_of.plug(selectors.worker_of)
        audit_filters.IDS_NAMED["worker"].plug(selectors.worker_ids_named)
