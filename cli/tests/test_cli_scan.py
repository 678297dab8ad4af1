"""`grantry scan` over a fake home holding every client's real-format config and every
provider's key format: each key found at its path, with its provider, and no secret in
any output; nothing reported on clean files full of look-alikes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_fakes import KEYS, SA_PRIVATE_KEY, build_clean, build_home
from grantry_cli.detect import detect, fingerprint
from grantry_cli.main import main
from grantry_cli.scan import scan

CLI = Path(__file__).resolve().parents[1]


def _run(args: list[str], home: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real command, in its own process, with the fake home as HOME."""
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(CLI)}
    return subprocess.run(
        [sys.executable, "-m", "grantry_cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_client_and_every_provider_is_found_where_it_sits(tmp_path: Path) -> None:
    home = tmp_path / "home"
    expected = build_home(home)
    result = scan([], home=home, cwd=home / "project")
    got = {
        (str(Path(f.file).relative_to(home)), f.location, f.secret.provider): f
        for f in result.findings
    }
    for item in expected:
        hit = got.get((item.file, item.location, item.provider))
        assert hit is not None, f"not found: {item.file} {item.location} ({item.provider})"
        assert hit.secret.value == item.secret
        assert hit.server == item.server, (item.file, hit.server)
    assert len(result.findings) == len(expected), [(f.file, f.location) for f in result.findings]
    assert result.problems == []
    # Every client of the issue is covered by the fake home.
    assert {f.client for f in result.findings} == {
        "claude-desktop",
        "claude-code",
        "cursor",
        "vscode",
        "windsurf",
        "codex",
        "zed",
        "env",
        "compose",
        "shell",
    }


def test_the_program_behind_each_key_is_named_without_its_arguments(tmp_path: Path) -> None:
    home = tmp_path / "home"
    build_home(home)
    by_server = {f.server: f.program for f in scan([], home=home, cwd=home / "project").findings}
    assert by_server["github"] == "npx @modelcontextprotocol/server-github"
    assert by_server["stripe"] == "npx @stripe/mcp"  # not the --api-key=… argument
    assert by_server["github-fine"] == "docker ghcr.io/github/github-mcp-server"
    assert by_server["notion"] == "https://mcp.notion.example/mcp"
    assert by_server["agent"] == "docker-compose service agent (image example/agent:1.2)"


def test_no_output_carries_a_secret(tmp_path: Path) -> None:
    home = tmp_path / "home"
    expected = build_home(home)
    text = _run(["scan"], home, home / "project")
    machine = _run(["scan", "--json"], home, home / "project")
    assert text.returncode == 0, text.stderr
    assert machine.returncode == 0, machine.stderr
    document = json.loads(machine.stdout)
    assert len(document["findings"]) == len(expected)
    assert f"raw keys in {len(expected)} places" in text.stdout
    everything = text.stdout + text.stderr + machine.stdout + machine.stderr
    for _provider, secret in KEYS.values():
        assert secret not in everything
        assert secret[-12:] not in everything
        assert fingerprint(secret) in everything
    first = document["findings"][0]
    assert set(first) == {
        "fingerprint",
        "provider",
        "kind",
        "label",
        "file",
        "location",
        "line",
        "client",
        "name",
        "server",
        "program",
    }


def test_clean_configs_with_look_alikes_report_nothing(tmp_path: Path) -> None:
    build_clean(tmp_path)
    result = scan([tmp_path], home=tmp_path / "nowhere")
    assert len(result.files_scanned) == 6
    assert [(f.file, f.location, f.secret.kind) for f in result.findings] == []
    assert result.problems == []


def test_a_google_service_account_key_file(tmp_path: Path) -> None:
    sa = tmp_path / "project" / ".env"
    sa.parent.mkdir()
    sa.write_text(
        "GOOGLE_APPLICATION_CREDENTIALS_JSON="
        + json.dumps(
            {
                "type": "service_account",
                "project_id": "demo",
                "private_key_id": "a" * 40,
                "private_key": SA_PRIVATE_KEY,
                "client_email": "agent@demo.iam.gserviceaccount.com",
            }
        )
        + "\n"
    )
    found = scan([sa.parent], home=tmp_path).findings
    assert [(f.secret.provider, f.secret.kind) for f in found] == [
        ("google", "google_service_account")
    ]
    assert found[0].secret.value.startswith("-----BEGIN PRIVATE KEY-----")


@pytest.mark.parametrize("name", sorted(KEYS))
def test_each_format_is_recognised_inside_other_text(name: str) -> None:
    provider, secret = KEYS[name]
    found = detect(f'--header "Authorization: Bearer {secret}" --verbose', name="args")
    if provider:
        assert [(s.provider, s.value) for s in found] == [(provider, secret)]
    else:  # a generic secret needs a secret-sounding name and stands alone
        assert detect(secret, name="SESSION_SECRET")[0].kind == "generic_secret"
        assert detect(secret, name="BUILD_LABEL") == []


def test_main_returns_zero_and_prints_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build_clean(tmp_path)
    assert main(["scan", "--json", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["findings"] == []
