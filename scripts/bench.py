"""`make bench`: the broker's overhead against a fast local upstream, in one run.

What it starts (and stops again), all on 127.0.0.1:
* nginx (Debian's nginx-light) answering fixed JSON: the "SaaS". If nginx is
  missing it is installed with apt when running as root; otherwise a Python
  upstream stands in and the output says so.
* PostgreSQL-backed granian started from the Procfile's `web:` line (same
  workers and threads, access log off), DEBUG off.
It seeds an organization, a connection to the upstream (the Sandbox provider
with its base URL overridden), a role allowing one read action, a worker and
a token, then measures p50/p99 latency and requests/s for

  (a) the upstream called directly,
  (b) a bare Django view of the same deployment (/healthz?checks=0),
  (m) the anchor: a minimal sync DRF broker with no Grantry code (token SELECT by
      digest, durable INSERT, upstream GET with urllib3, INSERT with async commit;
      scripts/bench_site/anchor.py), served by the same server,
  (c) a brokered execute of a built-in action (sandbox.list_projects),
  (d) a brokered execute of a custom provider's action (same upstream),

  (g) an upstream MCP server called directly: tools/call `echo` of
      @modelcontextprotocol/server-everything over Streamable HTTP (var/mcp-servers,
      `make mcp-servers`; a session opened first, as a client would),
  (h) the same tools/call forwarded by Grantry's /mcp (`bench__echo`): decided by an
      MCP rule, pinned, audited, the credential added, sent through the gateway's
      SDK session,

at concurrency 1 and 16, with wrk (Debian package, installed when root and
missing) or a bounded Python load generator, and prints the issue's goals: c's
web CPU per call ≤ 1.3 × m's; c's req/s at 16 ≥ 75 % of m's; c − a at p50 ≤
1.3 × (m − a). Then, against an upstream that answers in 100 ms, at concurrency
64, each on a web server of its own (BENCH_SLOW_THREADS threads per process, default
32; the first server is stopped, so only the server under test is connected to the
bench database): (e) a brokered execute (goals: ≥ 80 % of 64 / 0.1 s, and ≥ 80 % of
(n)), (n) the anchor m, and (p) (e) again with every web connection through a real
PgBouncer in transaction mode (scripts/pgbouncer.py, BENCH_PGBOUNCER_POOL server
connections, default 8; skipped when pgbouncer is not installed). For each it
prints the peak number of PostgreSQL connections, sampled from pg_stat_activity
every 5 ms. Last, the audit appends per second to one organization from 1 and from
32 connections. For the MCP gateway it
prints Grantry's added latency (h − g at p50) and its web CPU per forwarded call.

Every measurement is repeated BENCH_ROUNDS times, the rounds interleaved (a, b,
c, then again), and the run with the median requests/s is reported with the
range seen: at concurrency 16 the figure depends on how the load generator's
connections happen to spread over the web processes (one process holding
most of them is GIL-bound on one core), so a single run can be off by 2-3x.

`make bench-smoke` (BENCH_SMOKE=1, what .ci/run runs) is this same script end to end
with tiny numbers: 1 s per run, one round, its own database (grantry_bench_smoke),
no Debian package installed (nginx and wrk if present, else the Python stand-ins),
and it fails if any brokered request failed. It proves the script works, not speed.

Environment: BENCH_SECONDS (per run, default 5), BENCH_ROUNDS (default 3),
BENCH_KEEP_DB=1 (keep the bench database; by default it is dropped and created
again, so every run starts with an empty audit table), BENCH_DATABASE_URL (default
postgres://postgres@127.0.0.1:5432/grantry_bench), WEB_CONCURRENCY and
WEB_THREADS (web processes and threads, defaults from the Procfile: 2 and 32).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.pgbouncer import BINARY as PGBOUNCER_BINARY
from scripts.pgbouncer import PgBouncer

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SMOKE = os.environ.get("BENCH_SMOKE") == "1"
SECONDS = float(os.environ.get("BENCH_SECONDS", "1" if SMOKE else "5"))
ROUNDS = max(1, int(os.environ.get("BENCH_ROUNDS", "1" if SMOKE else "3")))
# Installing nginx or wrk with apt is for a real measurement, not for a smoke run.
INSTALL = os.environ.get("BENCH_INSTALL", "0" if SMOKE else "1") == "1"
CONCURRENCIES = (1, 16)
ACTION = "sandbox.list_projects"
CUSTOM_ACTION = "custom-bench.list_projects"
SLOW_CONCURRENCY = int(os.environ.get("BENCH_SLOW_CONCURRENCY", "8" if SMOKE else "64"))
UPSTREAM_BODY = '{"results":[{"id":1,"name":"Bench","description":"fixed"}]}'
MCP_SERVER = ROOT / "var/mcp-servers/node_modules/@modelcontextprotocol/server-everything"
MCP_CALL = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}


# --- small helpers -------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # loopback
                if response.status < 500:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up within {timeout:.0f}s")


def apt_install(package: str) -> bool:
    """Install a Debian package when running as root; False when that is not possible
    (or not wanted: BENCH_INSTALL=0, the smoke run's default)."""
    if not INSTALL or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    log(f"installing Debian package {package} …")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    if subprocess.call(["apt-get", "install", "-y", "-q", package], **quiet) != 0:
        subprocess.call(["apt-get", "update", "-q"], **quiet)
        if subprocess.call(["apt-get", "install", "-y", "-q", package], **quiet) != 0:
            return False
    return True


# --- the upstream ----------------------------------------------------------------------


def nginx_binary() -> str | None:
    for candidate in ("/usr/sbin/nginx", shutil.which("nginx")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    if apt_install("nginx-light"):
        return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None
    return None


def start_upstream(workdir: Path) -> tuple[subprocess.Popen[bytes], int, str]:
    port = free_port()
    nginx = nginx_binary()
    if nginx:
        conf = workdir / "nginx.conf"
        conf.write_text(
            f"""
worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type application/json;
            return 200 '{UPSTREAM_BODY}';
        }}
    }}
}}
"""
        )
        proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(workdir)])
        kind = "nginx (Debian nginx-light)"
    else:
        log("nginx is not available and cannot be installed: using a Python upstream")
        code = (
            "import http.server,sys\n"
            "class H(http.server.BaseHTTPRequestHandler):\n"
            "    protocol_version='HTTP/1.1'\n"
            f"    body={UPSTREAM_BODY!r}.encode()\n"
            "    def do_GET(self):\n"
            "        self.send_response(200);self.send_header('Content-Type','application/json')\n"
            "        self.send_header('Content-Length',str(len(self.body)));self.end_headers()\n"
            "        self.wfile.write(self.body)\n"
            "    def log_message(self,*a): pass\n"
            "http.server.ThreadingHTTPServer(('127.0.0.1',int(sys.argv[1])),H).serve_forever()\n"
        )
        proc = subprocess.Popen([PYTHON, "-c", code, str(port)])
        kind = "Python http.server (nginx unavailable)"
    wait_http(f"http://127.0.0.1:{port}/")
    return proc, port, kind


