"""`make bench-audit`: the audit trail at scale, in one unattended run.

1. Creates its own PostgreSQL database (AUDIT_BENCH_DATABASE_URL, default
   postgres://postgres@127.0.0.1:5432/grantry_bench_audit), dropping an old
   one, and migrates it.
2. Seeds AUDIT_BENCH_EVENTS events (default 10,000,000) across several
   organizations with COPY, as valid per-organization hash chains (the same
   canonical hashing as apps.audit.chain), indexes dropped during the load and
   rebuilt after it.
3. Reports:
   * browse p50/p95 of the dashboard list page (full Django stack, in
     process) for common filters, with the index each query used (goal < 150 ms);
   * time and memory (RSS sampled every 20 ms) of a JSON Lines and a CSV export
     of up to 1,000,000 rows through the management API's streamed export (goals
     < 60 s and < 25 s, flat memory);
   * audit_verify throughput over every chain;
   * p50/p95 of the dashboard's workers and roles lists (keyset pages with
     search) in the busy organization, seeded with AUDIT_BENCH_WORKERS
     workers (default 10,000, one token each) and AUDIT_BENCH_ROLES roles
     (default 1,000, two rules each); goal p95 < 150 ms;
   * policy simulation of AUDIT_BENCH_SIM_CALLS (default 100,000) recorded calls
     of one role against proposed rules (goal < 10 s).

Other knobs: AUDIT_BENCH_ORGS (default 5), AUDIT_BENCH_REPEAT (requests per
filter, default 30), AUDIT_BENCH_REUSE=1 (keep an already seeded database),
AUDIT_BENCH_VERIFY (default "all"; or comma-separated org slugs, e.g. bench-1).
"page" times are the whole request (middleware, view, template); "query" is
the page's database work alone, which is what the indexes decide.
It prints numbers and asserts nothing.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import re
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# AUDIT_BENCH_SMOKE=1 (`make bench-audit-smoke`, run by .ci/run): the same run end to
# end with tiny numbers and its own database; it proves the script works, not speed.
SMOKE = os.environ.get("AUDIT_BENCH_SMOKE") == "1"


def _knob(name: str, full: int, smoke: int) -> int:
    return int(os.environ.get(name, str(smoke if SMOKE else full)))


EVENTS = _knob("AUDIT_BENCH_EVENTS", 10_000_000, 20_000)
ORGS = _knob("AUDIT_BENCH_ORGS", 5, 2)
REPEAT = _knob("AUDIT_BENCH_REPEAT", 30, 3)
REUSE = os.environ.get("AUDIT_BENCH_REUSE") == "1"
DB_URL = os.environ.get(
    "AUDIT_BENCH_DATABASE_URL",
    "postgres://postgres@127.0.0.1:5432/grantry_bench_audit" + ("_smoke" if SMOKE else ""),
)
LIST_WORKERS = _knob("AUDIT_BENCH_WORKERS", 10_000, 200)
LIST_ROLES = _knob("AUDIT_BENCH_ROLES", 1_000, 20)
EXPORT_ROWS = 1_000_000
# The audit migration before the table is partitioned by month (0010).
PLAIN_TABLE = "0009_outcome_pending_refused_decision_approval"
WORKERS_PER_ORG, TOKENS_PER_ORG, CONNECTIONS_PER_ORG = 40, 80, 8

os.environ.update(
    {
        "DJANGO_SETTINGS_MODULE": "grantry.settings",
        "DATABASE_URL": DB_URL,
        "DEBUG": "0",  # DEBUG would keep every query in memory
        "SECRET_KEY": "bench-only-secret-key",
        "GRANTRY_ENCRYPTION_KEY": "bench-only-encryption-key",
        "ALLOWED_HOSTS": "*",
        "SECURE_SSL_REDIRECT": "0",
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "REDIS_URL": "",
        "LOG_LEVEL": "WARNING",
    }
)


@contextlib.contextmanager
def without_statement_timeout() -> Iterator[None]:
    """Seeding and verifying are background work (a management command's timeouts in
    production): no statement timeout, so rebuilding an index over millions of rows
    is not cancelled after the web's 5 s. The measured page requests keep the web's."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SET statement_timeout = 0")
    try:
        yield
    finally:
        with connection.cursor() as cur:
            cur.execute("RESET statement_timeout")


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def create_database() -> bool:
    """Create the bench database; False when reusing an existing seeded one."""
    import psycopg

    parts = urlsplit(DB_URL)
    name = parts.path.lstrip("/")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists and REUSE:
            return False
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(
            f"CREATE DATABASE \"{name}\" TEMPLATE template0 LC_COLLATE 'C.UTF-8' "
            "LC_CTYPE 'C.UTF-8' ENCODING 'UTF8'"
        )
    return True


