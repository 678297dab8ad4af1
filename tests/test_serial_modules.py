"""The serial pass of `make test` names modules that exist (conftest.SERIAL_MODULES):
a renamed module would otherwise slip into the parallel pass unnoticed."""

from __future__ import annotations

from pathlib import Path

from conftest import SERIAL_MODULES

ROOT = Path(__file__).resolve().parent.parent


def test_every_serial_module_exists_and_is_a_test_module() -> None:
    missing = sorted(m for m in SERIAL_MODULES if not (ROOT / m).is_file())
    assert missing == []
    assert all(Path(m).name.startswith("test_") for m in SERIAL_MODULES)
