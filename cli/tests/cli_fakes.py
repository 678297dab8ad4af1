# ruff: noqa: E501 - configuration files written out as their clients keep them
"""Made-up keys in each provider's published format (random, never real) and a fake
home directory with the real-format configuration file of every client the scanner
knows, each holding some of them."""

from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass
from pathlib import Path

_rng = random.Random(20261207)
ALNUM = string.ascii_letters + string.digits


def _r(n: int, alphabet: str = ALNUM) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


def _hex(n: int) -> str:
    return _r(n, "0123456789abcdef")


def _uuid() -> str:
    return f"{_hex(8)}-{_hex(4)}-{_hex(4)}-{_hex(4)}-{_hex(12)}"


# One made-up key per format: (provider, kind, value).
KEYS: dict[str, tuple[str, str]] = {
    "github_classic": ("github", "ghp_" + _r(36)),
    "github_fine": ("github", f"github_pat_{_r(22)}_{_r(59)}"),
    "gitlab": ("gitlab", "glpat-" + _r(20, ALNUM + "_-")),
    "slack_bot": ("slack", f"xoxb-{_r(11, string.digits)}-{_r(13, string.digits)}-{_r(24)}"),
    "slack_user": ("slack", f"xoxp-{_r(11, string.digits)}-{_r(12, string.digits)}-{_r(32)}"),
    "stripe_live": ("stripe", "sk_live_" + _r(99)),
    "stripe_restricted": ("stripe", "rk_live_" + _r(99)),
    "openai": ("openai", "sk-proj-" + _r(156, ALNUM + "_-")),
    "linear": ("linear", "lin_api_" + _r(40)),
    "notion": ("notion", f"ntn_{_r(11, string.digits)}{_r(35)}"),
    "atlassian": ("jira", "ATATT3xFfGF0" + _r(180, ALNUM + "_-") + "=" + _hex(8).upper()),
    "hubspot": ("hubspot", "pat-na1-" + _uuid()),
    "airtable": ("airtable", f"pat{_r(14)}.{_hex(64)}"),
    "asana": ("asana", f"2/{_r(16, string.digits)}/{_r(16, string.digits)}:{_hex(32)}"),
    "google_api": ("google", "AIza" + _r(35, ALNUM + "_-")),
    "anthropic": ("anthropic", "sk-ant-api03-" + _r(95, ALNUM + "_-")),
    "generic": ("", _r(40, ALNUM)),
}
SA_PRIVATE_KEY = (
    "-----BEGIN PRIVATE KEY-----\n"
    + "\n".join(_r(64, ALNUM + "+/") for _ in range(8))
    + "\n-----END PRIVATE KEY-----\n"
)


def key(name: str) -> str:
    return KEYS[name][1]


