"""How a stdio MCP server is started: under bubblewrap, with limits, with nothing of ours.

`sandbox_command()` builds the command line; `apps.isolation.transport` runs it.

What the sandbox takes away (each one is tested in apps/isolation/tests):

* **Grantry's files.** A new mount namespace holds only /usr (read-only, the
  operating system's programs and libraries), the package's node_modules
  (read-only), a fresh /proc and a minimal /dev, and a private /tmp (tmpfs of
  GRANTRY_MCP_STDIO_TMP_MB). No /etc, no /home, no /work, no /var: not the code,
  not the settings, not var/, not the venv.
* **Grantry's environment.** bubblewrap itself is started with the child's
  environment only (PATH, HOME=/tmp, NODE_OPTIONS and the variables the admin
  mapped to credentials), so no process in the sandbox, bubblewrap's own init
  included, ever held SECRET_KEY, GRANTRY_ENCRYPTION_KEY or DATABASE_URL. Secrets
  travel in the environment, never on a command line (`ps` shows command lines to
  every user of the host).
* **Grantry's processes and sockets.** New PID, IPC, UTS and user namespaces: the
  child sees only its own processes, runs as nobody (65534) with every
  capability dropped and cannot create further user namespaces; no Unix socket of
  the host (PostgreSQL's, Redis's) is mounted. Without network access (the
  default) it has its own empty network namespace, so it cannot reach PostgreSQL,
  Redis or anything else over TCP either.
* **Unbounded use.** prlimit caps its address space (GRANTRY_MCP_STDIO_MEMORY_MB;
  node reserves about 2 GB of address space before it runs, so this is not its
  resident size: node's heap is capped separately by NODE_OPTIONS), its CPU
  seconds over its life (GRANTRY_MCP_STDIO_CPU_SECONDS), open files and file size,
  and no core dumps. The transport caps each message it reads; the caller bounds
  each exchange in time and stops a child idle for GRANTRY_MCP_STDIO_IDLE_SECONDS.
  `--die-with-parent`: if Grantry's process dies, so does the sandbox.

What it does NOT take away:

* **Network egress, when an admin turns network access on** for a server that
  needs it (a GitHub server must reach api.github.com). The child then shares the
  host's network: it can connect to any address the host can, including loopback
  and private addresses (PostgreSQL over TCP, cloud metadata). Grantry's SSRF
  guard covers Grantry's own requests, not the child's. Give such servers only
  hosts where nothing sensitive listens on the network without a password.
* **The number of processes.** There is no pids cgroup here and RLIMIT_NPROC does
  not hold inside the user namespace, so a child can fork until the host's own
  limits; the CPU and address-space limits apply per process.
* **Its own credentials.** A server gets the secrets mapped to its environment
  and can do with them whatever the upstream allows them to do.
* **Kernel bugs.** bubblewrap relies on the kernel's namespaces; it is not a VM.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from django.conf import settings

from apps.isolation.packages import Installed

NOBODY = 65534
MOUNT = "/opt/mcp/node_modules"
TMP = "/tmp"  # noqa: S108 - inside the sandbox: its own private tmpfs
# Names the sandbox sets itself, and names that change how any program loads.
RESERVED_ENV = frozenset({"PATH", "HOME", "NODE_OPTIONS", "TMPDIR", "PWD"})
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
_UNSAFE_ENV_PREFIXES = ("LD_", "NODE_", "BWRAP")


class SandboxError(ValueError):
    """A server that cannot be started as configured."""


def env_name_problem(name: str) -> str:
    """Why `name` cannot carry a credential into a sandbox ("" when it can)."""
    if not _ENV_NAME.match(name):
        return f"{name[:40]!r} is not an environment variable name (letters, digits, _)."
    if name.upper() in RESERVED_ENV or name.upper().startswith(_UNSAFE_ENV_PREFIXES):
        return f"{name} is set by the sandbox itself or changes how programs load."
    return ""


@dataclass(frozen=True)
class Limits:
    memory_mb: int
    heap_mb: int
    cpu_seconds: int
    tmp_mb: int
    open_files: int = 256

    @classmethod
    def from_settings(cls) -> Limits:
        return cls(
            memory_mb=int(settings.GRANTRY_MCP_STDIO_MEMORY_MB),
            heap_mb=int(settings.GRANTRY_MCP_STDIO_HEAP_MB),
            cpu_seconds=int(settings.GRANTRY_MCP_STDIO_CPU_SECONDS),
            tmp_mb=int(settings.GRANTRY_MCP_STDIO_TMP_MB),
        )


@dataclass(frozen=True)
class SandboxCommand:
    """The argv and the whole environment of one sandboxed server."""

    argv: tuple[str, ...]
    env: dict[str, str] = field(repr=False)  # holds the server's credentials

    def __repr__(self) -> str:
        return f"<SandboxCommand {self.argv[-1]!r} env={sorted(self.env)}>"


def sandbox_command(
    installed: Installed,
    *,
    secrets: dict[str, str],
    network: bool = False,
    limits: Limits | None = None,
) -> SandboxCommand:
    """bubblewrap → prlimit → node <the package's bin> <args>, see the module docstring."""
    limits = limits or Limits.from_settings()
    for name in secrets:
        problem = env_name_problem(name)
        if problem:
            raise SandboxError(problem)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": TMP,
        "TMPDIR": TMP,
        "NODE_OPTIONS": f"--max-old-space-size={limits.heap_mb}",
        **secrets,
    }
    argv: list[str] = [
        str(settings.GRANTRY_MCP_STDIO_BWRAP),
        "--unshare-all",
        "--unshare-user",  # (--unshare-all only tries; --disable-userns needs it)
        *(["--share-net"] if network else []),
        "--die-with-parent",
        "--new-session",
        "--uid",
        str(NOBODY),
        "--gid",
        str(NOBODY),
        "--disable-userns",
        "--cap-drop",
        "ALL",
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--symlink",
        "usr/bin",
        "/bin",
        "--ro-bind",
        str(installed.node_modules),
        MOUNT,
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        str(limits.tmp_mb * 1024 * 1024),
        "--tmpfs",
        TMP,
    ]
    if network:
        # Name resolution and the system's certificate authorities, nothing else of /etc.
        for path in ("/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/ssl"):
            argv += ["--ro-bind-try", path, path]
    argv += [
        "--chdir",
        TMP,
        "--",
        "/usr/bin/prlimit",
        f"--as={limits.memory_mb * 1024 * 1024}",
        f"--cpu={limits.cpu_seconds}",
        f"--nofile={limits.open_files}",
        f"--fsize={limits.tmp_mb * 1024 * 1024}",
        "--core=0",
        "--",
        str(settings.GRANTRY_MCP_STDIO_NODE),
        installed.entry_inside(MOUNT),
        *installed.spec.args,
    ]
    return SandboxCommand(argv=tuple(argv), env=env)
