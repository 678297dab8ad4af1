"""What the audit writer raises when it cannot append an event."""

from __future__ import annotations

from apps.core.exceptions import ServiceUnavailable


class AuditUnavailable(ServiceUnavailable):
    """The audit trail could not be written, so the change it describes did not happen.

    Raised by `audit_record()` from the database error. Inside a transaction the
    change rolls back with it (fail closed); every surface answers 503
    `audit_unavailable` (apps.core.api and apps.core.middleware)."""

    code = "audit_unavailable"
    message = (
        "Grantry could not record this in the audit trail, so it did not do it. Retry shortly."
    )