# --- the deployment --------------------------------------------------------------------


def ensure_services() -> None:
    """Start PostgreSQL and Redis the way .ci/run does when they are not running."""
    if (
        shutil.which("pg_isready")
        and subprocess.call(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"]) != 0
    ):
        clusters = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
        if clusters:
            log("starting PostgreSQL …")
            subprocess.call(
                ["pg_ctlcluster", "--skip-systemctl-redirect", clusters[0], "main", "start"]
            )
            for _ in range(30):
                if subprocess.call(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"]) == 0:
                    break
                time.sleep(1)
    if not redis_url() and shutil.which("redis-server"):
        log("starting Redis …")
        subprocess.call(
            [
                "redis-server",
                "--daemonize",
                "yes",
                "--bind",
                "127.0.0.1",
                "--port",
                "6379",
                "--save",
                "",
                "--appendonly",
                "no",
            ]
        )
        time.sleep(1)


def redis_url() -> str:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            if sock.recv(16).startswith(b"+PONG"):
                return url
    except OSError:
        pass
    return ""


def ensure_database(url: str) -> None:
    import psycopg

    match = re.match(r"^postgres(?:ql)?://[^/]*/(?P<name>[A-Za-z0-9_]+)$", url)
    if not match:
        return
    admin_url = url[: match.start("name")] + "postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if os.environ.get("BENCH_KEEP_DB") != "1":
            # Every run starts from an empty database: the audit table grows by ~10k
            # events per run and, past the server's buffers, skews the next run.
            conn.execute(f'DROP DATABASE IF EXISTS "{match["name"]}" WITH (FORCE)')
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (match["name"],)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{match["name"]}"')


def django_env(upstream_port: int) -> dict[str, str]:
    database = os.environ.get(
        "BENCH_DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/grantry_bench" + ("_smoke" if SMOKE else ""),
    )
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench_site.settings",
        "BENCH_ANCHOR_UPSTREAM": f"http://127.0.0.1:{upstream_port}/projects",
        "BENCH_UPSTREAM_URL": f"http://127.0.0.1:{upstream_port}",
        "DEBUG": "0",
        "SECRET_KEY": "bench-secret-key-not-for-production",
        "GRANTRY_ENCRYPTION_KEY": "bench-encryption-key-not-for-production",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": database,
        "REDIS_URL": redis_url(),
        "CACHE_KEY_PREFIX": "grantry-bench",
        "GRANTRY_EGRESS_ALLOW_LOOPBACK": "1",
        "GRANTRY_SANDBOX_ENABLED": "1",
        "GRANTRY_PROVIDER_URLS": f"sandbox=http://127.0.0.1:{upstream_port}",
        "SECURE_SSL_REDIRECT": "0",
        "LOG_LEVEL": "WARNING",
        "PATH": f"{Path(PYTHON).parent}:{os.environ.get('PATH', '')}",
        "PYTHONPATH": f"{ROOT}:{ROOT / 'scripts'}",
    }


def seed() -> None:
    """Runs inside Django (`bench.py --seed`): prints the token and connection as JSON."""
    import django

    django.setup()
    from django.db import connection as db

    from apps.connections.models import Connection, ConnectionStatus
    from apps.organizations.models import Organization
    from apps.policies.services import role_create
    from apps.providers.models import CustomProvider
    from apps.providers.services import custom_action_create, custom_provider_create
    from apps.workers.services import token_mint, worker_create

    with db.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS bench_anchor_event (id bigserial PRIMARY KEY, "
            "token_id bigint NOT NULL, kind text NOT NULL, at timestamptz DEFAULT now())"
        )
    stamp = str(int(time.time()))
    org, _ = Organization.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
    from django.contrib.auth import get_user_model

    admin, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"email": "bench@grantry.local"}
    )
    custom = CustomProvider.objects.filter(organization=org, slug="bench").first()
    if custom is None:
        custom = custom_provider_create(
            organization=org,
            actor=admin,
            slug="bench",
            display_name="Bench custom",
            auth_type="api_key",
            api_base_url=os.environ["BENCH_UPSTREAM_URL"],
        )
        custom_action_create(
            provider=custom,
            actor=admin,
            name="list_projects",
            description="List the bench projects.",
            action_class="read",
            method="GET",
            path="/projects",
            input_schema={"type": "object", "properties": {}, "additionalProperties": False},
        )
    Connection.objects.update_or_create(
        organization=org,
        name="bench-custom",
        defaults={
            "provider_key": "custom-bench",
            "auth_type": "api_key",
            "api_key": "bench_custom_credential",
            "status": ConnectionStatus.ACTIVE,
        },
    )
    connection, _ = Connection.objects.update_or_create(
        organization=org,
        name="bench-upstream",
        defaults={
            "provider_key": "sandbox",
            "auth_type": "api_key",
            "api_key": "sbx_bench_upstream_credential",
            "status": ConnectionStatus.ACTIVE,
        },
    )
    rules: list[dict[str, object]] = [
        {
            "kind": "action",
            "provider_key": "sandbox",
            "action_pattern": ACTION,
            "connection": connection.pk,
        },
        {"kind": "action", "provider_key": "custom-bench", "action_pattern": CUSTOM_ACTION},
    ]
    if os.environ.get("BENCH_MCP_URL"):
        rules.append(seed_mcp(org, os.environ["BENCH_MCP_URL"]))
    role = role_create(organization=org, name=f"bench-{stamp}", rules=rules)
    worker = worker_create(organization=org, name=f"bench-{stamp}", default_role=role)
    _, raw = token_mint(worker=worker, expires_in_days=1)
    print(json.dumps({"token": raw, "connection": connection.name}))


