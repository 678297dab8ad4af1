"""`grantry rewrite` and `grantry mcp-config`: the raw-key entries of each client's
config replaced by one `grantry` entry in that client's format, a backup kept, the diff
printed with every secret redacted, and `--dry-run` changing nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from cli_fakes import build_home, key
from grantry_cli import readers, rewrite
from grantry_cli.main import main
from grantry_cli.scan import scan

URL = "https://grantry.example/mcp"
TOKEN = "gry_" + "Q" * 10 + "w8Nf3kLp0sRt5vXy2zAb7cDe9gHj4"
CLI = Path(__file__).resolve().parents[1]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    build_home(tmp_path)
    return tmp_path


CASES = [
    (
        ".cursor/mcp.json",
        ["mcpServers", "grantry"],
        {"url": URL, "headers": {"Authorization": f"Bearer {TOKEN}"}},
    ),
    (
        "project/.mcp.json",
        ["mcpServers", "grantry"],
        {"type": "http", "url": URL, "headers": {"Authorization": f"Bearer {TOKEN}"}},
    ),
    (
        "project/.vscode/mcp.json",
        ["servers", "grantry"],
        {"type": "http", "url": URL, "headers": {"Authorization": f"Bearer {TOKEN}"}},
    ),
    (
        ".codeium/windsurf/mcp_config.json",
        ["mcpServers", "grantry"],
        {"serverUrl": URL, "headers": {"Authorization": f"Bearer {TOKEN}"}},
    ),
    (
        ".config/Claude/claude_desktop_config.json",
        ["mcpServers", "grantry"],
        {
            "command": "npx",
            "args": ["-y", "mcp-remote", URL, "--header", "Authorization:${GRANTRY_AUTH}"],
            "env": {"GRANTRY_AUTH": f"Bearer {TOKEN}"},
        },
    ),
    (
        ".claude.json",
        ["mcpServers", "grantry"],
        {"type": "http", "url": URL, "headers": {"Authorization": f"Bearer {TOKEN}"}},
    ),
]


@pytest.mark.parametrize(("name", "where", "entry"), CASES)
def test_each_json_client_gets_its_own_entry(
    home: Path, name: str, where: list[str], entry: dict
) -> None:
    path = home / name
    planned = rewrite.plan(path, url=URL, token=TOKEN)
    backup = rewrite.apply(planned)
    data = json.loads(path.read_text())
    node = data
    for part in where:
        node = node[part]
    assert node == entry
    assert scan([path], home=home / "none").findings == []  # no raw key left in the file
    assert backup.read_text() == planned.before
    # Servers without a key stay as they were.
    if name.startswith(".config/Claude"):
        assert "filesystem" in data["mcpServers"]


def test_claude_code_user_file_rewrites_project_scoped_servers_too(home: Path) -> None:
    path = home / ".claude.json"
    planned = rewrite.plan(path, url=URL, token=TOKEN)
    assert sorted(planned.replaced) == ["linear", "stripe"]
    data = json.loads(planned.after)
    assert data["numStartups"] == 12  # the rest of the file is kept


def test_codex_toml_keeps_comments_and_other_tables(home: Path) -> None:
    path = home / ".codex/config.toml"
    planned = rewrite.plan(path, url=URL, token=TOKEN)
    rewrite.apply(planned)
    text = path.read_text()
    assert "# servers" in text
    assert 'model = "o3"' in text
    data = tomllib.loads(text)
    assert data["mcp_servers"] == {
        "grantry": {"url": URL, "http_headers": {"Authorization": f"Bearer {TOKEN}"}}
    }
    assert sorted(planned.replaced) == ["asana", "openai-docs"]


def test_a_file_with_comments_is_not_rewritten(home: Path) -> None:
    with pytest.raises(rewrite.CannotRewrite, match="comments or trailing commas"):
        rewrite.plan(home / ".config/Code/User/settings.json", url=URL, token=TOKEN)


def test_an_env_file_is_not_an_mcp_config(home: Path) -> None:
    with pytest.raises(rewrite.CannotRewrite, match="by hand once it is imported"):
        rewrite.plan(home / "project/.env", url=URL, token=TOKEN)


def test_oauth_entries_carry_no_token(home: Path) -> None:
    planned = rewrite.plan(home / ".cursor/mcp.json", url=URL, token=None)
    assert json.loads(planned.after)["mcpServers"]["grantry"] == {"url": URL}


def test_dry_run_prints_a_redacted_diff_and_changes_nothing(home: Path) -> None:
    path = home / ".cursor/mcp.json"
    before = path.read_text()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "grantry_cli",
            "rewrite",
            str(path),
            "--token",
            TOKEN,
            "--url",
            "https://grantry.example",
            "--dry-run",
        ],
        env={"HOME": str(home), "PYTHONPATH": str(CLI), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert path.read_text() == before
    assert "Dry run" in done.stdout
    assert '-      "env": {' in done.stdout
    assert '+    "grantry": {' in done.stdout
    assert key("slack_bot") not in done.stdout
    assert TOKEN not in done.stdout
    assert "‹Slack bot token fp_" in done.stdout
    assert not list(path.parent.glob("*.grantry-backup-*"))


def test_rewrite_says_how_the_client_signs_in(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rewrite", str(home / ".cursor/mcp.json"), "--url", "https://g.example"]) == 2
    assert "--worker NAME" in capsys.readouterr().err


@pytest.mark.parametrize(
    "client", ["cursor", "claude", "vscode", "codex", "windsurf", "zed", "claude-code"]
)
def test_mcp_config_prints_a_valid_snippet(client: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["mcp-config", "--client", client, "--url", "https://g.example", "--token", TOKEN])
        == 0
    )
    out = capsys.readouterr().out
    if client == "codex":
        assert tomllib.loads(out)["mcp_servers"]["grantry"]["url"] == "https://g.example/mcp"
    else:
        data = json.loads(out)
        assert list(data) == ["servers" if client == "vscode" else "mcpServers"]
        assert "https://g.example/mcp" in out
    # The snippet is a config the scanner accepts as clean: a Grantry token is no raw key.
    values = list(readers.read("toml" if client == "codex" else "json", out))
    assert values
