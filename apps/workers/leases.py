"""Exact revocation: an agent call holds a lease on its worker and organization.

A brokered call can pass every check, then lose the race with a revocation
that commits while its request is on the way upstream. To make revocation
exact — once a revocation has committed, no call of that token, worker or
organization reaches an upstream — both sides take PostgreSQL advisory locks:

* the agent's token lookup takes a **shared** session-level lock on its
  worker and on its organization (in the lookup's own statement, no extra
  round trip), and the call releases both in its last audit statement;
* every service that stops a worker's tokens working (revoke, roll without
  overlap, disable, kill switches, delete) takes the **exclusive**
  transaction-level lock of the worker (or organization) after its UPDATE.

So a revocation waits until the calls already past their checks are done
with the upstream, and a call that asks for its lease while a revocation
holds the exclusive lock waits for that commit — and then fails the token
re-check in its attempt statement (`audit_record(holder_token_id=…)`), whose
snapshot is taken after the lease was granted. Advisory locks live in
PostgreSQL's lock table: no row is written, no WAL, no multixact.

Only the surfaces that go upstream take leases (execute, proxy, MCP:
`WorkerTokenAuthentication(lease=True)`), and every request gives back what it
still holds when it ends (`middleware.LeaseReleaseMiddleware`), so a lease lives
exactly as long as one call.

What it costs: a revocation may wait for in-flight calls of that worker, at
most the egress deadline (it raises its own lock and statement timeouts for that
one wait, so a web request's short statement timeout cannot cancel it). The
lease is a session lock, so a transaction-pooling PgBouncer in front of
PostgreSQL would break it (session pooling is fine).
"""

from __future__ import annotations

from django.conf import settings
from django.db import connection

from apps.audit.services import RELEASE_SQL, Condition
from apps.workers.models import Worker, WorkerStatus, WorkerToken

# Advisory lock key spaces (the first of the two int4 keys).
WORKER_SPACE = 0x67727931  # "gry1"
ORGANIZATION_SPACE = 0x67727932  # "gry2"

_STILL_VALID_SQL = (
    f"EXISTS (SELECT 1 FROM {WorkerToken._meta.db_table} lt"  # noqa: S608 - metadata only
    f" JOIN {Worker._meta.db_table} lw ON lw.id = lt.worker_id"
    " WHERE lt.id = %(lease_token_pk)s AND lt.revoked_at IS NULL AND lt.expires_at > now()"
    f" AND lw.status = '{WorkerStatus.ACTIVE.value}')"
)


def still_valid(token_pk: int) -> Condition:
    """The attempt's re-check: the token is unrevoked and unexpired and its worker active,
    as of the attempt statement's own snapshot (taken after the lease was granted)."""
    return Condition(_STILL_VALID_SQL, {"lease_token_pk": token_pk})


def key_sql(space: int, id_column: str) -> str:
    """`pg_advisory_lock_shared(space, id)` as a column expression for a lookup."""
    return f"pg_advisory_lock_shared({space}, ({id_column} %% 2147483647)::int4)"


# SET LOCAL both timeouts (until the transaction ends, or until set again).
_SET_TIMEOUTS_SQL = (
    "SELECT set_config('statement_timeout', %s, true), set_config('lock_timeout', %s, true)"
)


def _fence(space: int, object_id: int) -> None:
    """Wait until every call that holds a lease on this object is done, inside the
    caller's transaction (released at its commit). New leases wait for the commit.

    The wait may last as long as a legitimate call to a slow upstream, so for this one
    statement both the lock timeout and the statement timeout (a web request's is a few
    seconds, settings.DB_STATEMENT_TIMEOUT_MS) are the egress deadline + 10 s; the
    caller's own values apply again afterwards."""
    wait = f"{int((float(settings.GRANTRY_EGRESS_TIMEOUT) + 10) * 1000)}ms"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('statement_timeout'), current_setting('lock_timeout')"
        )
        before = cursor.fetchone()
        cursor.execute(_SET_TIMEOUTS_SQL, [wait, wait])
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, (%s %% 2147483647)::int4)", [space, object_id]
        )
        cursor.execute(_SET_TIMEOUTS_SQL, before)


def fence_worker(worker_id: int) -> None:
    _fence(WORKER_SPACE, worker_id)


def fence_organization(organization_id: int) -> None:
    _fence(ORGANIZATION_SPACE, organization_id)


# The leases are given back by the call's last audit statement
# (`audit_record(release_leases=True)`, apps.audit.services.RELEASE_SQL).


def release() -> None:
    """Give back this session's leases (idempotent). When the statement that should
    have done it failed, this is the safety net; if even this fails, the database
    session is closed, which releases every session lock."""
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {RELEASE_SQL}")  # a constant
    except Exception:
        connection.close()
