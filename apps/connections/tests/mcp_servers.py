"""Real MCP servers nobody on the project wrote, run for a test with `node` directly
(never `npx`: no download at run time, and a PID to stop). They come from
var/mcp-servers (`make mcp-servers`, an integrity-checked npm lock)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType

from django.conf import settings

NODE_MODULES = Path(settings.GRANTRY_MCP_NPM_PREFIX) / "node_modules"
EVERYTHING = NODE_MODULES / "@modelcontextprotocol/server-everything/dist/index.js"
SDK_EXAMPLES = NODE_MODULES / "@modelcontextprotocol/sdk/dist/esm/examples"
EVERYTHING_PACKAGE = "@modelcontextprotocol/server-everything@2026.8.31"
# The same server's release of 2025-11-25 (an npm alias in the lock): its `echo` tool
# has another description and no annotations, so serving it and then the 2026 release
# at one URL is a real upstream changing an approved tool's definition.
EVERYTHING_2025 = NODE_MODULES / "server-everything-2025-11-25/dist/index.js"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, *, process: subprocess.Popen[bytes], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {seconds} s")


class NodeServer:
    """`node <script> <args>` with `env` added, listening on the given ports."""

    def __init__(
        self, script: Path, *args: str, env: dict[str, str] | None = None, ports: tuple[int, ...]
    ) -> None:
        self.script = script
        self.args = args
        self.env = env or {}
        self.ports = ports
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> NodeServer:
        if not self.script.exists():
            raise RuntimeError(f"{self.script} is missing: run `make mcp-servers`.")
        self.process = subprocess.Popen(
            [settings.GRANTRY_MCP_STDIO_NODE, str(self.script), *self.args],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **self.env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.script.parent,
        )
        for port in self.ports:
            wait_for_port(port, process=self.process)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)


def everything_http(port: int, *, release: str = "2026.8.31") -> NodeServer:
    """server-everything over Streamable HTTP (2025-11-25 with Mcp-Session-Id, SSE answers)."""
    script = EVERYTHING if release == "2026.8.31" else EVERYTHING_2025
    return NodeServer(script, "streamableHttp", env={"PORT": str(port)}, ports=(port,))


def sdk_example(name: str, *args: str, port: int, auth_port: int | None = None) -> NodeServer:
    """One of the TypeScript SDK's example servers (e.g. simpleStreamableHttp.js --oauth)."""
    env = {"MCP_PORT": str(port), "PORT": str(port)}
    ports: tuple[int, ...] = (port,)
    if auth_port is not None:
        env["MCP_AUTH_PORT"] = str(auth_port)
        ports = (port, auth_port)
    return NodeServer(SDK_EXAMPLES / "server" / name, *args, env=env, ports=ports)


class Relay:
    """A TCP relay in front of a server: `received` holds every byte sent through it
    (what the upstream saw, headers included), so a test can show which credential
    reached the server and that the worker token never did."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.received = bytearray()
        self._lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def text(self) -> str:
        with self._lock:
            return self.received.decode("utf-8", "replace")

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, record: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if record:
                    with self._lock:
                        self.received += chunk
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