@dataclass(frozen=True)
class Expected:
    file: str  # relative to the home directory
    location: str  # path in the file, or "line N"
    provider: str
    secret: str
    server: str = ""


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def build_home(home: Path) -> list[Expected]:
    """Every client's config under `home` (a project at home/project); what each holds."""
    expected: list[Expected] = []
    gh = "@modelcontextprotocol/server-github"

    # Claude Desktop (Linux location), the shape its docs show.
    _write(
        home / ".config/Claude/claude_desktop_config.json",
        json.dumps(
            {
                "mcpServers": {
                    "github": {
                        "command": "npx",
                        "args": ["-y", gh],
                        "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": key("github_classic")},
                    },
                    "filesystem": {
                        "command": "npx",
                        "args": [
                            "-y",
                            "@modelcontextprotocol/server-filesystem",
                            "/home/me/Desktop",
                        ],
                    },
                }
            },
            indent=2,
        ),
    )
    expected.append(
        Expected(
            ".config/Claude/claude_desktop_config.json",
            "mcpServers.github.env.GITHUB_PERSONAL_ACCESS_TOKEN",
            "github",
            key("github_classic"),
            "github",
        )
    )

    # Claude Code: ~/.claude.json (user and per-project scope) and a project's .mcp.json.
    _write(
        home / ".claude.json",
        json.dumps(
            {
                "numStartups": 12,
                "userID": _hex(64),
                "mcpServers": {
                    "linear": {
                        "type": "stdio",
                        "command": "npx",
                        "args": ["-y", "linear-mcp-server"],
                        "env": {"LINEAR_API_KEY": key("linear")},
                    }
                },
                "projects": {
                    "/home/me/project": {
                        "allowedTools": [],
                        "mcpServers": {
                            "stripe": {
                                "type": "stdio",
                                "command": "npx",
                                "args": [
                                    "-y",
                                    "@stripe/mcp",
                                    "--tools=all",
                                    f"--api-key={key('stripe_live')}",
                                ],
                            }
                        },
                    }
                },
            },
            indent=2,
        ),
    )
    expected += [
        Expected(
            ".claude.json",
            "mcpServers.linear.env.LINEAR_API_KEY",
            "linear",
            key("linear"),
            "linear",
        ),
        Expected(
            ".claude.json",
            'projects["/home/me/project"].mcpServers.stripe.args[3]',
            "stripe",
            key("stripe_live"),
            "stripe",
        ),
    ]
    _write(
        home / "project/.mcp.json",
        json.dumps(
            {
                "mcpServers": {
                    "notion": {
                        "type": "http",
                        "url": "https://mcp.notion.example/mcp",
                        "headers": {"Authorization": f"Bearer {key('notion')}"},
                    }
                }
            },
            indent=2,
        ),
    )
    expected.append(
        Expected(
            "project/.mcp.json",
            "mcpServers.notion.headers.Authorization",
            "notion",
            key("notion"),
            "notion",
        )
    )

    # Cursor, global and project.
    _write(
        home / ".cursor/mcp.json",
        json.dumps(
            {
                "mcpServers": {
                    "slack": {
                        "command": "npx",
                        "args": ["-y", "@modelcontextprotocol/server-slack"],
                        "env": {"SLACK_BOT_TOKEN": key("slack_bot"), "SLACK_TEAM_ID": "T01234567"},
                    }
                }
            },
            indent=2,
        ),
    )
    expected.append(
        Expected(
            ".cursor/mcp.json",
            "mcpServers.slack.env.SLACK_BOT_TOKEN",
            "slack",
            key("slack_bot"),
            "slack",
        )
    )
    _write(
        home / "project/.cursor/mcp.json",
        json.dumps(
            {
                "mcpServers": {
                    "gitlab": {
                        "command": "npx",
                        "args": ["-y", "@modelcontextprotocol/server-gitlab"],
                        "env": {
                            "GITLAB_PERSONAL_ACCESS_TOKEN": key("gitlab"),
                            "GITLAB_API_URL": "https://gitlab.com/api/v4",
                        },
                    }
                }
            },
            indent=2,
        ),
    )
    expected.append(
        Expected(
            "project/.cursor/mcp.json",
            "mcpServers.gitlab.env.GITLAB_PERSONAL_ACCESS_TOKEN",
            "gitlab",
            key("gitlab"),
            "gitlab",
        )
    )

    # VS Code: a workspace's .vscode/mcp.json and the user settings.json (with comments).
    _write(
        home / "project/.vscode/mcp.json",
        json.dumps(
            {
                "inputs": [{"type": "promptString", "id": "hubspot-token", "password": True}],
                "servers": {
                    "hubspot": {
                        "type": "stdio",
                        "command": "npx",
                        "args": ["-y", "@hubspot/mcp-server"],
                        "env": {"PRIVATE_APP_ACCESS_TOKEN": key("hubspot")},
                    },
                    "safe": {
                        "type": "stdio",
                        "command": "npx",
                        "args": ["x"],
                        "env": {"TOKEN": "${input:hubspot-token}"},
                    },
                },
            },
            indent=2,
        ),
    )
    expected.append(
        Expected(
            "project/.vscode/mcp.json",
            "servers.hubspot.env.PRIVATE_APP_ACCESS_TOKEN",
            "hubspot",
            key("hubspot"),
            "hubspot",
        )
    )
    _write(
        home / ".config/Code/User/settings.json",
        (
            '{\n  // editor\n  "editor.fontSize": 13,\n  /* MCP */\n  "mcp": {\n    "servers": {\n'
            '      "airtable": {\n        "command": "npx",\n        "args": ["-y", "airtable-mcp-server"],\n'
            f'        "env": {{"AIRTABLE_API_KEY": "{key("airtable")}"}},\n      }},\n    }},\n  }},\n}}\n'
        ),
    )
    expected.append(
        Expected(
            ".config/Code/User/settings.json",
            "mcp.servers.airtable.env.AIRTABLE_API_KEY",
            "airtable",
            key("airtable"),
            "airtable",
        )
    )

    # Windsurf.
    _write(
        home / ".codeium/windsurf/mcp_config.json",
        json.dumps(
            {
                "mcpServers": {
                    "atlassian": {
                        "serverUrl": "https://mcp.atlassian.example/v1/sse",
                        "headers": {"Authorization": f"Basic {key('atlassian')}"},
                    }
                }
            },
            indent=2,
        ),
    )
    expected.append(
        Expected(
            ".codeium/windsurf/mcp_config.json",
            "mcpServers.atlassian.headers.Authorization",
            "jira",
            key("atlassian"),
            "atlassian",
        )
    )

    # Codex.
    _write(
        home / ".codex/config.toml",
        (
            'model = "o3"\n\n# servers\n[mcp_servers.openai-docs]\ncommand = "npx"\n'
            'args = ["-y", "openai-docs-mcp"]\n\n[mcp_servers.openai-docs.env]\n'
            f'OPENAI_API_KEY = "{key("openai")}"\n\n[mcp_servers.asana]\nurl = "https://mcp.asana.example/sse"\n'
            f'http_headers = {{ Authorization = "Bearer {key("asana")}" }}\n'
        ),
    )
    expected += [
        Expected(
            ".codex/config.toml",
            "mcp_servers.openai-docs.env.OPENAI_API_KEY",
            "openai",
            key("openai"),
            "openai-docs",
        ),
        Expected(
            ".codex/config.toml",
            "mcp_servers.asana.http_headers.Authorization",
            "asana",
            key("asana"),
            "asana",
        ),
    ]

    # Zed (comments allowed).
    _write(
        home / ".config/zed/settings.json",
        (
            '// Zed settings\n{\n  "theme": "One Dark",\n  "context_servers": {\n    "github-fine": {\n'
            '      "source": "custom",\n      "command": "docker",\n'
            '      "args": ["run", "-i", "--rm", "-e", "GITHUB_PERSONAL_ACCESS_TOKEN", "ghcr.io/github/github-mcp-server"],\n'
            f'      "env": {{ "GITHUB_PERSONAL_ACCESS_TOKEN": "{key("github_fine")}" }}\n    }}\n  }}\n}}\n'
        ),
    )
    expected.append(
        Expected(
            ".config/zed/settings.json",
            "context_servers.github-fine.env.GITHUB_PERSONAL_ACCESS_TOKEN",
            "github",
            key("github_fine"),
            "github-fine",
        )
    )

    # .env, docker-compose, shell profiles.
    _write(
        home / "project/.env",
        (
            "# local\nDEBUG=1\nDATABASE_URL=postgres://app@localhost/app\n"
            f'SLACK_USER_TOKEN={key("slack_user")}\nexport ANTHROPIC_API_KEY="{key("anthropic")}"\n'
            f"SESSION_SECRET={key('generic')}\n"
        ),
    )
    expected += [
        Expected("project/.env", "line 4", "slack", key("slack_user")),
        Expected("project/.env", "line 5", "anthropic", key("anthropic")),
        Expected("project/.env", "line 6", "", key("generic")),
    ]
    _write(
        home / "project/docker-compose.yml",
        (
            "services:\n  agent:\n    image: example/agent:1.2\n    environment:\n"
            f"      STRIPE_API_KEY: {key('stripe_restricted')}\n      LOG_LEVEL: info\n"
            "  worker:\n    image: example/worker\n    environment:\n"
            f"      - GOOGLE_API_KEY={key('google_api')}\n      - TZ=UTC\nvolumes:\n  data: {{}}\n"
        ),
    )
    expected += [
        Expected(
            "project/docker-compose.yml",
            "services.agent.environment.STRIPE_API_KEY",
            "stripe",
            key("stripe_restricted"),
            "agent",
        ),
        Expected(
            "project/docker-compose.yml",
            "services.worker.environment.GOOGLE_API_KEY",
            "google",
            key("google_api"),
            "worker",
        ),
    ]
    _write(
        home / ".bashrc",
        "alias ll='ls -l'\nexport PATH=$HOME/bin:$PATH\n"
        f"export GITHUB_TOKEN={key('github_classic')}\n",
    )
    expected.append(Expected(".bashrc", "line 3", "github", key("github_classic")))
    _write(home / ".config/fish/config.fish", f"set -gx GITLAB_TOKEN {key('gitlab')}\n")
    expected.append(Expected(".config/fish/config.fish", "line 1", "gitlab", key("gitlab")))
    return expected