def seed_mcp(org: Any, url: str) -> dict[str, object]:
    """An MCP connection to the bench's server-everything with `echo` approved; the
    rule that allows it."""
    from apps.connections.gateway.services import HttpServer, mcp_connection_create
    from apps.connections.gateway.tools import mcp_tool_approve
    from apps.connections.mcp_models import McpTool
    from apps.connections.models import Connection

    Connection.objects.filter(organization=org, name="bench").delete()
    mcp, _ = mcp_connection_create(
        organization=org,
        name="bench",
        server=HttpServer(url=url, auth="api_key", secret="bench-mcp-credential"),
    )
    echo = McpTool.objects.get(connection=mcp, name="echo")
    mcp_tool_approve(
        tool_id=echo.pk, organization_id=mcp.organization_id, digest=echo.digest, actor=None
    )
    return {"kind": "mcp", "connection": mcp.pk, "action_pattern": "echo"}


def start_mcp_upstream() -> tuple[subprocess.Popen[bytes], int] | None:
    """server-everything over Streamable HTTP, started with node (None when
    var/mcp-servers is not installed: the MCP rows are then left out)."""
    node = shutil.which("node")
    script = MCP_SERVER / "dist/index.js"
    if node is None or not script.exists():
        log("MCP scenarios left out: run `make mcp-servers` (and have node) to include them")
        return None
    port = free_port()
    process = subprocess.Popen(
        [node, str(script), "streamableHttp"],
        env={"PATH": os.environ.get("PATH", ""), "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return process, port
        time.sleep(0.05)
    process.kill()
    raise SystemExit("the MCP server did not start")


def mcp_session(url: str) -> dict[str, str]:
    """Open a session the way an MCP client does: the headers a direct tools/call needs."""
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-11-25",
    }
    initialize = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "bench", "version": "1"},
        },
    }
    request = urllib.request.Request(url, json.dumps(initialize).encode(), headers)
    with urllib.request.urlopen(request, timeout=10) as response:  # loopback
        session = response.headers["Mcp-Session-Id"]
        response.read()
    headers["Mcp-Session-Id"] = session
    done = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    with urllib.request.urlopen(  # loopback
        urllib.request.Request(url, json.dumps(done).encode(), headers), timeout=10
    ) as response:
        response.read()
    return headers


def web_command(port: int) -> str:
    """The Procfile's web line, bound to loopback."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            command = line.split(":", 1)[1].strip()
            public = "--host 0.0.0.0 --port $PORT"
            command = command.replace(public, f"--host 127.0.0.1 --port {port}")
            return command.replace("--access-log ", "--no-access-log ")
    raise SystemExit("Procfile has no web: line")


# --- load generation -------------------------------------------------------------------


@dataclass
class Run:
    name: str
    concurrency: int
    p50_ms: float
    p99_ms: float
    rps: float
    errors: int
    cpu_ms: float | None = None  # web server CPU per request (load-independent-ish)
    peak_connections: int | None = None  # PostgreSQL sessions, sampled during the run
    rps_range: tuple[float, float] | None = None  # lowest and highest over the rounds


def process_tree_cpu_seconds(root_pid: int) -> float:
    """utime + stime of a process and its children (Linux /proc), in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = int(fields[11]) + int(fields[12])
    tree = {root_pid}
    changed = True
    while changed:
        changed = False
        for pid, ppid in parents.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                changed = True
    return sum(times.get(pid, 0) for pid in tree) / ticks


