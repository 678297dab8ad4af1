"""`make chaos`: faults under a steady agent load on the `make cluster` topology, then
a count of what was lost (docs/operations.md, "Chaos run").

    .venv/bin/python scripts/chaos.py [--phase SECONDS] [--clients N]

Loopback only. The topology is scripts/cluster.py's (HAProxy, two web nodes,
PgBouncer in transaction pooling, Redis, two Celery workers, one beat) on its own
embedded PostgreSQL under var/chaos, which this run may crash. A local recording
upstream plays the SaaS. N clients send writes (`sandbox.create_task`, each with a
unique title) through the load balancer without pause while, one phase at a time:

  baseline            nothing happens
  kill -9 web node    node A's granian and its workers die; restarted after the phase
  kill -9 workers     both Celery workers die while an audit export job runs; restarted
  restart Redis       redis-server is killed and started again (empty: no persistence)
  restart PgBouncer   PgBouncer stops and starts again on its port
  crash PostgreSQL    the postmaster is killed with SIGKILL and started again

Afterwards it checks, over the whole run: no 500 answer; every 2xx the clients saw
has its attempt and its outcome in the audit trail (by the response's X-Request-Id);
no write reached the upstream twice; every 2xx write reached it; every audit chain
verifies; the export job finished. It prints one row per fault (requests, 2xx, 5xx,
503 with Retry-After, lost events, seconds until the first 2xx after the fault) and
exits non-zero if anything was lost or doubled.

The Celery visibility timeout is lowered to 20 s for this run (production: 660 s,
CELERY_VISIBILITY_TIMEOUT), so a task of a killed worker comes back within the run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make `scripts.` importable

from scripts.cluster import BIN, Cluster, free_port, request_json  # noqa: E402 - after the sys.path line
from scripts.run_dev import dev_environment  # noqa: E402 - after the sys.path line


class RecordingSaaS:
    """The upstream: answers every call, counts each task title it is sent."""

    def __init__(self) -> None:
        self.titles: Counter[str] = Counter()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: Any) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                self._answer(200, {"results": []})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                outer.titles[str(body.get("title"))] += 1
                self._answer(201, {"id": sum(outer.titles.values()), **body})

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a Grantry node killed mid-request resets its connection: expected

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@dataclass
class Outcome:
    at: float
    title: str
    status: int
    request_id: str
    retry_after: bool
    code: str = ""  # the error body's code, when there is one


@dataclass
class Load:
    base: str
    token: str
    outcomes: list[Outcome] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def client(self, n: int) -> None:
        sequence = 0
        while not self.stop.is_set():
            sequence += 1
            title = f"chaos-{n}-{sequence}"
            body = json.dumps({"input": {"project_id": 1, "title": title}}).encode()
            request = urllib.request.Request(
                f"{self.base}/api/v1/actions/sandbox.create_task/execute",
                data=body,
                method="POST",
                headers={
                    "Authorization": f"Bearer {self.token}",
                    "Content-Type": "application/json",
                },
            )
            status, request_id, retry_after, code = 0, "", False, ""
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:
                    status, request_id = answer.status, answer.headers.get("X-Request-Id", "")
            except urllib.error.HTTPError as error:
                status = error.code
                request_id = error.headers.get("X-Request-Id", "")
                retry_after = bool(error.headers.get("Retry-After"))
                try:
                    code = str(json.loads(error.read() or b"{}")["error"]["code"])
                except (ValueError, KeyError, TypeError, OSError):
                    code = "(not Grantry's error body)"
            except (OSError, urllib.error.URLError):
                status = 0  # no answer at all (connection refused or reset)
            self.outcomes.append(
                Outcome(time.monotonic(), title, status, request_id, retry_after, code)
            )
            if status != 201 and status != 200:
                time.sleep(0.05)


_SETUP = """
import json
from apps.accounts.services import personal_token_mint
from apps.connections.models import Connection
from apps.dashboard.demo import demo_organization_and_owner
from apps.policies.services import role_create
from apps.workers.services import token_mint, worker_create
org, owner = demo_organization_and_owner(email="demo@grantry.local")
connection = Connection.objects.create(organization=org, provider_key="sandbox",
    name="chaos-saas", auth_type="api_key", api_key="chaos-secret-0123456789")
rules = [{"kind": "action", "provider_key": "sandbox", "action_pattern": "sandbox.create_task",
          "connection": connection.pk}]
