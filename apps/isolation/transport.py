"""The stdio transport for a sandboxed server: the `mcp` SDK's messages, our pipes.

`isolated_stdio(command)` is an `mcp` SDK `Transport` (an async context manager
giving the session its read and write streams), so `mcp.Client` speaks to the child
exactly as it would over the SDK's own `stdio_client`: the SDK parses and writes
every JSON-RPC message (`jsonrpc_message_adapter`, `model_dump_json`). Why not
`stdio_client` itself: it starts the process with the parent's PATH, HOME, USER …
merged in, and reads a line of any length into memory, so a child that writes
gigabytes without a newline would exhaust Grantry's process. Here:

* the process is started with `command.env` as its whole environment;
* a message longer than `max_message_bytes` ends the child (killed), and the
  session's waiting requests end with "Connection closed"; why, and the exit code,
  are kept in `Diagnostics` for the operator. The child's stderr is discarded: a
  server may print its own environment (its credentials) there;
* closing ends the child: stdin closed, a short grace, then SIGKILL to its process
  group (bubblewrap's `--die-with-parent` takes the sandbox down with it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import mcp_types as types
from anyio.abc import Process
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import SessionMessage

from apps.isolation.sandbox import SandboxCommand

GRACE_SECONDS = 1.0


@dataclass
class Diagnostics:
    """What ended a child, for errors and the dashboard (never its output)."""

    problem: str = ""
    exit_code: int | None = None
    pid: int | None = None


def _kill(process: Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # started in a session of its own


async def _read(
    process: Process,
    sink: MemoryObjectSendStream[SessionMessage | Exception],
    *,
    cap: int,
    diagnostics: Diagnostics,
) -> None:
    assert process.stdout is not None
    buffer = bytearray()
    scanned = 0
    async with sink:
        try:
            async for chunk in process.stdout:
                buffer += chunk
                while (newline := buffer.find(b"\n", scanned)) >= 0:
                    line = bytes(buffer[:newline])
                    del buffer[: newline + 1]
                    scanned = 0
                    if line.strip():
                        await sink.send(_parse(line))
                scanned = len(buffer)
                if len(buffer) > cap:
                    diagnostics.problem = f"the server sent a message over {cap} bytes"
                    _kill(process)
                    return
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
            return


def _parse(line: bytes) -> SessionMessage | Exception:
    try:
        return SessionMessage(types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        return exc


async def _write(process: Process, source: MemoryObjectReceiveStream[SessionMessage]) -> None:
    assert process.stdin is not None
    async with source:
        try:
            async for message in source:
                data = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                await process.stdin.send(data.encode() + b"\n")
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            return


async def _stop(process: Process, diagnostics: Diagnostics) -> None:
    if process.stdin is not None:
        with contextlib.suppress(Exception):
            await process.stdin.aclose()
    with anyio.move_on_after(GRACE_SECONDS):
        await process.wait()
    if process.returncode is None:
        _kill(process)
        with anyio.move_on_after(GRACE_SECONDS):
            await process.wait()
    diagnostics.exit_code = process.returncode
    with contextlib.suppress(Exception), anyio.move_on_after(GRACE_SECONDS):
        await process.aclose()  # its pipes, and the reaped process


@contextlib.asynccontextmanager
async def isolated_stdio(
    command: SandboxCommand, *, max_message_bytes: int, diagnostics: Diagnostics | None = None
) -> AsyncIterator[
    tuple[
        MemoryObjectReceiveStream[SessionMessage | Exception],
        MemoryObjectSendStream[SessionMessage],
    ]
]:
    diagnostics = diagnostics if diagnostics is not None else Diagnostics()
    process = await anyio.open_process(
        list(command.argv),
        env=command.env,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    diagnostics.pid = process.pid
    read_sink, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_source = anyio.create_memory_object_stream[SessionMessage](0)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(
                lambda: _read(process, read_sink, cap=max_message_bytes, diagnostics=diagnostics)
            )
            group.start_soon(_write, process, write_source)
            try:
                yield read_stream, write_stream
            finally:
                with anyio.CancelScope(shield=True):
                    await write_stream.aclose()
                    await _stop(process, diagnostics)
                    await read_stream.aclose()
                group.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            _kill(process)
