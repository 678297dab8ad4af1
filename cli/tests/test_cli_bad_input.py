"""Bad input never stops a scan: a malformed config, a binary file, a 1 GB file (sparse),
a symlink loop and an unreadable directory each give a clear message, and the keys in
the good files next to them are still found."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_fakes import key

CLI = Path(__file__).resolve().parents[1]
NOBODY = 65534


@pytest.fixture
def tree() -> Iterator[Path]:
    # A folder another user can enter: as root, the unreadable directory is only
    # unreadable to the scan when the scan runs as someone else.
    root = Path(tempfile.mkdtemp(prefix="grantry-bad-input-"))
    os.chmod(root, 0o755)
    yield root
    os.chmod(root / "locked", 0o755)
    subprocess.run(["rm", "-rf", str(root)], check=True)


def _build(root: Path) -> None:
    (root / ".cursor").mkdir()
    (root / ".cursor/mcp.json").write_text(
        '{"mcpServers": {"github": {"env": {"T": "' + key("github_classic") + '"}}, }'
    )  # broken: trailing comma, no close
    (root / ".vscode").mkdir()
    (root / ".vscode/mcp.json").write_text(
        json.dumps({"servers": {"linear": {"env": {"LINEAR_API_KEY": key("linear")}}}})
    )
    (root / ".env").write_bytes(
        b"\x7fELF\x02\x01\x01\x00\x00\x00" + b"\x00" * 64 + key("slack_bot").encode()
    )
    with open(root / ".env.big", "wb") as handle:  # sparse: 1 GB on paper, nothing on disk
        handle.truncate(1024**3)
    os.symlink(root / "loop-b", root / "loop-a")
    os.symlink(root / "loop-a", root / "loop-b")
    os.symlink(root / "loop-a", root / ".env.loop")
    (root / "sub").mkdir()
    os.symlink(root, root / "sub" / "back-to-top")  # a directory loop
    os.symlink(root / ".vscode", root / "vscode-alias")  # the same folder twice: no loop
    (root / "locked").mkdir()
    (root / "locked/.env").write_text(f"GITLAB_TOKEN={key('gitlab')}\n")
    os.chmod(root / "locked", 0o000)
    for path in root.rglob("*"):
        if not path.is_symlink() and path.name != "locked" and path.parent.name != "locked":
            os.chmod(path, 0o755 if path.is_dir() else 0o644)


def test_each_bad_input_is_reported_and_the_scan_goes_on(tree: Path) -> None:
    _build(tree)
    as_other_user: dict[str, Any] = {"user": NOBODY, "group": NOBODY} if os.geteuid() == 0 else {}
    # Another user cannot run root's virtualenv; Debian's own Python 3.11 runs the CLI
    # as well (it needs the standard library only).
    python = "/usr/bin/python3" if as_other_user else sys.executable
    done = subprocess.run(
        [python, "-m", "grantry_cli", "scan", "--json", str(tree)],
        env={"HOME": str(tree), "PYTHONPATH": str(CLI), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/",
        **as_other_user,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    problems = {
        Path(p["path"]).relative_to(tree).as_posix(): p["message"] for p in document["problems"]
    }
    assert "not valid JSON (line 1" in problems[".cursor/mcp.json"]
    assert "read line by line instead" in problems[".cursor/mcp.json"]
    assert problems[".env"] == "a binary file, not a configuration: skipped"
    assert problems[".env.big"] == "1.0 GB, larger than the 20 MB a config file can be: skipped"
    assert problems[".env.loop"] == "symlink loop: skipped"
    assert "symlink loop" in problems["sub/back-to-top"]
    assert problems["locked"] == "cannot read this directory: permission denied: skipped"
    assert "vscode-alias" not in problems
    found = {
        (Path(f["file"]).relative_to(tree).as_posix(), f["provider"]) for f in document["findings"]
    }
    # The good file is read, and the key in the broken one is still found line by line.
    assert found == {(".vscode/mcp.json", "linear"), (".cursor/mcp.json", "github")}
    assert key("slack_bot") not in done.stdout
    assert key("github_classic") not in done.stdout


def test_a_file_named_on_the_command_line_that_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from grantry_cli.main import main

    assert main(["scan", str(tmp_path / "nope.json")]) == 0
    out = capsys.readouterr().out
    assert "nope.json: no such file or directory" in out