role = role_create(organization=org, name="chaos", rules=rules)
worker = worker_create(organization=org, name="chaos", default_role=role)
token, raw = token_mint(worker=worker)
_, personal = personal_token_mint(user=owner, organization=org, name="chaos")
print(json.dumps({"token": raw, "personal": personal, "org": org.slug}))
"""

_CHECK = """
import json, sys
from apps.audit.models import AuditEvent
ids = json.load(sys.stdin)
found = {}
actions = ["broker.execute.attempt", "broker.execute"]
events = AuditEvent.objects.filter(request_id__in=ids, action__in=actions)
for request_id, action in events.values_list("request_id", "action"):
    found.setdefault(request_id, []).append(action)
print(json.dumps(found))
"""


def manage(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [str(BIN / "python"), "manage.py", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"manage.py {args[0]} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def main(argv: list[str]) -> int:  # noqa: C901 - one run, one fault after another
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase", type=float, default=8.0, help="seconds per fault phase")
    parser.add_argument("--clients", type=int, default=4, help="concurrent agent clients")
    args = parser.parse_args(argv)
    from scripts.embedded_postgres import start

    var = Path(os.environ.get("GRANTRY_VAR_DIR") or ROOT / "var").resolve() / "chaos"
    var.mkdir(parents=True, exist_ok=True)
    embedded = start(var, database="postgres")  # the server; the run's database is fresh
    import psycopg

    with psycopg.connect(embedded.url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS chaos WITH (FORCE)")
        conn.execute("CREATE DATABASE chaos")
    embedded = type(embedded)(server=embedded.server, url=embedded.server.get_uri("chaos"))
    saas = RecordingSaaS()
    values = dev_environment(var, str(free_port()), embedded.url)
    values.pop("PROMETHEUS_MULTIPROC_DIR")
    values.update(
        {
            "GRANTRY_VAR_DIR": str(var),
            "GRANTRY_PROVIDER_URLS": f"sandbox={saas.url}",
            "CELERY_VISIBILITY_TIMEOUT": "20",
        }
    )
    env = {**os.environ, **values}
    manage(env, "migrate", "--noinput", "-v", "0")
    manage(env, "seed_demo")
    setup = json.loads(manage(env, "shell", "-c", _SETUP).strip().splitlines()[-1])
    cluster = Cluster(var / "run", embedded.url, free_port(), env=values)
    rows: list[dict[str, Any]] = []
    export_id = None
    load = Load(cluster.base, setup["token"])
    try:
        cluster.start(workers=2, beats=1)
        clients = [
            threading.Thread(target=load.client, args=(n,), daemon=True)
            for n in range(args.clients)
        ]
        for thread in clients:
            thread.start()

        def phase(name: str, fault: Any, repair: Any) -> None:
            began = time.monotonic()
            fault()
            time.sleep(args.phase)
            repaired = time.monotonic()
            repair()
            # Recovery: from the repair to the first 2xx answered after it (60 s at most).
            recovered = None
            while recovered is None and time.monotonic() < repaired + 60:
                time.sleep(0.1)
                recovered = next(
                    (
                        o.at
                        for o in list(load.outcomes)
                        if o.at > repaired and o.status in (200, 201)
                    ),
                    None,
                )
            time.sleep(args.phase / 2)
            rows.append(
                {
                    "fault": name,
                    "began": began,
                    "ended": time.monotonic(),
                    "recovery": None if recovered is None else recovered - repaired,
                }
            )
            print(f"  {name}: done", flush=True)

        def crash_postgres() -> None:
            pid = embedded.pid
            if pid:
                os.kill(pid, signal.SIGKILL)

        def start_postgres() -> None:
            # The dead postmaster's backends leave its shared memory a moment later.
            for _ in range(30):
                try:
                    embedded.server.ensure_postgres_running()
                    return
                except Exception:
                    time.sleep(1)
            raise SystemExit("PostgreSQL did not start again")

        def kill_workers() -> None:
            nonlocal export_id
            status, export = request_json(
                "POST",
                f"{cluster.base}/api/v1/orgs/{setup['org']}/audit/exports/",
                setup["personal"],
                {"format": "jsonl"},
            )
            if status != 201:
                raise SystemExit(f"the export job was not created ({status}): {export}")
            export_id = export["id"]
            time.sleep(0.3)
            cluster.kill("worker1")
            cluster.kill("worker2")

        def restart_workers() -> None:
            cluster.respawn("worker1")
            cluster.respawn("worker2")

        bouncer = cluster.bouncer
        assert bouncer is not None
        print("Chaos run: faults under load", flush=True)
        phase("baseline", lambda: None, lambda: None)
        phase("kill -9 web node A", lambda: cluster.kill("web1"), lambda: cluster.respawn("web1"))
        phase("kill -9 both Celery workers (export running)", kill_workers, restart_workers)
        phase("restart Redis", lambda: cluster.kill("redis"), lambda: cluster.respawn("redis"))
        phase("restart PgBouncer", bouncer.restart, lambda: None)
        phase("crash PostgreSQL (SIGKILL)", crash_postgres, start_postgres)
        load.stop.set()
        for thread in clients:
            thread.join()

        # The export job of a killed worker comes back within the visibility timeout.
        export_status = "unknown"
        deadline = time.monotonic() + 90
        while export_id is not None and time.monotonic() < deadline:
            try:
                status, job = request_json(
                    "GET",
                    f"{cluster.base}/api/v1/orgs/{setup['org']}/audit/exports/{export_id}/",
                    setup["personal"],
                )
                export_status = job["status"] if status == 200 else "unreachable"
            except (OSError, urllib.error.URLError):  # still recovering: ask again
                export_status = "unreachable"
            if export_status in ("done", "failed"):
                break
            time.sleep(1)
        verified = subprocess.run(
            [str(BIN / "python"), "manage.py", "audit_verify"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        load.stop.set()
        cluster.stop()

    outcomes = load.outcomes
    ok = [o for o in outcomes if o.status in (200, 201)]
    found = json.loads(
        manage(env, "shell", "-c", _CHECK, stdin=json.dumps([o.request_id for o in ok]))
        .strip()
        .splitlines()[-1]
    )
    lost = {
        o.request_id
        for o in ok
        if sorted(found.get(o.request_id, []))
        != [
            "broker.execute",
            "broker.execute.attempt",
        ]
    }
    doubled = sorted(title for title, count in saas.titles.items() if count > 1)
    missing_upstream = sorted(o.title for o in ok if saas.titles[o.title] == 0)
    embedded.stop()

    print(
        f"\n{'fault':<46} {'requests':>8} {'2xx':>6} {'5xx':>5} {'503+RA':>7} "
        f"{'no answer':>9} {'lost':>5} {'recovered s':>11}"
    )
    details = []
    for row in rows:
        within = [o for o in outcomes if row["began"] <= o.at < row["ended"]]
        recovery = "none" if row["recovery"] is None else f"{row['recovery']:.1f}"
        others = Counter(
            f"{o.status} {o.code}{'' if o.retry_after or o.status != 503 else ' (no Retry-After)'}"
            for o in within
            if o.status not in (200, 201)
        )
        if others:
            details.append(f"  {row['fault']}: {dict(sorted(others.items()))}")
        print(
            f"{row['fault']:<46} {len(within):>8} "
            f"{sum(o.status in (200, 201) for o in within):>6} "
            f"{sum(o.status >= 500 for o in within):>5} "
            f"{sum(o.status == 503 and o.retry_after for o in within):>7} "
            f"{sum(o.status == 0 for o in within):>9} "
            f"{sum(o.request_id in lost for o in within):>5} {recovery:>11}"
        )
    # 500 is Grantry failing; 502/504 come from HAProxy when a node dies mid-request
    # (reported in the table's 5xx column, not a failure of the run).
    if details:
        print("\nanswers other than 2xx, by status:\n" + "\n".join(details))
    for request_id in sorted(lost):
        print(f"  lost: request {request_id} has only {found.get(request_id, [])}")
    server_errors = Counter(o.status for o in outcomes if o.status == 500)
    bare_503 = sum(o.status == 503 and not o.retry_after for o in outcomes)
    print(
        f"\ntotal {len(outcomes)} requests, {len(ok)} 2xx; lost audit events: {len(lost)}; "
        f"upstream writes twice: {len(doubled)}; 2xx writes missing upstream: "
        f"{len(missing_upstream)}; 500s: {dict(server_errors)}; "
        f"503 without Retry-After: {bare_503}; export job: {export_status}; "
        f"audit chains: {'verified' if verified.returncode == 0 else 'BROKEN'}"
    )
    failed = (
        lost
        or doubled
        or missing_upstream
        or server_errors
        or bare_503
        or verified.returncode
        or export_status != "done"
        or not ok
        or any(row["recovery"] is None for row in rows)
    )
    if failed:
        print("CHAOS RUN FAILED", flush=True)
        if verified.returncode:
            print(verified.stdout[-2000:], verified.stderr[-2000:])
        return 1
    print("CHAOS RUN PASSED: nothing lost, nothing doubled.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