# --- seeding -------------------------------------------------------------------

BROKER_ACTIONS = [
    "issues.list",
    "issues.get",
    "issues.create",
    "issues.delete",
    "repos.get",
    "tasks.list",
    "tasks.update",
    "messages.send",
    "files.read",
    "files.delete",
]
CONFIG_ACTIONS = [
    "token.minted",
    "token.revoked",
    "token.rolled",
    "member.invited",
    "member.role_changed",
    "role.updated",
    "connection.refreshed",
    "connection.created",
    "worker.created",
    "org.updated",
]
PROVIDERS = ["github", "linear", "slack", "gdrive", "jira", "notion", "sandbox", "hubspot"]


def seed() -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from apps.organizations.models import Membership, Organization

    orgs = [Organization.objects.create(name=f"Bench {i}", slug=f"bench-{i}") for i in range(ORGS)]
    user = get_user_model().objects.create_user(
        username="reviewer@bench.test", email="reviewer@bench.test", password="bench-password-1"
    )
    members = []
    for org in orgs:
        Membership.objects.create(organization=org, user=user, role="reviewer")
        for j in range(5):
            u = get_user_model().objects.create_user(
                username=f"m{j}@{org.slug}.test", email=f"m{j}@{org.slug}.test"
            )
            Membership.objects.create(organization=org, user=u, role="admin")
            members.append((org.pk, u.pk, u.username))
    members_by_org: dict[int, list[tuple[int, int, str]]] = {}
    for m in members:
        members_by_org.setdefault(m[0], []).append(m)

    # The first org is the busy one: half of all events. Two loader processes
    # (the busy org; the others) build their chains and COPY in parallel.
    org_ids = [o.pk for o in orgs]
    if ORGS > 1:
        parts = [([org_ids[0]], EVENTS // 2), (org_ids[1:], EVENTS - EVENTS // 2)]
    else:
        parts = [(org_ids, EVENTS)]

    with connection.cursor() as cur:
        # Plain indexes only: the primary key and the (chain_key, seq) unique
        # constraint stay, so the load is still checked.
        cur.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = "
            "'audit_auditevent' AND indexname NOT IN "
            "(SELECT conname FROM pg_constraint)"
        )
        indexes = cur.fetchall()
        for name, _ in indexes:
            cur.execute(f'DROP INDEX "{name}"')
    connection.close()  # no connection shared into the forked loaders

    started = time.monotonic()
    with multiprocessing.get_context("fork").Pool(len(parts)) as pool:
        results = pool.starmap(
            load_part,
            [(n, ids, count, members_by_org) for n, (ids, count) in enumerate(parts)],
        )
    heads = [head for part in results for head in part]
    with connection.cursor() as cur:
        cur.executemany(
            "INSERT INTO audit_auditchainhead (chain_key, seq, hash) VALUES (%s, %s, %s)", heads
        )
    load_s = time.monotonic() - started
    t = time.monotonic()
    with connection.cursor() as cur:
        # A new connection since the fork: the caller's SET is gone, so again here.
        cur.execute("SET statement_timeout = 0")
        for _, definition in indexes:
            cur.execute(definition)
        cur.execute("VACUUM ANALYZE audit_auditevent")
    index_s = time.monotonic() - t
    return {"load_s": load_s, "index_s": index_s}


def copy_columns() -> dict[str, object]:
    """The COPY columns, the one list of audit fields (apps.audit.fields) but the id and
    the columns the table does not have yet (the plain table is seeded at migration
    0009, before later columns such as on_behalf_of_id existed), each with the model's
    default for a column the seeder does not set."""
    from django.db import connection

    from apps.audit.fields import FIELDS

    with connection.cursor() as cur:
        cur.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = 'audit_auditevent'"
        )
        present = {row[0] for row in cur.fetchall()}
    return {
        field.name: field.default()
        for field in FIELDS
        if field.name != "id" and field.name in present
    }