def build_clean(root: Path) -> None:
    """Configs full of look-alikes that are not secrets: UUIDs, hashes, commit ids, npm
    integrity strings, a base64 image, placeholders, variable references, Grantry tokens."""
    png = "data:image/png;base64," + _r(600, ALNUM + "+/") + "=="
    _write(
        root / ".cursor/mcp.json",
        json.dumps(
            {
                "mcpServers": {
                    "grantry": {
                        "url": "https://grantry.example/mcp",
                        "headers": {"Authorization": "Bearer gry_" + _r(43, ALNUM + "_")},
                    },
                    "github": {
                        "command": "npx",
                        "args": ["-y", "@modelcontextprotocol/server-github"],
                        "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "${GITHUB_TOKEN}"},
                    },
                    "db": {
                        "command": "uvx",
                        "args": ["mcp-server-postgres", "postgresql://localhost/app"],
                        "env": {
                            "DEVICE_ID": _uuid(),
                            "SESSION_ID": _uuid(),
                            "API_KEY": "<your-api-key>",
                            "TOKEN": "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                            "PASSWORD": "changeme-please",
                        },
                    },
                }
            },
            indent=2,
        ),
    )
    _write(
        root / ".mcp.json",
        json.dumps(
            {
                "mcpServers": {
                    "docs": {
                        "type": "http",
                        "url": "https://docs.example/mcp?version=2",
                        "headers": {"X-Client-Id": _uuid(), "X-Request-Digest": _hex(64)},
                    }
                },
                "icon": png,
                "commit": _hex(40),
                "integrity": "sha512-" + _r(86, ALNUM + "+/") + "==",
                "lock": {"sha256": _hex(64), "md5": _hex(32)},
            },
            indent=2,
        ),
    )
    _write(
        root / ".env",
        (
            "NODE_ENV=production\nPORT=8080\nAPI_URL=https://api.example.com/v1\n"
            f"BUILD_SHA={_hex(40)}\nREQUEST_ID={_uuid()}\nGITHUB_TOKEN=\nOPENAI_API_KEY=sk-...\n"
            "STRIPE_KEY=sk_test_your_key_here\nSECRET_KEY=${SECRET_KEY}\nAUTH_TOKEN=your-token-here\n"
            "DATABASE_URL=postgres://app:${DB_PASSWORD}@db/app\n"
        ),
    )
    _write(
        root / ".codex/config.toml",
        (
            '[mcp_servers.grantry]\nurl = "https://grantry.example/mcp"\nbearer_token_env_var = "GRANTRY_TOKEN"\n'
            f'[mcp_servers.grantry.env]\nTRACE_ID = "{_uuid()}"\n'
        ),
    )
    _write(
        root / "docker-compose.yml",
        (
            "services:\n  app:\n    image: example/app@sha256:" + _hex(64) + "\n    environment:\n"
            "      - API_TOKEN=${API_TOKEN}\n      - CACHE_KEY_PREFIX=app\n"
        ),
    )
    _write(
        root / ".zshrc", 'export EDITOR=vim\nexport GOPATH=$HOME/go\neval "$(starship init zsh)"\n'
    )