def wrk_binary() -> str | None:
    found = shutil.which("wrk")
    if found:
        return found
    if apt_install("wrk"):
        return shutil.which("wrk")
    return None


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s)", text)
    if not match:
        raise ValueError(text)
    return float(match[1]) * _UNITS[match[2]]


def run_wrk(
    wrk: str,
    workdir: Path,
    name: str,
    url: str,
    concurrency: int,
    headers: dict[str, str],
    body: str | None,
) -> Run:
    script = workdir / f"{name}.lua"
    lines = []
    if body is not None:
        lines.append('wrk.method = "POST"')
        lines.append(f"wrk.body = {json.dumps(body)}")
    for key, value in headers.items():
        lines.append(f'wrk.headers["{key}"] = "{value}"')
    script.write_text("\n".join(lines) + "\n")
    threads = min(concurrency, 2)
    command = [
        wrk,
        f"-t{threads}",
        f"-c{concurrency}",
        f"-d{SECONDS:g}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M)[1])  # type: ignore[index]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M)[1])  # type: ignore[index]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])  # type: ignore[index]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    errors = int(non2xx[1]) if non2xx else 0
    if socket_errors:
        errors += sum(int(n) for n in re.findall(r"\d+", socket_errors[1]))
    return Run(name, concurrency, p50, p99, rps, errors)


def _python_worker(
    args: tuple[str, int, str, dict[str, str], str | None, float],
) -> tuple[list[float], int]:
    import http.client

    host, port, path, headers, body, seconds = args
    conn = http.client.HTTPConnection(host, port, timeout=10)
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and len(latencies) < 1_000_000:
        started = time.perf_counter()
        conn.request("POST" if body is not None else "GET", path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status >= 400:
            errors += 1
    conn.close()
    return latencies, errors


def run_python(
    name: str, url: str, concurrency: int, headers: dict[str, str], body: str | None
) -> Run:
    from multiprocessing import Pool
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    job = (parts.hostname or "127.0.0.1", parts.port or 80, path, headers, body, SECONDS)
    with Pool(concurrency) as pool:
        results = pool.map(_python_worker, [job] * concurrency)
    latencies = sorted(v for lat, _ in results for v in lat)
    errors = sum(e for _, e in results)

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))]

    return Run(name, concurrency, pct(0.50), pct(0.99), len(latencies) / SECONDS, errors)


# --- main ------------------------------------------------------------------------------


def measure(
    web_pid: int,
    wrk: str | None,
    workdir: Path,
    name: str,
    url: str,
    concurrency: int,
    headers: dict[str, str],
    payload: str | None,
) -> Run:
    """One warmed-up run of one scenario, with the web server's CPU per request."""
    global SECONDS
    if wrk:
        saved, SECONDS = SECONDS, min(1.0, SECONDS)  # warm up: pools, caches, imports
        try:
            run_wrk(wrk, workdir, "warm", url, concurrency, headers, payload)
        finally:
            SECONDS = saved
        cpu_before = process_tree_cpu_seconds(web_pid)
        run = run_wrk(wrk, workdir, name[0], url, concurrency, headers, payload)
    else:
        cpu_before = process_tree_cpu_seconds(web_pid)
        run = run_python(name, url, concurrency, headers, payload)
    if not name.startswith(("a", "g")) and run.rps:  # not served by Grantry's web server
        spent = process_tree_cpu_seconds(web_pid) - cpu_before
        run.cpu_ms = spent * 1000 / (run.rps * SECONDS)
    run.name = name
    return run


# --- (e): a slow upstream, the connections it takes, PgBouncer ------------------------

SLOW_THREADS = os.environ.get("BENCH_SLOW_THREADS", "32")
PGBOUNCER_POOL = int(os.environ.get("BENCH_PGBOUNCER_POOL", "8"))


@dataclass
class Web:
    process: subprocess.Popen[bytes]
    base: str


