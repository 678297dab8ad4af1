"""A service queues its app's task by name (apps.core.tasks.enqueue): every name
written in the code is a registered task, and an unknown one raises in the caller."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from celery.exceptions import NotRegistered

from apps.core.tasks import enqueue, registered_task

ROOT = Path(__file__).resolve().parents[3]


def enqueued_names() -> dict[str, str]:
    """Task name -> where it is queued, for every enqueue()/enqueue_on_commit() call."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "apps").rglob("*.py")):
        if "tests" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("enqueue", "enqueue_on_commit")
            ):
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            first = node.args[0] if node.args else None
            name = first.value if isinstance(first, ast.Constant) else None
            assert isinstance(name, str), f"{where}: name the task with a string literal"
            found[name] = where
    return found


def test_every_task_a_service_queues_by_name_is_registered() -> None:
    names = enqueued_names()
    assert {"audit.run_export", "providers.run_openapi_import"} <= set(names)
    for name, where in names.items():
        assert registered_task(name).name == name, where


def test_an_unknown_task_name_raises_in_the_caller() -> None:
    with pytest.raises(NotRegistered):
        enqueue("audit.no_such_task", 1)