def later_columns(*, add: bool, names: list[str] | None = None) -> list[str]:
    """The plain table is the table as migration 0009 left it, but the model (and so every
    page) reads the columns added since (on_behalf_of_id and _label, audit 0013). For the
    plain table's measurement they are added, nullable and empty, and dropped again
    before the real migrations add them. Returns the names added."""
    from django.db import connection

    from apps.audit.fields import FIELDS
    from apps.audit.models import AuditEvent

    if not add:
        with connection.cursor() as cur:
            for name in names or []:
                cur.execute(f'ALTER TABLE audit_auditevent DROP COLUMN "{name}"')
        return []
    present = copy_columns()
    missing = [f.name for f in FIELDS if f.name not in present and f.name != "id"]
    by_column = {field.column: field for field in AuditEvent._meta.concrete_fields}
    with connection.cursor() as cur:
        for name in missing:
            db_type = by_column[name].db_type(connection)
            cur.execute(f'ALTER TABLE audit_auditevent ADD COLUMN "{name}" {db_type}')
    return missing


def copy_line(values: dict[str, object], columns: dict[str, object]) -> str:
    """One COPY text row."""
    cells = (values.get(name, default) for name, default in columns.items())
    return "\t".join("\\N" if cell is None else str(cell) for cell in cells)


def load_part(
    part: int, org_ids: list[int], count: int, members_by_org: dict[int, list[tuple]]
) -> list[tuple[str, int, str]]:
    """Build `count` events over 30 days for `org_ids` as valid chains and COPY them
    in on an own connection. Returns the chain heads."""
    import json

    import psycopg

    from apps.audit.chain import GENESIS_HASH, chain_key_for, event_hash

    rng = random.Random(6 + part)
    state: dict[int, list[Any]] = {oid: [0, GENESIS_HASH] for oid in org_ids}
    start = datetime.now(UTC) - timedelta(days=30)
    step = timedelta(days=30) / max(count, 1)
    org_choices = [rng.choice(org_ids) for _ in range(min(count, 1_000_000))]
    started = time.monotonic()
    batch = 200_000
    with psycopg.connect(DB_URL) as conn, conn.cursor() as pg:
        pg.execute("SET TIME ZONE 'UTC'")
        columns = copy_columns()
        with pg.copy(f"COPY audit_auditevent ({', '.join(columns)}) FROM STDIN") as copy:
            buf: list[str] = []
            for i in range(count):
                oid = org_choices[i % len(org_choices)]
                seq_hash = state[oid]
                seq_hash[0] += 1
                created = start + step * i
                values = _event(rng, oid, i, part, members_by_org)
                values.update(
                    {
                        "chain_key": chain_key_for(oid),
                        "seq": seq_hash[0],
                        "prev_hash": seq_hash[1],
                        "created_at": created,
                        "organization_id": oid,
                        "ip": f"10.{part}.{i % 250}.{i % 200 + 1}",
                        "user_agent": "bench-agent/1.0",
                        "request_id": f"req{part}-{i}",
                    }
                )
                digest = event_hash(values)
                seq_hash[1] = values["hash"] = digest
                values["created_at"] = created.isoformat(timespec="microseconds")
                values["metadata"] = json.dumps(values["metadata"], separators=(",", ":"))
                buf.append(copy_line(values, columns))
                if (i + 1) % batch == 0:
                    copy.write("\n".join(buf) + "\n")
                    buf = []
                    rate = (i + 1) / (time.monotonic() - started)
                    print(f"  loader {part}: {i + 1:,} events ({rate:,.0f}/s)", flush=True)
            if buf:
                copy.write("\n".join(buf) + "\n")
        conn.commit()
    return [(chain_key_for(oid), s[0], s[1]) for oid, s in state.items()]


def _event(
    rng: random.Random, oid: int, i: int, part: int, members_by_org: dict[int, list[tuple]]
) -> dict[str, object]:
    worker = rng.randrange(1, WORKERS_PER_ORG + 1)
    if rng.random() < 0.85:
        denied = rng.random() < 0.05
        act = BROKER_ACTIONS[rng.randrange(len(BROKER_ACTIONS))]
        status = (
            None if denied else (200 if rng.random() < 0.95 else rng.choice([404, 429, 500, 503]))
        )
        conn_id = oid * 100 + rng.randrange(CONNECTIONS_PER_ORG)
        return {
            "actor_type": "worker",
            "actor_id": str(worker),
            "actor_label": f"worker-{worker}",
            "action": "broker.denied" if denied else "broker.execute",
            "target_type": "connection",
            "target_id": str(conn_id),
            "target_label": f"conn-{conn_id}",
            "outcome": "denied" if denied else ("success" if status == 200 else "failure"),
            "decision": "denied" if denied else "allowed",
            "worker_id": worker,
            "token_id": f"tok{oid}x{rng.randrange(TOKENS_PER_ORG)}",
            "connection_id": conn_id,
            "provider": PROVIDERS[conn_id % len(PROVIDERS)],
            "upstream_status": status,
            "latency_ms": None if denied else rng.randrange(20, 900),
            "reason": f"No rule of role triage allows {act}" if denied else "",
            "metadata": {
                "action": act,
                "input_digest": f"sha256:{part}{i:063x}",
                "role_id": oid * 10,
            },
        }
    _, member_id, member_label = rng.choice(members_by_org[oid])
    act = CONFIG_ACTIONS[rng.randrange(len(CONFIG_ACTIONS))]
    kind = act.split(".")[0]
    return {
        "actor_type": "user", "actor_id": str(member_id), "actor_label": member_label,
        "action": act, "target_type": kind, "target_id": str(i),
        "target_label": f"{kind} {i % 997}", "outcome": "success", "decision": "",
        "worker_id": worker if kind == "token" else None, "token_id": "",
        "connection_id": None, "provider": "", "upstream_status": None, "latency_ms": None,
        "reason": "", "metadata": {"changed": ["name"]},
    }  # fmt: skip


