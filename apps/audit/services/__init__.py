"""The audit app's services, one module per concern, and the one writer.

    apps.audit.writer            audit_record(): the one writer (re-exported here, the
                                 name every app imports), Condition
    services/exports.py          exports, direct or as a job queued on commit
    services/verification.py     verifying the trail or an uploaded export
    services/sinks.py            SIEM sinks: create, deliver, test, retry, delete
    services/archive.py          retention, month partitions ahead, archives, dropping a month

Nothing here imports `apps.audit.tasks` (a job is queued by its task's name,
apps.core.tasks.enqueue), and `signing`/`proof` import only the writer, so no
module of the app imports one that imports it back (a contract in pyproject.toml).
"""

from apps.audit.services.archive import (
    audit_archive_due,
    audit_archive_month,
    audit_partition_drop,
    audit_partitions_ensure,
    audit_retention_set,
)
from apps.audit.services.exports import (
    audit_export_direct,
    audit_export_expire,
    audit_export_request,
    audit_export_run,
    export_is_large,
    export_threshold,
    export_ttl_hours,
)
from apps.audit.services.sinks import (
    audit_sink_create,
    audit_sink_delete,
    audit_sink_deliver,
    audit_sink_lag,
    audit_sink_retry,
    audit_sink_send_test,
)
from apps.audit.services.verification import audit_verify_export, audit_verify_trail
from apps.audit.writer import Condition, audit_record

__all__ = [
    "Condition",
    "audit_archive_due",
    "audit_archive_month",
    "audit_export_direct",
    "audit_export_expire",
    "audit_export_request",
    "audit_export_run",
    "audit_partition_drop",
    "audit_partitions_ensure",
    "audit_record",
    "audit_retention_set",
    "audit_sink_create",
    "audit_sink_delete",
    "audit_sink_deliver",
    "audit_sink_lag",
    "audit_sink_retry",
    "audit_sink_send_test",
    "audit_verify_export",
    "audit_verify_trail",
    "export_is_large",
    "export_threshold",
    "export_ttl_hours",
]
