"""The CLI is its own package: it imports nothing of the server (no Django, no `apps`,
no `grantry` project package), and the README's install command gives a working
`grantry` command in a fresh virtual environment."""

from __future__ import annotations

import ast
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

CLI = Path(__file__).resolve().parents[1]
FORBIDDEN = ("django", "apps", "grantry", "rest_framework")


def test_no_module_imports_the_server() -> None:
    for path in sorted((CLI / "grantry_cli").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"


def test_running_every_command_loads_no_server_module() -> None:
    code = (
        "import sys, grantry_cli.main, grantry_cli.scan, grantry_cli.check, grantry_cli.rewrite;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{FORBIDDEN!r});"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(CLI)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_readme_install_gives_a_grantry_command(tmp_path: Path) -> None:
    """`python3 -m venv DIR && DIR/bin/pip install ./cli`, offline: the build backend
    (setuptools) comes from this environment instead of the index."""
    target = tmp_path / "grantry-cli"
    venv.EnvBuilder(with_pip=True).create(target)
    # The build backend from this environment (setuptools), as the index would supply it.
    [site] = target.glob("lib/python3*/site-packages")
    (site / "build-backend.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run(
        [
            str(target / "bin/pip"),
            "install",
            "--no-index",
            "--no-build-isolation",
            "--quiet",
            str(CLI),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    version = subprocess.run(
        [str(target / "bin/grantry"), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert version.stdout.strip() == "grantry 0.1.0", version.stderr
    helped = subprocess.run(
        [str(target / "bin/grantry"), "scan", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "--upload" in helped.stdout
