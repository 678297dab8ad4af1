"""The dependency locks: requirements*.in compiled by `make lock` into requirements*.txt.

- Every lock pins every package of its tree to one version, with hashes.
- Each top-level pin of a requirements*.in is the version its lock holds (a lock
  edited by hand, or an .in edited without `make lock`, fails here).
- A package in several locks has the same version in each (they install together).
- Production's lock holds no test or lint tool."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCKS = (
    "requirements.txt",
    "requirements-local.txt",
    "requirements-dev.txt",
    "requirements-uv.txt",
)
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\]+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_entries(path: Path) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes), from a pip-compile output with hashes."""
    entries: dict[str, tuple[str, int]] = {}
    current = None
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[0].isspace():
            assert stripped.startswith("--hash=sha256:"), f"{path.name}: {line!r}"
            assert current is not None, f"{path.name}: a hash before any package"
            version, hashes = entries[current]
            entries[current] = (version, hashes + 1)
            continue
        match = PIN.match(stripped)
        assert match, f"{path.name}: not an exact pin: {line!r}"
        current = canonical(match.group(1))
        assert current not in entries, f"{path.name}: {current} twice"
        entries[current] = (match.group(3), 0)
    return entries


def top_level_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = PIN.match(line)
        assert match, f"{path.name}: pin top-level requirements exactly: {line!r}"
        pins[canonical(match.group(1))] = match.group(3)
    return pins


@pytest.mark.parametrize("lock", LOCKS)
def test_every_package_is_pinned_with_hashes(lock: str) -> None:
    entries = lock_entries(ROOT / lock)
    assert entries
    unhashed = [name for name, (_, hashes) in entries.items() if hashes == 0]
    assert unhashed == []


@pytest.mark.parametrize("lock", LOCKS)
def test_the_lock_holds_its_in_files_pins(lock: str) -> None:
    entries = lock_entries(ROOT / lock)
    source = ROOT / lock.replace(".txt", ".in")
    stale = {
        name: (version, entries.get(name, ("missing", 0))[0])
        for name, version in top_level_pins(source).items()
        if entries.get(name, ("missing", 0))[0] != version
    }
    assert stale == {}, f"run `make lock`: {source.name} → {lock}: {stale}"


def test_the_locks_agree_on_shared_packages() -> None:
    versions: dict[str, dict[str, str]] = {}
    for lock in LOCKS:
        for name, (version, _) in lock_entries(ROOT / lock).items():
            versions.setdefault(name, {})[lock] = version
    disagree = {name: seen for name, seen in versions.items() if len(set(seen.values())) > 1}
    assert disagree == {}


def test_production_lock_holds_no_test_or_lint_tool() -> None:
    production = set(lock_entries(ROOT / "requirements.txt"))
    tools = set(top_level_pins(ROOT / "requirements-dev.in")) | {"pgserver", "uv"}
    assert production & tools == set()
