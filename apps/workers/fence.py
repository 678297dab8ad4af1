"""Exact revocation without holding anything across the upstream wait.

The guarantee: once a revocation of a token, a worker or an organization (token
revoke, revoke-all, roll without overlap, worker disable or delete, the kill
switches, an OAuth grant revoked) has returned, no byte of an upstream request of
that token is sent by any process. Nothing is held while a call waits on its
upstream: no lock, no transaction, no database session state, so it also holds
behind PgBouncer in transaction mode, and an agent cannot block its own revocation.

Three parts:

* **The fence in the attempt statement.** A call's durable attempt append (one
  statement, its own short transaction) calls `grantry_attempt_fence()`, a VOLATILE
  PL/pgSQL function (migration workers/0004). It takes
  `pg_advisory_xact_lock_shared` on the worker and on the organization, then checks
  in a NEW query (a volatile function's queries take fresh snapshots) that the token
  is unrevoked and unexpired and its worker active — so it sees a revocation that
  committed while it waited for the lock. The attempt row is inserted only if the
  fence passes; otherwise the call is refused (401 `token_invalid`).
* **The send window W** (settings.GRANTRY_SEND_WINDOW). The process notes a
  monotonic time t0 just before it issues the attempt statement (`window_start`).
  It may start, and must finish, writing the upstream request only until t0 + W:
  the egress client checks the window before connecting and bounds connect and
  every write by the time left (`egress_request(send_by=)`); past it nothing (more)
  is sent and the call ends `send_window_closed` (502, audited). MCP tool calls
  check the window before the call is handed to the MCP client and again once its
  session is ready (`gateway.client.call_tool(send_by=)`); the SDK's own write of
  the call, on its session's task, is not bounded by the window.
* **The revocation.** The service UPDATEs, then takes `pg_advisory_xact_lock`
  (exclusive) on the worker or organization in the same transaction (`fence_worker`,
  `fence_organization`): it waits only for attempt statements in progress
  (milliseconds). If an attempt of that worker or organization was recorded within
  the last W + GRANTRY_SEND_WINDOW_MARGIN (by the database clock), the service waits
  out W after its commit before it returns (`transaction.on_commit`; no lock and no
  transaction held during the wait).

Why that is exact (real time, one clock for everyone, as every machine's monotonic
clock advances at the same rate): an attempt that passed the fence took its shared
lock either before the revocation's exclusive lock — then the revocation waited for
the attempt's commit — or after the revocation committed, and then its fresh check
saw the revocation and refused. So every attempt that passed committed before the
revocation's commit, and its t0 is earlier still: its send window ends before
commit + W, which is before the revocation returns. An attempt recorded more than
W + margin before the revocation's transaction began has its window closed already,
so no wait is needed; the margin covers the difference between the web processes'
clocks (which stamp `created_at`) and the database's (they must agree within it).

What it costs: a revocation of a worker that was active within the last few seconds
returns about W later (2 s by default); the window bounds connect + write of a
request, so an upstream that takes longer than W to accept a request's bytes (a
very large body, a slow TLS handshake, an OAuth refresh before the send) gets
`send_window_closed` instead, and the agent retries.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from apps.audit.services import Condition

# Advisory lock key spaces (the first of the two int4 keys). The migration that
# creates grantry_attempt_fence() spells the same numbers.
WORKER_SPACE = 0x67727931  # "gry1"
ORGANIZATION_SPACE = 0x67727932  # "gry2"

FENCE_FUNCTION = "grantry_attempt_fence"

# The function (migration workers/0004; tests replace it to show what fails without it).
FENCE_FUNCTION_SQL = f"""
CREATE OR REPLACE FUNCTION {FENCE_FUNCTION}(p_token bigint, p_worker bigint,
                                            p_organization bigint)
RETURNS boolean VOLATILE LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared({WORKER_SPACE}, (p_worker % 2147483647)::int4);
    PERFORM pg_advisory_xact_lock_shared({ORGANIZATION_SPACE},
                                         (p_organization % 2147483647)::int4);
    -- A new query, so a new snapshot: it sees a revocation committed while we waited.
    RETURN EXISTS (
        SELECT 1 FROM workers_workertoken t JOIN workers_worker w ON w.id = t.worker_id
        WHERE t.id = p_token AND t.worker_id = p_worker AND t.organization_id = p_organization
          AND t.revoked_at IS NULL AND t.expires_at > now() AND w.status = 'active'
    );
END
$$;
"""  # noqa: S608 - constants only


def attempt_fence(*, token_pk: int, worker_id: int, organization_id: int) -> Condition:
    """The attempt append's condition: the fence (shared locks, then a fresh check)."""
    return Condition(
        f"{FENCE_FUNCTION}(%(fence_token)s, %(fence_worker)s, %(fence_organization)s)",
        {"fence_token": token_pk, "fence_worker": worker_id, "fence_organization": organization_id},
    )


def send_window() -> float:
    return float(settings.GRANTRY_SEND_WINDOW)


def window_start() -> float:
    """t0, noted just before the attempt statement; the request's bytes may be written
    until `window_start() + send_window()`."""
    return time.monotonic()


_RECENT_ATTEMPT_SQL = """
SELECT EXISTS (
    SELECT 1 FROM audit_auditevent
    WHERE organization_id = {organization} AND created_at > now() - make_interval(secs => %s)
      AND action LIKE '%%.attempt'{worker}
)
"""
_RECENT_BY_WORKER = _RECENT_ATTEMPT_SQL.format(
    organization="(SELECT organization_id FROM workers_worker WHERE id = %s)",
    worker=" AND worker_id = %s",
)
_RECENT_BY_ORGANIZATION = _RECENT_ATTEMPT_SQL.format(organization="%s", worker="")
_SECONDS = object()  # where W + margin goes among a query's parameters


def _fence(space: int, object_id: int, recent_sql: str, params: list[Any]) -> None:
    """Inside the revocation's transaction, after its UPDATE: wait for the attempt
    statements in progress (they hold the shared lock for milliseconds), then, if an
    attempt of this object may still be in its send window, wait W after the commit."""
    window = send_window()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, (%s %% 2147483647)::int4)", [space, object_id]
        )
        margin = float(settings.GRANTRY_SEND_WINDOW_MARGIN)
        cursor.execute(recent_sql, [window + margin if p is _SECONDS else p for p in params])
        row = cursor.fetchone()
    recent = bool(row and row[0])
    if recent and window > 0 and not _wait_registered():
        transaction.on_commit(_wait_out_window)


def _wait_registered() -> bool:
    # One wait per transaction, however many fences it took (a grant revoked with its
    # tokens fences the worker once per token).
    return any(entry[1] is _wait_out_window for entry in connection.run_on_commit)


def _wait_out_window() -> None:
    """After the commit: every call that passed the fence has t0 < commit, so its
    window ends within W from now."""
    time.sleep(send_window())


def fence_worker(worker_id: int) -> None:
    _fence(WORKER_SPACE, worker_id, _RECENT_BY_WORKER, [worker_id, _SECONDS, worker_id])


def fence_organization(organization_id: int) -> None:
    _fence(
        ORGANIZATION_SPACE, organization_id, _RECENT_BY_ORGANIZATION, [organization_id, _SECONDS]
    )