def seed_lists(org: Any) -> float:
    """LIST_ROLES roles with two rules each and LIST_WORKERS workers with one token each."""
    from datetime import UTC as _UTC

    from apps.policies.models import Role, Rule
    from apps.workers.models import Worker, WorkerToken

    t = time.monotonic()
    roles = Role.objects.bulk_create(
        Role(organization=org, name=f"role-{i:05d}", description=f"Bench role {i}")
        for i in range(LIST_ROLES)
    )
    Rule.objects.bulk_create(
        Rule(role=role, provider_key="sandbox", action_pattern=pattern, position=n)
        for role in roles
        for n, pattern in enumerate(("sandbox.list_*", "sandbox.get_task"))
    )
    workers = Worker.objects.bulk_create(
        (
            Worker(
                organization=org,
                name=f"agent-{i:05d}",
                description=f"Bench worker {i}",
                default_role=roles[i % len(roles)],
            )
            for i in range(LIST_WORKERS)
        ),
        batch_size=2000,
    )
    expires = datetime.now(_UTC) + timedelta(days=30)
    WorkerToken.objects.bulk_create(
        (
            WorkerToken(
                organization=org,
                worker=w,
                role=w.default_role,
                public_id=f"bwt{w.pk}",
                digest=f"{w.pk:064x}",
                last4="0000",
                expires_at=expires,
            )
            for w in workers
        ),
        batch_size=2000,
    )
    from django.db import connection

    with connection.cursor() as cur:
        for table in ("workers_worker", "workers_workertoken", "policies_role", "policies_rule"):
            cur.execute(f"ANALYZE {table}")
    return time.monotonic() - t


