"""`make cluster`: Grantry's multi-node topology on one machine (docs/operations.md).

    HAProxy :PORT ──┬─ web A :PORT+1 ─┐
                    └─ web B :PORT+2 ─┼─ PgBouncer (transaction pooling) ─ PostgreSQL
    worker 1, worker 2 ───────────────┤
    beat 1 (scheduling), beat 2 (standby, grantry/scheduler_lock.py)
    Redis (a private redis-server): the Celery queue, counters, caches

Each web node is the Procfile's `web` line; the workers and the beats are the
Procfile's `worker` and `beat`. PostgreSQL is the embedded server of `make run`
(its own data under var/cluster), or DATABASE_URL when `--database-url` is given; Redis
is a redis-server started here on a free port. The demo organization is seeded as in
`make run`. Ctrl-C stops everything.

`--smoke` (CI): start it all, check both nodes and the load balancer, make a call
through node A, revoke that token through node B, check node A refuses it, and stop.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make `scripts.` importable

from scripts.pgbouncer import PgBouncer  # noqa: E402 - after the sys.path line
from scripts.run_dev import (  # noqa: E402 - after the sys.path line
    BIN,
    _own_group_and_die_with_parent,
    dev_environment,
    stop_children,
    web_command,
    write_env_file,
)

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, seconds: float, processes: dict[str, subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name, process in processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}")
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(url, timeout=1) as answer,
        ):
            if answer.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 within {seconds:.0f} s")


# What HAProxy itself answers, in Grantry's error body: no node can take the request
# (503, safe to retry), or the node that took it died before answering (502: the call
# may have run, so a write must not be repeated blindly).
_LB_ERRORS = {
    503: (
        "Service Unavailable",
        "Retry-After: 5\r\n",
        "no_node_available",
        "No Grantry node can take the request right now; nothing was done. Try again "
        "after Retry-After seconds.",
    ),
    502: (
        "Bad Gateway",
        "",
        "node_failed",
        "The Grantry node serving this request stopped before it answered; the call may "
        "have run. Check its effect (the audit trail has its attempt) before you repeat "
        "a write.",
    ),
}


def haproxy_errorfile(status: int) -> str:
    reason, extra, code, message = _LB_ERRORS[status]
    body = json.dumps({"error": {"code": code, "message": message, "details": {}}})
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n{extra}"
        f"Cache-Control: no-store\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    )


def haproxy_config(port: int, nodes: list[int], errors: Path) -> str:
    servers = "\n".join(
        f"  server web{n} 127.0.0.1:{node} check inter 1s fall 2 rise 1"
        for n, node in enumerate(nodes, 1)
    )
    files = ""
    for status in _LB_ERRORS:
        (errors / f"{status}.http").write_text(haproxy_errorfile(status))
        files += f"  errorfile {status} {errors / f'{status}.http'}\n"
    return (
        "global\n  maxconn 4096\n"
        "defaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n"
        "  timeout server 60s\n  option forwardfor\n"
        # A connection refused by a dead node is tried on the other (nothing was sent:
        # safe for writes); a request a node took and then lost is not retried.
        "  retries 3\n  option redispatch 1\n  retry-on conn-failure\n"
        f"{files}"
        f"frontend grantry\n  bind 127.0.0.1:{port}\n  default_backend web\n"
        "backend web\n  balance roundrobin\n"
        # Liveness, not readiness: a shared dependency that is down (Redis, PostgreSQL)
        # must not take every node out; the nodes answer 503 with Retry-After for the
        # calls that need it and serve the rest.
        "  option httpchk\n"
        "  http-check send meth GET uri /healthz?checks=0 ver HTTP/1.1 hdr Host localhost\n"
        "  http-check expect status 200\n"
        f"{servers}\n"
    )


@dataclass
class Cluster:
    """The topology's processes. `database_url` is PostgreSQL itself (PgBouncer is put
    in front here); `env` is added to every Django process's environment."""

    workdir: Path
    database_url: str
    port: int
    env: dict[str, str] = field(default_factory=dict)
    nodes: list[int] = field(default_factory=list)
    redis_url: str = ""
    bouncer: PgBouncer | None = None
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    specs: dict[str, tuple[list[str], dict[str, str]]] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def node(self, n: int) -> str:
        return f"http://127.0.0.1:{self.nodes[n]}"

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.specs[name] = (argv, env)
        log = (self.workdir / f"{name}.log").open("ab")
        self.children[name] = subprocess.Popen(  # fixed argv
            argv,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_own_group_and_die_with_parent,
        )

    def start(self, *, workers: int = 2, beats: int = 2) -> Cluster:
        self.workdir.mkdir(parents=True, exist_ok=True)
        parts = urlsplit(self.database_url)
        socket_dir = parse_qs(parts.query).get("host", [""])[0]
        # The embedded server's socket directory is its own account's alone: PgBouncer
        # (which refuses to run as root) runs as that account to reach it.
        owner = pwd.getpwuid(os.stat(socket_dir).st_uid).pw_name if socket_dir else None
        self.bouncer = PgBouncer(
            host=socket_dir or parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=parts.username or "postgres",
            run_as=owner,
        ).start()
        redis_port = free_port()
        self._spawn(
            "redis",
            [
                *(REDIS_SERVER, "--port", str(redis_port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.workdir)),
            ],
            dict(os.environ),
        )
        self.redis_url = f"redis://127.0.0.1:{redis_port}/0"
        self.nodes = [free_port(), free_port()]
        env = {
            **os.environ,
            **self.env,
            "DATABASE_URL": self.bouncer.url(self.database_url),
            "REDIS_URL": self.redis_url,
            "CELERY_BROKER_URL": self.redis_url,
            "GRANTRY_BASE_URL": self.base,
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        for n, node in enumerate(self.nodes, 1):
            self._spawn(f"web{n}", web_command(str(node)), {**env, "WEB_CONCURRENCY": "1"})
        celery = str(BIN / "celery")
        for n in range(1, workers + 1):
            argv = [celery, "-A", "grantry", "worker", "--loglevel", "INFO", "-n", f"w{n}@%h"]
            self._spawn(f"worker{n}", [*argv, "--concurrency", "2"], env)
        for n in range(1, beats + 1):
            schedule = str(self.workdir / f"beat{n}-schedule")
            self._spawn(
                f"beat{n}",
                [celery, "-A", "grantry", "beat", "--loglevel", "INFO", "-s", schedule],
                env,
            )
        config = self.workdir / "haproxy.cfg"
        config.write_text(haproxy_config(self.port, self.nodes, self.workdir))
        self._spawn("haproxy", [HAPROXY, "-f", str(config), "-db"], env)
        for n in range(len(self.nodes)):
            wait_http(f"{self.node(n)}/healthz", 120, self.children)
        wait_http(f"{self.base}/healthz", 30, self.children)
        return self

    def kill(self, name: str) -> None:
        """SIGKILL a process and everything it started (granian's workers too)."""
        child = self.children[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()

    def respawn(self, name: str) -> None:
        """Start a killed process again as it was started."""
        argv, env = self.specs[name]
        self._spawn(name, argv, env)

    def stop(self) -> None:
        stop_children(self.children, [False])
        if self.bouncer is not None:
            self.bouncer.stop()


def request_json(method: str, url: str, token: str, body: Any = None) -> tuple[int, Any]:
    """(status, JSON body) of one bearer-token call; an HTTP error is an answer too."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


# A worker allowed one Sandbox read in the demo organization, a token for it, and the
# owner's personal token to revoke it with (printed: worker token, personal token, path).
_SMOKE_SETUP = """
from apps.accounts.services import personal_token_mint
from apps.dashboard.demo import demo_organization_and_owner
from apps.policies.services import role_create
from apps.workers.services import token_mint, worker_create
import secrets
org, owner = demo_organization_and_owner(email="demo@grantry.local")
name = "cluster-smoke-" + secrets.token_hex(3)
rules = [{"kind": "action", "provider_key": "sandbox", "action_pattern": "sandbox.list_projects"}]
role = role_create(organization=org, name=name, rules=rules)
worker = worker_create(organization=org, name=name, default_role=role)
token, raw = token_mint(worker=worker)
_, personal = personal_token_mint(user=owner, organization=org, name=name)
path = f"/api/v1/orgs/{org.slug}/workers/{worker.pk}/tokens/{token.public_id}/revoke/"
print(raw, personal, path)
"""


def smoke(cluster: Cluster, env: dict[str, str]) -> None:
    """A call through node A, the token revoked through node B, refused on A."""
    minted = subprocess.run(
        [str(BIN / "python"), "manage.py", "shell", "-c", _SMOKE_SETUP],
        cwd=ROOT,
        env={**env, "DATABASE_URL": cluster.database_url},
        capture_output=True,
        text=True,
        check=True,
    )
    worker_token, personal_token, path = minted.stdout.strip().splitlines()[-1].split()
    status, _ = request_json(
        "POST",
        f"{cluster.node(0)}/api/v1/actions/sandbox.list_projects/execute",
        worker_token,
        {"input": {}},
    )
    print(f"  call through node A: {status}")
    if status != 200:
        raise SystemExit("smoke: the call through node A failed")
    status, _ = request_json("POST", f"{cluster.node(1)}{path}", personal_token)
    print(f"  revoke through node B: {status}")
    if status not in (200, 204):
        raise SystemExit("smoke: the revoke through node B failed")
    status, _ = request_json(
        "POST",
        f"{cluster.node(0)}/api/v1/actions/sandbox.list_projects/execute",
        worker_token,
        {"input": {}},
    )
    print(f"  the same token through node A after the revoke: {status}")
    if status != 401:
        raise SystemExit("smoke: node A accepted a token revoked through node B")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="start, check, stop (CI)")
    parser.add_argument("--database-url", help="PostgreSQL to use instead of the embedded one")
    args = parser.parse_args(argv)
    port = int(os.environ.get("PORT", "8000"))
    var = Path(os.environ.get("GRANTRY_VAR_DIR") or ROOT / "var").resolve() / "cluster"
    var.mkdir(parents=True, exist_ok=True)
    embedded = None
    if args.database_url:
        database_url = args.database_url
    else:
        from scripts.embedded_postgres import start

        embedded = start(var)
        database_url = embedded.url
    values = dev_environment(var, str(port), database_url)
    values["GRANTRY_VAR_DIR"] = str(var)
    values.pop("PROMETHEUS_MULTIPROC_DIR")  # one directory per host: here, one per process
    write_env_file(var / "dev.env", values)
    env = {**os.environ, **values}
    for command in (["migrate", "--noinput", "-v", "0"], ["seed_demo"]):
        if subprocess.run(
            [str(BIN / "python"), "manage.py", *command], cwd=ROOT, env=env
        ).returncode:
            return 1
    cluster = Cluster(var / "run", database_url, port, env=values)
    stopping = [False]
    signal.signal(signal.SIGINT, lambda *_: stopping.__setitem__(0, True))
    signal.signal(signal.SIGTERM, lambda *_: stopping.__setitem__(0, True))
    try:
        cluster.start()
        print(
            f"\n  Grantry's cluster is running at {cluster.base}/ (HAProxy)\n"
            f"  web A {cluster.node(0)}  web B {cluster.node(1)}\n"
            f"  PgBouncer 127.0.0.1:{cluster.bouncer.port if cluster.bouncer else '?'} "
            f"(transaction pooling), Redis {cluster.redis_url}\n"
            f"  2 workers, 2 beats (one scheduling, one standing by); logs in {cluster.workdir}\n"
            "  Demo login: demo@grantry.local / grantry-demo-password\n",
            flush=True,
        )
        if args.smoke:
            smoke(cluster, env)
            print("cluster smoke: passed", flush=True)
            return 0
        while not stopping[0]:
            for name, child in cluster.children.items():
                if child.poll() is not None and not stopping[0]:
                    print(f"{name} exited with {child.returncode}; stopping the rest.", flush=True)
                    stopping[0] = True
            time.sleep(0.5)
        return 0
    finally:
        cluster.stop()
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
