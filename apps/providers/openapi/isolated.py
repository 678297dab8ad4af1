"""The child process that reads a document: `python -m apps.providers.openapi.isolated`.

A document is hostile input, and reading one is CPU and memory bound in C code that no
soft time limit can interrupt (a YAML parser, a deep JSON tree, a schema that doubles at
every reference). So it is read here, in a process of its own that caps its own address
space and CPU time (RLIMIT_AS, RLIMIT_CPU) before it reads a byte of input, while the
parent (`run.py`) keeps a wall-clock deadline and kills it past that. No Django is
loaded and no environment is passed: the child holds no secret and no connection.

Protocol: one JSON request on stdin ({"phase": "index" | "drafts", "document": text,
"keys": [...]}); JSON lines on stdout: {"progress": [done, total]} while it works (at
most five a second), then one {"result": …} or {"error": message}, where the message
"memory" means the memory cap was hit (the parent words it)."""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from typing import Any


def _limit(memory_bytes: int, cpu_seconds: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    # The soft limit sends SIGXCPU (which kills), the hard one SIGKILL a second later.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _run(request: dict[str, Any]) -> dict[str, Any]:
    from apps.providers.openapi.drafts import drafts_for
    from apps.providers.openapi.reading import index, load

    document = load(request["document"])
    if request["phase"] == "index":
        return index(document).as_dict()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.2 or done == total:
            last[0] = now
            _emit({"progress": [done, total]})

    drafts = drafts_for(document, list(request["keys"]), on_progress=progress)
    return {"drafts": [d.as_dict() for d in drafts]}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--memory", type=int, required=True, help="bytes of address space")
    parser.add_argument("--cpu", type=int, required=True, help="seconds of CPU time")
    args = parser.parse_args()
    _limit(args.memory, args.cpu)
    from apps.providers.openapi.reading import DocumentError

    try:
        request = json.loads(sys.stdin.read())
        _emit({"result": _run(request)})
    except DocumentError as exc:
        _emit({"error": str(exc)})
    except MemoryError:
        _emit({"error": "memory"})
        return 3
    except RecursionError:
        _emit({"error": "The document is nested too deeply to read."})
    return 0


if __name__ == "__main__":
    sys.exit(main())
