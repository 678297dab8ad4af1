"""The audit table's month partitions (migration 0010), as the database holds them.

`audit_auditevent` is range-partitioned on `created_at` by UTC month; a month's
partition is `audit_auditevent_YYYY_MM`. The scheduler creates months ahead
(`ensure`, through the database's own `audit_partition_ensure()`, which also puts the
TRUNCATE trigger on the new month) and, once a month is archived and past every
retention, detaches and drops it (`drop`, called only by apps.audit.services.archive).
Nothing else deletes audit rows: the triggers refuse UPDATE, DELETE and TRUNCATE."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from django.db import connection
from django.db.models import Max

from apps.audit.verify import org_chains_q

PARENT = "audit_auditevent"
_NAME = re.compile(r"^audit_auditevent_\d{4}_\d{2}$")


def month_start(moment: datetime | date) -> datetime:
    """The first instant (UTC) of the month holding `moment`."""
    if isinstance(moment, datetime):
        moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def add_months(month: datetime, months: int) -> datetime:
    index = month.year * 12 + month.month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class MonthPartition:
    name: str
    start: datetime  # inclusive
    end: datetime  # exclusive

    @property
    def month(self) -> date:
        return self.start.date()


def name_for(month: datetime) -> str:
    return f"{PARENT}_{month:%Y_%m}"


def month_partitions() -> list[MonthPartition]:
    """Every month partition, oldest first."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass ORDER BY c.relname",
            [PARENT],
        )
        names = [row[0] for row in cursor.fetchall()]
    found = []
    for name in names:
        if not _NAME.match(name):
            continue
        year, month = int(name[-7:-3]), int(name[-2:])
        start = datetime(year, month, 1, tzinfo=UTC)
        found.append(MonthPartition(name, start, add_months(start, 1)))
    return found


def ensure(at: datetime, *, lock_timeout_ms: int = 5000) -> str:
    """Create the month holding `at` unless it exists; its name. Creating a partition
    briefly locks the parent, so a busy table makes this fail after the lock timeout
    (and the scheduler tries again) instead of holding appends up."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{lock_timeout_ms}ms"])
        cursor.execute("SELECT audit_partition_ensure(%s)", [at])
        return str(cursor.fetchone()[0])


def subjects(partition: MonthPartition) -> list[int | None]:
    """The organizations (None: the global chain) with events in the month."""
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT DISTINCT organization_id FROM "{_checked(partition.name)}"')  # noqa: S608 - a partition name matched by _NAME
        return sorted((row[0] for row in cursor.fetchall()), key=lambda v: (v is not None, v or 0))


def chain_max_seq(partition: MonthPartition, organization_id: int | None) -> dict[str, int]:
    """{chain_key: highest seq} of the organization's chains (or the global chain's) in
    this month."""
    from apps.audit.models import AuditEvent

    rows = (
        AuditEvent.objects.filter(org_chains_q([organization_id]))  # type: ignore[list-item]
        .filter(created_at__gte=partition.start, created_at__lt=partition.end)
        .order_by()
        .values("chain_key")
        .annotate(top=Max("seq"))
    )
    return {row["chain_key"]: row["top"] for row in rows}


def drop(partition: MonthPartition, *, lock_timeout_ms: int = 5000) -> None:
    """Detach the month from the table and drop it. The caller has checked that every
    row in it is archived and verified, in the same transaction."""
    name = _checked(partition.name)
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{lock_timeout_ms}ms"])
        cursor.execute(f'ALTER TABLE {PARENT} DETACH PARTITION "{name}"')
        cursor.execute(f'DROP TABLE "{name}"')


def _checked(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"not an audit month partition: {name!r}")
    return name