def lists(org: Any, user: Any) -> list[tuple[str, float, float, int]]:
    """Request p50/p95 and HTML size of the workers and roles list pages."""
    from django.test import Client
    from django.urls import reverse

    from apps.policies.models import Role
    from apps.workers.models import Worker

    client = Client()
    client.force_login(user)
    workers = reverse("workers:list", kwargs={"org_slug": org.slug})
    roles = reverse("policies:list", kwargs={"org_slug": org.slug})
    worker_ids = (
        Worker.objects.filter(organization=org).order_by("name").values_list("pk", flat=True)
    )
    mid_worker = worker_ids[max(0, worker_ids.count() // 2)] if worker_ids.exists() else 0
    role_ids = Role.objects.filter(organization=org).order_by("name").values_list("pk", flat=True)
    mid_role = role_ids[max(0, role_ids.count() // 2)] if role_ids.exists() else 0
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("workers: first page", workers, {}),
        ("workers: middle page (after=<id>)", workers, {"after": mid_worker}),
        ("workers: previous page (before=<id>)", workers, {"before": mid_worker}),
        ("workers: search q=agent-04", workers, {"q": "agent-04"}),
        ("workers: search, no match", workers, {"q": "no-such-worker"}),
        ("roles: first page", roles, {}),
        ("roles: middle page (after=<id>)", roles, {"after": mid_role}),
        ("roles: search q=role-005", roles, {"q": "role-005"}),
    ]
    results = []
    for label, url, params in cases:
        response = client.get(url, params)  # warm
        size = len(response.content)
        times = []
        for _ in range(REPEAT):
            t = time.perf_counter()
            response = client.get(url, params)
            times.append((time.perf_counter() - t) * 1000)
            assert response.status_code == 200
        results.append((label, _p(times, 50), _p(times, 95), size))
    return results


# --- measurements --------------------------------------------------------------


def browse(org: Any, user: Any) -> list[tuple[str, float, float, float, str]]:
    from django.test import Client
    from django.urls import reverse

    from apps.audit.filters import AuditFilterForm
    from apps.audit.models import AuditEvent

    client = Client()
    client.force_login(user)
    base = reverse("audit:list", kwargs={"org_slug": org.slug})
    events = AuditEvent.objects.filter(organization=org)
    middle = events.order_by("id").values_list("id", flat=True)[events.count() // 2]
    day_ago = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    week = (datetime.now(UTC) - timedelta(days=20)).strftime("%Y-%m-%dT%H:%M")
    week_end = (datetime.now(UTC) - timedelta(days=13)).strftime("%Y-%m-%dT%H:%M")
    member = (
        AuditEvent.objects.filter(organization=org, actor_type="user")
        .values_list("actor_label", flat=True)
        .first()
    )
    cases: list[tuple[str, dict[str, Any]]] = [
        ("no filter (newest page)", {}),
        ("deep page (before=<middle id>)", {"before": middle}),
        ("decision=denied", {"decision": "denied"}),
        ("worker=7", {"worker": 7}),
        ("worker=7 & decision=denied", {"worker": 7, "decision": "denied"}),
        ("action=token. (prefix)", {"action": "token."}),
        ("action=member.invited", {"action": "member.invited"}),
        ("token=<id>", {"token": f"tok{org.pk}x3"}),
        ("member=<email>", {"member": member}),
        ("connection=<id>", {"connection": org.pk * 100 + 2}),
        ("provider=linear", {"provider": "linear"}),
        ("status=5xx", {"status": "5xx"}),
        ("outcome=failure", {"outcome": "failure"}),
        ("last 24 h", {"start": day_ago}),
        ("a week 20 days ago", {"start": week, "end": week_end}),
        ("a week ago & denied", {"start": week, "end": week_end, "decision": "denied"}),
        ("text q=conn-1 (free text)", {"q": "conn-1"}),
        ("text q=issues.delete & last 24 h", {"q": "issues.delete", "start": day_ago}),
    ]
    parents, tables = _partition_names()
    results = []
    for label, params in cases:
        plan = ""
        form = AuditFilterForm(data={k: str(v) for k, v in params.items() if k != "before"})
        assert form.is_valid(), form.errors

        def page_query(form: Any = form, params: dict[str, Any] = params) -> Any:
            qs = form.filter(events)  # includes the time range's id-bound lookups
            if "before" in params:
                qs = qs.filter(id__lt=params["before"])
            return qs.order_by("-id")[:51]

        explained = page_query().explain()
        # A month's index is named after the parent's index it belongs to.
        plan = ",".join(
            sorted(
                {
                    parents.get(w.strip('"'), w.strip('"'))
                    for w in explained.split()
                    if w.strip('"').startswith("audit_")
                    and w.strip('"') not in tables
                    # EXPLAIN's aliases of the months (audit_auditevent_3) and sort keys
                    and not re.fullmatch(r"audit_auditevent(_\d+)?(\.\w+)?", w.strip('"'))
                }
            )
        )
        client.get(base, params)  # warm
        page_times, query_times = [], []
        for _ in range(REPEAT):
            t = time.perf_counter()
            response = client.get(base, params)
            page_times.append((time.perf_counter() - t) * 1000)
            assert response.status_code == 200
            t = time.perf_counter()
            list(page_query())
            query_times.append((time.perf_counter() - t) * 1000)
        results.append(
            (label, _p(page_times, 50), _p(page_times, 95), _p(query_times, 95), plan or "seq scan")
        )
    return results


def _partition_names() -> tuple[dict[str, str], set[str]]:
    """({a month's index: the parent index}, the table's and its months' names)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT c.relname, p.relname, c.relkind FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
            "WHERE p.relname LIKE 'audit_%'"
        )
        found = cur.fetchall()
    parents = {child: parent for child, parent, kind in found if kind == "i"}
    tables = {"audit_auditevent"} | {child for child, _, kind in found if kind != "i"}
    return parents, tables


def _p(values: list[float], pct: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


def export(org: Any, user: Any, fmt: str = "jsonl") -> dict[str, Any]:
    from django.test import Client
    from django.urls import reverse

    from apps.audit.models import AuditEvent

    events = AuditEvent.objects.filter(organization=org).order_by("id")
    total = events.count()
    rows_wanted = min(EXPORT_ROWS, total)
    last = events.values_list("created_at", flat=True)[rows_wanted - 1]
    client = Client()
    client.force_login(user)
    url = reverse("org_api:audit-export", kwargs={"org_slug": org.slug, "fmt": fmt})
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(rss_mb())
            time.sleep(0.02)

    before = rss_mb()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t = time.perf_counter()
    response = client.get(url, {"end": last.isoformat()})
    lines = size = 0
    quarter_rss: list[float] = []
    for piece in response.streaming_content:  # type: ignore[attr-defined]  # a FileResponse
        size += len(piece)
        lines += piece.count(b"\n")
        if lines and len(quarter_rss) < 4 and lines >= (len(quarter_rss) + 1) * rows_wanted / 4:
            quarter_rss.append(rss_mb())
    elapsed = time.perf_counter() - t
    stop.set()
    sampler.join()
    return {
        "rows": lines,
        "seconds": elapsed,
        "mb": size / 1e6,
        "rss_before": before,
        "rss_peak": max(samples or [before]),
        "rss_quarters": quarter_rss,
    }


def verify(org_slugs: list[str] | None) -> dict[str, float]:
    from apps.audit.verify import verify_chains
    from apps.organizations.models import Organization

    ids = None
    if org_slugs is not None:
        ids = list(Organization.objects.filter(slug__in=org_slugs).values_list("id", flat=True))
    t = time.perf_counter()
    reports = verify_chains(organization_ids=ids)
    elapsed = time.perf_counter() - t
    total = sum(r.count for r in reports)
    return {
        "events": total,
        "seconds": elapsed,
        "rate": total / elapsed,
        "broken": sum(not r.ok for r in reports),
        "chains": len(reports),
    }


SIM_CALLS = _knob("AUDIT_BENCH_SIM_CALLS", 100_000, 2_000)


def simulation() -> dict[str, float]:
    """Policy simulation: SIM_CALLS recorded calls of one role in their own org
    (seeded once, as valid chain links, by COPY), replayed against proposed rules."""
    import json

    import psycopg
    from django.db.models import Max

    from apps.audit.chain import GENESIS_HASH, chain_key_for, event_hash
    from apps.audit.models import AuditChainHead, AuditEvent
    from apps.broker.results import input_digest
    from apps.connections.models import Connection
    from apps.organizations.models import Organization
    from apps.policies.models import Role
    from apps.policies.services import role_create
    from apps.policies.simulation import role_simulate

    org, _ = Organization.objects.get_or_create(slug="bench-sim", defaults={"name": "Bench sim"})
    conns = [
        Connection.objects.get_or_create(
            organization=org, name=f"sim-{n}", defaults={"provider_key": "github"}
        )[0]
        for n in range(4)
    ]
    role = Role.objects.filter(organization=org, name="sim").first() or role_create(
        organization=org,
        name="sim",
        rules=[
            {"provider_key": "github", "action_pattern": "github.*", "action_class": "read"},
            {
                "provider_key": "github",
                "action_pattern": "github.create_issue",
                "constraints": [{"field": "repo", "op": "one_of", "value": ["web", "api"]}],
            },
            {"kind": "proxy", "provider_key": "github", "connection": conns[0].pk,
             "methods": ["GET"], "path_glob": "/repos/**"},
        ],
    )  # fmt: skip
    rules = list(role.rules.order_by("position").values_list("pk", flat=True))
    have = AuditEvent.objects.filter(organization=org, action__startswith="broker.").count()
    if have < SIM_CALLS:
        rng = random.Random(16)
        key = chain_key_for(org.pk)
        head = AuditChainHead.objects.filter(pk=key).first()
        seq, prev = (head.seq, head.hash) if head else (0, GENESIS_HASH)
        start = datetime.now(UTC) - timedelta(days=29)
        step = timedelta(days=28) / SIM_CALLS
        lines: list[str] = []
        columns = copy_columns()
        for i in range(SIM_CALLS - have):
            conn = conns[rng.randrange(4)]
            roll = rng.random()
            meta: dict[str, object] = {"role_id": role.pk, "surface": "api"}
            action, rule = "broker.execute", None
            if roll < 0.5:
                meta["action"] = rng.choice(["github.list_issues", "github.get_issue"])
                payload: dict[str, object] = {"owner": "acme", "repo": f"r{rng.randrange(50)}"}
                rule = rules[0]
            elif roll < 0.85:
                repo = rng.choice(["web", "api", "ops", "infra"])
                meta["action"] = "github.create_issue"
                payload = {"owner": "acme", "repo": repo, "title": f"issue {i}"}
                rule = rules[1] if repo in ("web", "api") else None
            else:
                action = "broker.proxy"
                meta.update(method="GET", path=f"repos/acme/r{rng.randrange(50)}/issues")
                payload = {"query": "", "body": ""}
                rule = rules[2] if conn is conns[0] else None
            meta["input_sha256"] = input_digest(payload)
            if action == "broker.execute" and rng.random() < 0.7:
                meta["input"] = payload  # the rest as if store_broker_input were off
            if rule is not None:
                meta["rule_id"] = rule
            seq += 1
            created = start + step * i
            values = {
                "chain_key": key, "seq": seq, "prev_hash": prev, "created_at": created,
                "organization_id": org.pk, "actor_type": "worker", "actor_id": "1",
                "actor_label": "sim-worker", "action": action, "target_type": "connection",
                "target_id": str(conn.pk), "target_label": conn.name,
                "outcome": "success" if rule else "denied",
                "decision": "allowed" if rule else "denied", "worker_id": 1, "token_id": "tok",
                "connection_id": conn.pk, "provider": "github", "upstream_status": None,
                "latency_ms": None, "reason": "", "metadata": meta, "ip": None,
                "user_agent": "", "request_id": "",
            }  # fmt: skip
            prev = values["hash"] = event_hash(values)
            values["created_at"] = created.isoformat(timespec="microseconds")
            values["metadata"] = json.dumps(meta, separators=(",", ":"))
            lines.append(copy_line(values, columns))
        with psycopg.connect(DB_URL) as conn_, conn_.cursor() as pg:
            pg.execute("SET TIME ZONE 'UTC'")
            with pg.copy(f"COPY audit_auditevent ({', '.join(columns)}) FROM STDIN") as copy:
                copy.write("\n".join(lines) + "\n")
            pg.execute(
                "INSERT INTO audit_auditchainhead (chain_key, seq, hash) VALUES (%s, %s, %s) "
                "ON CONFLICT (chain_key) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash",
                [key, seq, prev],
            )
            conn_.commit()
        assert AuditEvent.objects.filter(chain_key=key).aggregate(m=Max("seq"))["m"] == seq
    proposed = [
        {"provider_key": "github", "action_pattern": "github.list_issues",
         "connection": conns[0].pk},
        {"provider_key": "github", "action_pattern": "github.create_issue",
         "constraints": [{"field": "repo", "op": "one_of", "value": ["web", "ops"]}]},
        {"kind": "proxy", "provider_key": "github", "connection": conns[1].pk,
         "methods": ["GET"], "path_glob": "/repos/acme/*/issues"},
    ]  # fmt: skip
    t = time.perf_counter()
    result = role_simulate(role=role, rules=proposed, days=30)
    elapsed = time.perf_counter() - t
    return {"seconds": elapsed, **result.as_dict()}


def table_kind() -> str:
    """'r' for the plain audit table, 'p' once it is partitioned (migration 0010)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT relkind FROM pg_class WHERE relname = 'audit_auditevent'")
        return str(cur.fetchone()[0])


def partition_count() -> int:
    from apps.audit.partitions import month_partitions

    return len(month_partitions())


def measure(org: Any, user: Any, slugs: list[str] | None, label: str) -> dict[str, float]:
    """Browse, both exports and audit_verify on the table as it is now; the headline
    figures, for the comparison with and without partitions."""
    out: dict[str, float] = {}
    print(f"\n=== The audit table: {label} ===")
    print(f"\nBrowse /o/{org.slug}/audit/ ({REPEAT} requests each, in-process, goal p95 < 150 ms)")
    print(f"  {'filter':36} {'page p50':>9} {'page p95':>9} {'query p95':>10}  index used")
    for name, p50, p95, q95, plan in browse(org, user):
        flag = "" if p95 < 150 else "  (page over goal)"
        print(f"  {name:36} {p50:9.1f} {p95:9.1f} {q95:10.1f}  {plan}{flag}")
        out[f"browse {name} p95 ms"] = p95

    for fmt, goal in (("jsonl", 60), ("csv", 25)):
        print(f"\n{fmt.upper()} export through the streamed API (goal < {goal} s, flat memory)")
        result = export(org, user, fmt)
        quarters = ", ".join(f"{q:.0f}" for q in result["rss_quarters"])
        # CSV counts records by line ends, so a cell holding a line break counts twice.
        print(
            f"  {result['rows']:,} lines, {result['mb']:.0f} MB in {result['seconds']:.1f} s "
            f"({result['rows'] / result['seconds']:,.0f} lines/s)"
        )
        print(
            f"  RSS before {result['rss_before']:.0f} MB, peak {result['rss_peak']:.0f} MB, "
            f"at 25/50/75/100 %: {quarters} MB"
        )
        out[f"{fmt.upper()} export s"] = result["seconds"]

    print(f"\naudit_verify over {'every chain' if slugs is None else ', '.join(slugs)}")
    with without_statement_timeout():  # audit_verify runs as a management command
        v = verify(slugs)
    print(
        f"  {v['events']:,} events in {v['chains']} chain(s), {v['seconds']:.1f} s = "
        f"{v['rate']:,.0f} events/s, {v['broken']} broken chain(s)"
    )
    out["audit_verify s"] = v["seconds"]
    out["audit_verify events/s"] = v["rate"]
    return out


def print_comparison(figures: dict[str, dict[str, float]], migrated_s: float) -> None:
    with_ = figures["with"]
    without = figures.get("without", {})
    print("\nWithout and with monthly partitions (same data, same machine, one after the other)")
    print(f"  {'figure':44} {'without':>10} {'with':>10}")
    for name, value in with_.items():
        before = f"{without[name]:10.1f}" if name in without else f"{'-':>10}"
        print(f"  {name:44} {before} {value:10.1f}")
    if migrated_s:
        print(f"  {'migration to partitions s':44} {'':>10} {migrated_s:10.1f}")


def main() -> None:
    fresh = create_database()
    import django

    django.setup()
    from django.conf import settings

    # No collectstatic here: plain static URLs instead of the manifest.
    settings.STORAGES["staticfiles"] = {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
    }
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from apps.organizations.models import Organization

    print(f"Audit bench: {EVENTS:,} events, {ORGS} orgs, database {DB_URL}")
    print(f"Load average at the start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if fresh:
        call_command("migrate", verbosity=0)
        # Seed the plain table (as before migration 0010), measure, then partition it:
        # the same rows measured without and with partitions.
        call_command("migrate", "audit", PLAIN_TABLE, verbosity=0)
        with without_statement_timeout():
            figures = seed()
        print(
            f"Seed: COPY {figures['load_s']:.1f} s "
            f"({EVENTS / figures['load_s']:,.0f} events/s incl. hashing), "
            f"indexes + VACUUM ANALYZE {figures['index_s']:.1f} s"
        )
    org = Organization.objects.get(slug="bench-0")
    if fresh:
        with without_statement_timeout():
            seconds = seed_lists(org)
        print(f"Seed: {LIST_WORKERS:,} workers, {LIST_ROLES:,} roles: {seconds:.1f} s")
    else:
        print("Reusing the seeded database (AUDIT_BENCH_REUSE=1).")
    user = get_user_model().objects.get(username="reviewer@bench.test")
    from apps.audit.models import AuditEvent

    print(f"Busiest org {org.slug}: {AuditEvent.objects.filter(organization=org).count():,} events")

    scope = os.environ.get("AUDIT_BENCH_VERIFY", "all")
    slugs = None if scope == "all" else scope.split(",")
    compared: dict[str, dict[str, float]] = {}
    if table_kind() == "r":
        added = later_columns(add=True)
        compared["without"] = measure(org, user, slugs, "plain table")
        later_columns(add=False, names=added)
        t = time.perf_counter()
        with without_statement_timeout():
            call_command("migrate", "audit", verbosity=0)
        migrated_s = time.perf_counter() - t
        print(f"\nMigration to monthly partitions (copies every row, rebuilds the indexes): "
              f"{migrated_s:.1f} s")  # fmt: skip
    else:
        migrated_s = 0.0
        print("\nThe reused database is already partitioned: no figures without partitions.")
    compared["with"] = measure(
        org, user, slugs, f"partitioned by month, {partition_count()} months"
    )
    print_comparison(compared, migrated_s)

    print(
        f"\nDashboard lists in {org.slug} ({LIST_WORKERS:,} workers, {LIST_ROLES:,} roles; "
        f"{REPEAT} requests each, in-process, goal p95 < 150 ms)"
    )
    print(f"  {'page':40} {'p50 ms':>8} {'p95 ms':>8} {'HTML KB':>8}")
    for label, p50, p95, size in lists(org, user):
        flag = "" if p95 < 150 else "  (over goal)"
        print(f"  {label:40} {p50:8.1f} {p95:8.1f} {size / 1024:8.1f}{flag}")

    print(f"\nPolicy simulation: {SIM_CALLS:,} recorded calls of one role (goal < 10 s)")
    sim = simulation()
    print(
        f"  {sim['calls']:,} calls replayed in {sim['seconds']:.1f} s: "
        f"{sim['allowed_to_denied']:,} allowed→denied, {sim['denied_to_allowed']:,} "
        f"denied→allowed, {sim['undetermined']:,} undetermined (no stored input), "
        f"{sim['unchanged']:,} unchanged"
    )
    print(f"\nLoad average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