def start_web(env: dict[str, str]) -> Web:
    """The Procfile's web line on a free port, with this environment."""
    port = free_port()
    process = subprocess.Popen(
        ["bash", "-c", f"exec {web_command(port)}"],
        cwd=ROOT,
        env={**env, "PORT": str(port)},
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/healthz?checks=0")
    return Web(process, base)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def connections_sampler(database_url: str, stop: threading.Event, peaks: list[int]) -> None:
    """Every few ms: how many PostgreSQL sessions the bench database has (this one not
    counted). Only the server under test is connected to it while this runs."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        while not stop.is_set():
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
            peaks.append(int(row[0]) if row else 0)
            time.sleep(0.005)


def measure_with_connections(
    web: Web,
    wrk: str | None,
    workdir: Path,
    name: str,
    path: str,
    headers: dict[str, str],
    payload: str | None,
    database_url: str,
) -> tuple[Run, int]:
    """One (e)-style run at SLOW_CONCURRENCY and the peak PostgreSQL connections."""
    stop = threading.Event()
    peaks: list[int] = []
    sampler = threading.Thread(target=connections_sampler, args=(database_url, stop, peaks))
    sampler.start()
    try:
        run = measure(
            web.process.pid,
            wrk,
            workdir,
            name,
            web.base + path,
            SLOW_CONCURRENCY,
            headers,
            payload,
        )
    finally:
        stop.set()
        sampler.join()
    return run, max(peaks, default=0)


def slow_runs(
    env: dict[str, str],
    wrk: str | None,
    workdir: Path,
    auth: dict[str, str],
    body: str,
    processes: list[subprocess.Popen[bytes]],
) -> list[Run]:
    """(e) and (n) against a 100 ms upstream, then (p): (e) through PgBouncer; each on a
    server of its own, with the peak PostgreSQL connections."""
    runs: list[Run] = []
    slow_port = free_port()
    slow = subprocess.Popen([PYTHON, __file__, "--slow-upstream", str(slow_port)])
    processes.append(slow)
    wait_http(f"http://127.0.0.1:{slow_port}/projects")
    slow_env = {
        **env,
        "GRANTRY_PROVIDER_URLS": f"sandbox=http://127.0.0.1:{slow_port}",
        "BENCH_ANCHOR_UPSTREAM": f"http://127.0.0.1:{slow_port}/projects",
        "WEB_THREADS": SLOW_THREADS,
    }
    slow_scenarios = [
        ("e execute, 100 ms upstream", f"/api/v1/actions/{ACTION}/execute", body),
        ("n minimal DRF, 100 ms upstream", "/bench/anchor/", "{}"),
    ]
    for name, path, payload in slow_scenarios:
        slow_web = start_web(slow_env)
        processes.append(slow_web.process)
        run, peak = measure_with_connections(
            slow_web, wrk, workdir, name, path, auth, payload, env["DATABASE_URL"]
        )
        run.peak_connections = peak
        log(f"{run.name}: c={SLOW_CONCURRENCY} {run.rps:.0f} req/s, peak PG connections {peak}")
        runs.append(run)
        stop_process(slow_web.process)
    # (p) The same (e) with every web connection through PgBouncer in transaction
    # mode (scripts/pgbouncer.py; Django's pool off: PgBouncer is the pool).
    if Path(PGBOUNCER_BINARY).exists():
        with PgBouncer(pool_size=PGBOUNCER_POOL) as bouncer:
            pooled_env = {
                **slow_env,
                "DATABASE_URL": bouncer.url(env["DATABASE_URL"]),
                "DB_POOL_MAX_SIZE": "0",
                "CONN_MAX_AGE": "60",
            }
            slow_web = start_web(pooled_env)
            processes.append(slow_web.process)
            run, peak = measure_with_connections(
                slow_web,
                wrk,
                workdir,
                "p execute via PgBouncer, 100 ms",
                f"/api/v1/actions/{ACTION}/execute",
                auth,
                body,
                env["DATABASE_URL"],
            )
            run.peak_connections = peak
            log(f"{run.name}: {run.rps:.0f} req/s, peak PG connections {peak}")
            runs.append(run)
            stop_process(slow_web.process)
    else:
        log("pgbouncer is not installed (make pgbouncer): no run through PgBouncer")
    return runs


def median_run(runs: list[Run]) -> Run:
    """The run with the median requests/s, carrying the range over all runs."""
    ordered = sorted(runs, key=lambda r: r.rps)
    chosen = ordered[(len(ordered) - 1) // 2]
    chosen.rps_range = (ordered[0].rps, ordered[-1].rps)
    chosen.errors = sum(r.errors for r in runs)
    return chosen


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="grantry-bench-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        upstream, upstream_port, upstream_kind = start_upstream(workdir)
        processes.append(upstream)
        ensure_services()
        env = django_env(upstream_port)
        mcp_upstream = start_mcp_upstream()
        mcp_url = ""
        if mcp_upstream is not None:
            processes.append(mcp_upstream[0])
            mcp_url = f"http://127.0.0.1:{mcp_upstream[1]}/mcp"
            env["BENCH_MCP_URL"] = mcp_url
        ensure_database(env["DATABASE_URL"])
        log("migrating the bench database …")
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
        )
        seeded = json.loads(
            subprocess.run(
                [PYTHON, __file__, "--seed"],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        web_port = free_port()
        command = web_command(web_port)
        log(f"starting: {command}")
        web = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=ROOT,
            env={**env, "PORT": str(web_port)},
            start_new_session=True,
        )
        processes.append(web)
        base = f"http://127.0.0.1:{web_port}"
        wait_http(f"{base}/healthz?checks=0")

        auth = {"Authorization": f"Bearer {seeded['token']}", "Content-Type": "application/json"}
        body = json.dumps({"connection": seeded["connection"], "input": {}})
        check = urllib.request.Request(  # loopback
            f"{base}/api/v1/actions/{ACTION}/execute", data=body.encode(), headers=auth
        )
        with urllib.request.urlopen(check, timeout=10) as response:
            answer = json.loads(response.read())
        if answer.get("status") != 200 or answer["body"] != json.loads(UPSTREAM_BODY):
            raise SystemExit(f"brokered call did not return the upstream body: {answer}")

        custom_body = json.dumps({"input": {}})
        scenarios = [
            ("a upstream direct", f"http://127.0.0.1:{upstream_port}/projects", {}, None),
            ("b django /healthz?checks=0", f"{base}/healthz?checks=0", {}, None),
            ("m minimal DRF broker", f"{base}/bench/anchor/", auth, "{}"),
            ("c brokered execute", f"{base}/api/v1/actions/{ACTION}/execute", auth, body),
            (
                "d custom-provider execute",
                f"{base}/api/v1/actions/{CUSTOM_ACTION}/execute",
                auth,
                custom_body,
            ),
        ]
        scenarios += mcp_scenarios(mcp_url, base, auth)
        wrk = wrk_binary()
        generator = "wrk (Debian)" if wrk else "Python load generator (wrk unavailable)"
        log(
            f"upstream: {upstream_kind}; load: {generator}; {SECONDS:g}s per run; {ROUNDS} round(s)"
        )
        rounds: dict[tuple[str, int], list[Run]] = {}
        for round_no in range(1, ROUNDS + 1):
            for name, url, headers, payload in scenarios:
                for concurrency in CONCURRENCIES:
                    run = measure(web.pid, wrk, workdir, name, url, concurrency, headers, payload)
                    rounds.setdefault((name, concurrency), []).append(run)
                    log(
                        f"round {round_no}: {name:28} c={concurrency:<3} p50 {run.p50_ms:7.2f} ms"
                        f"  p99 {run.p99_ms:7.2f} ms  {run.rps:9.0f} req/s  errors {run.errors}"
                    )
        runs = [median_run(found) for found in rounds.values()]

        # (e) A SaaS that takes 100 ms: the web server must not be the limit, and the
        # number of PostgreSQL connections must not follow the calls waiting on it. The
        # first server is stopped, so every connection to the bench database counted
        # from here on is the slow server's.
        stop_process(web)
        runs += slow_runs(env, wrk, workdir, auth, body, processes)
        appends = subprocess.run(
            [PYTHON, __file__, "--appends"],
            cwd=ROOT,
            # N writers are N connections of their own, not N threads sharing a pool.
            env={**env, "DB_POOL_MAX_SIZE": "0"},
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        report(runs, upstream_kind, generator, appends=appends)
        print(
            subprocess.run(
                [PYTHON, __file__, "--profile", seeded["token"], str(seeded["connection"])],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
        )
        if SMOKE and any(r.errors for r in runs):
            raise SystemExit("bench smoke: some brokered requests failed (see the errors column)")
    finally:
        for proc in reversed(processes):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM) if proc is not processes[0] else (
                        proc.terminate()
                    )
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def report(runs: list[Run], upstream_kind: str, generator: str, appends: str = "") -> None:
    by = {(r.name[0], r.concurrency): r for r in runs}
    print()
    print(
        f"Grantry bench — upstream: {upstream_kind}; load: {generator}; "
        f"{SECONDS:g}s per run; median of {ROUNDS} round(s); {os.cpu_count()} CPUs"
    )
    print(
        f"| {'scenario':28} | {'conc':>4} | {'p50 ms':>8} | {'p99 ms':>8} | {'req/s':>9} "
        f"| {'req/s range':>15} | {'errors':>6} | {'web CPU ms/req':>14} |"
    )
    print(
        f"|{'-' * 30}|{'-' * 6}|{'-' * 10}|{'-' * 10}|{'-' * 11}|{'-' * 17}|{'-' * 8}|{'-' * 16}|"
    )
    for r in runs:
        cpu = f"{r.cpu_ms:14.2f}" if r.cpu_ms is not None else f"{'-':>14}"
        low, high = r.rps_range or (r.rps, r.rps)
        spread = f"{low:.0f}–{high:.0f}"
        print(
            f"| {r.name:28} | {r.concurrency:>4} | {r.p50_ms:8.2f} | {r.p99_ms:8.2f} | "
            f"{r.rps:9.0f} | {spread:>15} | {r.errors:>6} | {cpu} |"
        )
    a1, m1, c1 = by[("a", 1)], by[("m", 1)], by[("c", 1)]
    m16, c16 = by[("m", 16)], by[("c", 16)]
    print()
    if SMOKE:
        print("SMOKE RUN (BENCH_SMOKE=1): 1-second runs prove the script works; the goals")
        print("below are not measured here. `make bench` on a quiet machine measures them.")
    print("Goals (issue 10), against the minimal DRF broker (m) on the same server:")
    if c1.cpu_ms and m1.cpu_ms:
        ratio = c1.cpu_ms / m1.cpu_ms
        print(
            f"- web CPU per call, c / m at concurrency 1: {c1.cpu_ms:.2f} / {m1.cpu_ms:.2f} ms"
            f" = {ratio:.2f}x (goal ≤ 1.3x: {'met' if ratio <= 1.3 else 'NOT met'})"
        )
    share = c16.rps / m16.rps if m16.rps else 0.0
    print(
        f"- req/s at concurrency 16, c / m: {c16.rps:.0f} / {m16.rps:.0f} = {share:.0%}"
        f" (goal ≥ 75%: {'met' if share >= 0.75 else 'NOT met'})"
    )
    over_c, over_m = c1.p50_ms - a1.p50_ms, m1.p50_ms - a1.p50_ms
    ratio = over_c / over_m if over_m > 0 else float("inf")
    print(
        f"- p50 overhead at concurrency 1, (c − a) / (m − a): {over_c:.2f} / {over_m:.2f} ms"
        f" = {ratio:.2f}x (goal ≤ 1.3x: {'met' if ratio <= 1.3 else 'NOT met'})"
    )
    report_slow(by)
    d1 = by.get(("d", 1))
    if d1 is not None and d1.cpu_ms and c1.cpu_ms:
        print(
            f"- custom-provider action vs built-in, web CPU per call: {d1.cpu_ms:.2f} vs"
            f" {c1.cpu_ms:.2f} ms"
        )
    report_mcp(by)
    if appends:
        print(appends)
    load = os.getloadavg()
    print(
        f"machine load average during the run: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
        f"on {os.cpu_count()} CPUs (figures from a busy machine are not comparable)"
    )
    if any(r.errors for r in runs):
        print("WARNING: some requests failed (see the errors column).")


def report_slow(by: dict[tuple[str, int], Run]) -> None:
    slow, anchor_slow = by.get(("e", SLOW_CONCURRENCY)), by.get(("n", SLOW_CONCURRENCY))
    if slow is not None:
        ideal = SLOW_CONCURRENCY / 0.1
        print(
            f"- 100 ms upstream at concurrency {SLOW_CONCURRENCY} ({SLOW_THREADS} threads per"
            f" process): {slow.rps:.0f} req/s = {slow.rps / ideal:.0%} of {ideal:.0f}"
            f" (goal ≥ 80%: {'met' if slow.rps >= 0.8 * ideal else 'NOT met'})"
        )
        if anchor_slow is not None and anchor_slow.rps:
            share = slow.rps / anchor_slow.rps
            print(
                f"- the same against m: e / n = {slow.rps:.0f} / {anchor_slow.rps:.0f} req/s"
                f" = {share:.0%} (goal ≥ 80%: {'met' if share >= 0.8 else 'NOT met'})"
            )
        pool = os.environ.get("DB_POOL_MAX_SIZE", "4")
        processes = os.environ.get("WEB_CONCURRENCY", "2")
        for r in (slow, anchor_slow, by.get(("p", SLOW_CONCURRENCY))):
            if r is not None and r.peak_connections is not None:
                bound = (
                    f"PgBouncer's pool of {PGBOUNCER_POOL}"
                    if r.name.startswith("p")
                    else f"Django's pool of {pool} × {processes} processes"
                )
                print(
                    f"- peak PostgreSQL connections during {r.name!r}: {r.peak_connections}"
                    f" (at most {bound}; {SLOW_CONCURRENCY} calls in flight)"
                )


def mcp_scenarios(
    mcp_url: str, base: str, auth: dict[str, str]
) -> list[tuple[str, str, dict[str, str], str | None]]:
    """(g) and (h): the same tools/call to the MCP server directly and through /mcp."""
    if not mcp_url:
        return []
    echo = {**MCP_CALL, "params": {"name": "echo", "arguments": {"message": "bench"}}}
    forwarded = {**MCP_CALL, "params": {"name": "bench__echo", "arguments": {"message": "bench"}}}
    return [
        ("g MCP server direct", mcp_url, mcp_session(mcp_url), json.dumps(echo)),
        (
            "h MCP tools/call via Grantry",
            f"{base}/mcp",
            {**auth, "Accept": "application/json"},
            json.dumps(forwarded),
        ),
    ]


def report_mcp(by: dict[tuple[str, int], Run]) -> None:
    if ("g", 1) not in by or ("h", 1) not in by:
        return
    print("MCP gateway (issue 24), a tools/call forwarded by /mcp vs the server directly:")
    for concurrency in CONCURRENCIES:
        g, h = by[("g", concurrency)], by[("h", concurrency)]
        print(
            f"- concurrency {concurrency}: p50 {h.p50_ms:.2f} vs {g.p50_ms:.2f} ms, Grantry "
            f"adds {h.p50_ms - g.p50_ms:.2f} ms; {h.rps:.0f} vs {g.rps:.0f} req/s"
        )
    cpu = by[("h", 1)].cpu_ms
    if cpu:
        print(f"- Grantry's web CPU per forwarded call (concurrency 1): {cpu:.2f} ms")


def slow_upstream(port: int) -> None:
    """A SaaS that answers every request after 100 ms (asyncio: never the limit)."""
    import asyncio

    payload = UPSTREAM_BODY.encode()
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length:\s*(\d+)", request)
                if length:
                    await reader.readexactly(int(length.group(1)))
                await asyncio.sleep(0.1)
                writer.write(head + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def appends_per_second() -> None:
    """Runs inside Django (`bench.py --appends`): audit appends per second to ONE
    organization from 1 and from 32 connections, with the organization's chains
    sharded (the setting) and with one chain, for comparison."""
    import threading

    import django

    django.setup()
    from django.conf import settings
    from django.db import connections

    from apps.audit.services import audit_record
    from apps.organizations.models import Organization

    org = Organization.objects.get(slug="bench")
    seconds = min(SECONDS, 5.0)

    def rate(threads: int) -> float:
        counts = [0] * threads
        stop = time.monotonic() + seconds

        def work(n: int) -> None:
            try:
                while time.monotonic() < stop:
                    audit_record(action="broker.execute.attempt", organization_id=org.pk)
                    counts[n] += 1
            finally:
                connections.close_all()

        pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        return sum(counts) / seconds

    shards = settings.GRANTRY_AUDIT_CHAIN_SHARDS
    lines = []
    for label, count in ((f"{shards} chains", shards), ("1 chain", 1)):
        settings.GRANTRY_AUDIT_CHAIN_SHARDS = count
        one, many = rate(1), rate(32)
        lines.append(
            f"- audit appends/s to one organization ({label}): {one:.0f} from 1 connection,"
            f" {many:.0f} from 32 ({many / one:.1f}x)"
        )
    print("\n".join(lines))


# Where a call's CPU goes (`bench.py --profile`, the last step of `make bench`): the
# code that spent it, by cProfile's own time per function summed by area. The first
# pattern that matches "<file>:<function>" wins.
PROFILE_CALLS = int(os.environ.get("BENCH_PROFILE_CALLS", "20" if SMOKE else "2000"))
PROFILE_AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Grantry: audit appends", ("/apps/audit/",)),
    ("Grantry: broker pipeline", ("/apps/broker/",)),
    ("Grantry: policy decision", ("/apps/policies/",)),
    ("Grantry: connection, provider", ("/apps/connections/", "/apps/providers/")),
    ("Grantry: egress guard", ("/apps/core/egress",)),
    (
        "Grantry: token, tenancy, other",
        ("/apps/", "/grantry/", "/scripts/bench_site/"),
    ),
    ("urllib3, sockets, TLS (upstream)", ("/urllib3/", "/http/client", "socket", "_ssl", "select")),
    ("psycopg, Django ORM", ("psycopg", "/django/db/")),
    ("DRF", ("/rest_framework/",)),
    ("Django handler, middleware, HTTP", ("/django/",)),
    ("JSON, JSON Schema", ("/json/", "json.", "jsonschema", "referencing", "rpds")),
    ("cryptography", ("cryptography",)),
)


def profile_calls(token: str, connection: str) -> None:
    """Runs inside Django (`bench.py --profile`): the CPU of a brokered execute and of the
    anchor, in this one process through Django's test client (the same handler and
    middleware, no server), then where it goes. The database server's CPU is not in it."""
    import cProfile
    import pstats

    import django

    django.setup()
    from django.test import Client

    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_HOST="127.0.0.1")
    body = json.dumps({"connection": connection, "input": {}})
    paths = {
        "c": (f"/api/v1/actions/{ACTION}/execute", body),
        "m": ("/bench/anchor/", "{}"),
    }

    def calls(path: str, payload: str, n: int) -> None:
        for _ in range(n):
            response = client.post(path, data=payload, content_type="application/json")
            if response.status_code != 200:
                raise SystemExit(f"profile: {path} answered {response.status_code}")

    cpu: dict[str, float] = {}
    areas: dict[str, dict[str, float]] = {}
    for name, (path, payload) in paths.items():
        calls(path, payload, max(10, PROFILE_CALLS // 10))  # warm up
        started = time.process_time()
        calls(path, payload, PROFILE_CALLS)
        cpu[name] = (time.process_time() - started) * 1000 / PROFILE_CALLS
        profiler = cProfile.Profile(time.process_time)  # CPU, not waiting on sockets
        profiler.enable()
        calls(path, payload, PROFILE_CALLS)
        profiler.disable()
        spent: dict[str, float] = {}
        for (file, _line, function), (_cc, _nc, own, _cum, _callers) in (
            pstats.Stats(profiler).stats.items()  # type: ignore[attr-defined]
        ):
            where = f"{file}:{function}"
            area = next(
                (label for label, marks in PROFILE_AREAS if any(m in where for m in marks)),
                "other (Python, stdlib)",
            )
            spent[area] = spent.get(area, 0.0) + own
        total = sum(spent.values())
        areas[name] = {area: seconds / total for area, seconds in spent.items()}
    print(
        f"Where the CPU goes, in-process ({PROFILE_CALLS} calls each, Django's test client, "
        "no server; share of the CPU cProfile saw, scaled to the unprofiled CPU per call):"
    )
    print(f"- CPU per call in this process: c {cpu['c']:.2f} ms, m {cpu['m']:.2f} ms "
          f"({cpu['c'] / cpu['m']:.2f}x)")  # fmt: skip
    print(f"  {'area':36} {'c ms':>7} {'m ms':>7} {'c - m':>7}")
    names = sorted(
        set(areas["c"]) | set(areas["m"]), key=lambda a: -areas["c"].get(a, 0.0) * cpu["c"]
    )
    for area in names:
        c_ms = areas["c"].get(area, 0.0) * cpu["c"]
        m_ms = areas["m"].get(area, 0.0) * cpu["m"]
        print(f"  {area:36} {c_ms:7.2f} {m_ms:7.2f} {c_ms - m_ms:+7.2f}")


if __name__ == "__main__":
    if "--profile" in sys.argv:
        sys.path.insert(0, str(ROOT))
        profile_calls(sys.argv[-2], sys.argv[-1])
    elif "--seed" in sys.argv:
        sys.path.insert(0, str(ROOT))
        seed()
    elif "--slow-upstream" in sys.argv:
        slow_upstream(int(sys.argv[sys.argv.index("--slow-upstream") + 1]))
    elif "--appends" in sys.argv:
        sys.path.insert(0, str(ROOT))
        appends_per_second()
    else:
        main()
