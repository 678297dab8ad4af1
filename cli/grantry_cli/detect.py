"""What a raw key looks like: the published key formats of Grantry's providers, a few
well-known others, and generic high-entropy secrets under a secret-sounding name.

`detect(value, name=...)` returns the secrets inside one configuration value. Nothing
here prints or stores a secret: a `Secret` carries the value for the caller (the
import needs it) but its repr does not, and the inventory only ever sees
`fingerprint(value)`.

Why no detect-secrets: its detectors are regular expressions over raw lines, while a
finding here needs the structure around it (the JSON or TOML path, the MCP server, the
variable name); of Grantry's providers it knows GitHub (classic formats only), GitLab,
Slack, Stripe and OpenAI, not Linear, Notion, Atlassian, HubSpot, Airtable, Asana or a
Google service account; and it brings requests and PyYAML onto every agent machine. The
part that would fit, Shannon entropy, is `entropy()` below.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class KeyFormat:
    kind: str  # e.g. "github_classic_pat"
    provider: str  # Grantry's catalog key ("github", "jira", …), or another known name
    label: str  # what a person calls it
    pattern: re.Pattern[str]


def _fmt(kind: str, provider: str, label: str, regex: str) -> KeyFormat:
    # A key ends where a character that cannot be part of it starts.
    return KeyFormat(
        kind, provider, label, re.compile(rf"(?<![A-Za-z0-9_-]){regex}(?![A-Za-z0-9_])")
    )


# Each line: the provider's documented format (prefix, alphabet, length). Order matters
# where one prefix contains another (Anthropic's sk-ant- before OpenAI's sk-).
FORMATS: tuple[KeyFormat, ...] = (
    _fmt(
        "github_fine_grained_pat",
        "github",
        "GitHub fine-grained personal access token",
        r"github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}",
    ),
    _fmt(
        "github_classic_pat",
        "github",
        "GitHub personal access token (classic)",
        r"ghp_[A-Za-z0-9]{36}",
    ),
    _fmt("github_oauth_token", "github", "GitHub OAuth access token", r"gho_[A-Za-z0-9]{36}"),
    _fmt("github_app_token", "github", "GitHub App token", r"gh[usr]_[A-Za-z0-9]{36}"),
    _fmt(
        "gitlab_pat",
        "gitlab",
        "GitLab personal, project or group access token",
        r"glpat-[A-Za-z0-9_.-]{20,}",
    ),
    _fmt("gitlab_deploy_token", "gitlab", "GitLab deploy token", r"gldt-[A-Za-z0-9_-]{20,}"),
    _fmt("slack_bot_token", "slack", "Slack bot token", r"xoxb-[0-9]{6,}-[0-9A-Za-z-]{10,}"),
    _fmt("slack_user_token", "slack", "Slack user token", r"xoxp-[0-9]{6,}-[0-9A-Za-z-]{10,}"),
    _fmt("slack_token", "slack", "Slack token", r"xox[aer]-[0-9A-Za-z-]{10,}"),
    _fmt(
        "slack_app_token",
        "slack",
        "Slack app-level token",
        r"xapp-[0-9]-[A-Z0-9]+-[0-9]+-[a-f0-9]{20,}",
    ),
    _fmt("stripe_secret_key", "stripe", "Stripe secret key", r"sk_(?:live|test)_[0-9A-Za-z]{24,}"),
    _fmt(
        "stripe_restricted_key",
        "stripe",
        "Stripe restricted key",
        r"rk_(?:live|test)_[0-9A-Za-z]{24,}",
    ),
    _fmt(
        "anthropic_api_key",
        "anthropic",
        "Anthropic API key",
        r"sk-ant-(?:api|admin)[0-9]{2}-[A-Za-z0-9_-]{80,}",
    ),
    _fmt(
        "openai_project_key",
        "openai",
        "OpenAI API key",
        r"sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,}",
    ),
    _fmt(
        "openai_legacy_key",
        "openai",
        "OpenAI API key (legacy)",
        r"sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}",
    ),
    _fmt("linear_api_key", "linear", "Linear personal API key", r"lin_api_[A-Za-z0-9]{40}"),
    _fmt("linear_oauth_token", "linear", "Linear OAuth token", r"lin_oauth_[A-Za-z0-9]{40,}"),
    _fmt("notion_token", "notion", "Notion integration token", r"ntn_[0-9]{11}[A-Za-z0-9]{35}"),
    _fmt(
        "notion_legacy_token",
        "notion",
        "Notion integration token (legacy)",
        r"secret_[A-Za-z0-9]{43}",
    ),
    _fmt("atlassian_api_token", "jira", "Atlassian API token", r"ATATT3[A-Za-z0-9_=-]{150,}"),
    _fmt(
        "hubspot_private_app_token",
        "hubspot",
        "HubSpot private app token",
        r"pat-(?:na|eu|ap)[0-9]-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    ),
    _fmt(
        "airtable_pat",
        "airtable",
        "Airtable personal access token",
        r"pat[A-Za-z0-9]{14}\.[0-9a-f]{64}",
    ),
    _fmt(
        "asana_pat",
        "asana",
        "Asana personal access token",
        r"[0-9]/[0-9]{10,20}(?:/[0-9]{10,20})?:[0-9a-f]{32}",
    ),
    _fmt("google_api_key", "google", "Google API key", r"AIza[0-9A-Za-z_-]{35}"),
    _fmt(
        "google_oauth_client_secret",
        "google",
        "Google OAuth client secret",
        r"GOCSPX-[A-Za-z0-9_-]{28}",
    ),
    _fmt("google_refresh_token", "google", "Google OAuth refresh token", r"1//0[A-Za-z0-9_-]{40,}"),
    _fmt(
        "salesforce_access_token",
        "salesforce",
        "Salesforce access token",
        r"00D[A-Za-z0-9]{12,15}![A-Za-z0-9._]{80,}",
    ),
    _fmt("aws_access_key_id", "aws", "AWS access key id", r"(?:AKIA|ASIA)[0-9A-Z]{16}"),
    KeyFormat(
        "private_key",
        "",
        "Private key",
        re.compile(
            r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY-----[\s\S]+?"
            r"-----END (?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY-----"
        ),
    ),
)

# Grantry's own tokens are what the migration leaves behind, not raw keys to move.
GRANTRY_TOKEN = re.compile(r"^(?:Bearer\s+)?gryp?_[A-Za-z0-9_]+$")

SECRET_NAME = re.compile(
    r"(?i)(secret|token|passw(?:or)?d|passwd|api[_-]?key|apikey|access[_-]?key|private[_-]?key"
    r"|credential|auth|(?:^|_)pat(?:$|_)|bearer|signing[_-]?key|client[_-]?secret)"
)
# Values that stand for a secret rather than being one.
PLACEHOLDER = re.compile(
    r"(?i)^(?:\$\{[^}]*\}|\$[A-Z_][A-Z0-9_]*|\{\{.*\}\}|<[^>]*>|%[A-Z_]+%|\*+|x{4,}.*|.*(?:your|example|"
    r"changeme|placeholder|replace[_-]?me|dummy|redacted|insert).*)$"
)
UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
URL_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/:@\s]+:([^@\s/]+)@", re.IGNORECASE)
AUTH_SCHEME = re.compile(r"^(?:Bearer|Basic|Token|token|Bot)\s+(\S+)$")

MIN_GENERIC_LENGTH = 16
MIN_FORMAT_ENTROPY = 3.0  # a real key of a known format is random after its prefix
MIN_ENTROPY = 3.5  # bits per character; random base62 is ~5.9, English words ~3


@dataclass(frozen=True)
class Secret:
    kind: str
    provider: str
    label: str
    value: str = field(repr=False)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.value)


def fingerprint(secret: str) -> str:
    """What the inventory knows of a key: enough to recognise it again, nothing to use.
    96 bits of a domain-separated SHA-256. Only high-entropy values are ever reported,
    so the digest cannot be reversed by guessing."""
    digest = hashlib.sha256(b"grantry-fingerprint:v1:" + secret.encode()).hexdigest()
    return f"fp_{digest[:24]}"


def entropy(text: str) -> float:
    """Shannon entropy in bits per character."""
    if not text:
        return 0.0
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def known_formats(value: str) -> list[Secret]:
    found: list[Secret] = []
    taken: list[tuple[int, int]] = []
    for fmt in FORMATS:
        for match in fmt.pattern.finditer(value):
            span = match.span()
            if any(start < span[1] and span[0] < end for start, end in taken):
                continue
            if entropy(match.group(0)) < MIN_FORMAT_ENTROPY:  # ghp_xxxxxxxx…: a placeholder
                continue
            taken.append(span)
            found.append(Secret(fmt.kind, fmt.provider, fmt.label, match.group(0)))
    return found


def _looks_random(value: str) -> bool:
    if len(value) < MIN_GENERIC_LENGTH or any(c.isspace() for c in value):
        return False
    if PLACEHOLDER.match(value) or UUID.match(value) or value.startswith(("/", "./", "~/")):
        return False
    if "://" in value:
        return False
    classes = sum(
        (
            any(c.islower() for c in value),
            any(c.isupper() for c in value),
            any(c.isdigit() for c in value),
        )
    )
    if re.fullmatch(r"[0-9a-f]+", value):  # hex: at most 4 bits a character
        return len(value) >= 32 and entropy(value) >= 3.0
    return classes >= 2 and entropy(value) >= MIN_ENTROPY


def generic(value: str, name: str) -> Secret | None:
    """A secret of no known format: a random-looking value under a secret-sounding name,
    or the password of a URL."""
    url = URL_PASSWORD.match(value)
    password = url.group(1) if url else ""
    if len(password) >= 8 and not PLACEHOLDER.match(password) and entropy(password) >= 2.5:
        return Secret("url_password", "", "Password in a URL", password)
    if not SECRET_NAME.search(name):
        return None
    scheme = AUTH_SCHEME.match(value)
    candidate = scheme.group(1) if scheme else value
    if _looks_random(candidate):
        return Secret("generic_secret", "", "High-entropy secret", candidate)
    return None


def service_account(value: str) -> Secret | None:
    """A Google service-account key (its JSON, kept whole in a variable or a file): the
    secret is its private key."""
    if "service_account" not in value or not value.lstrip().startswith("{"):
        return None
    try:
        data = json.loads(value)
    except ValueError:
        return None
    if isinstance(data, dict) and data.get("type") == "service_account":
        key = data.get("private_key")
        if isinstance(key, str) and key:
            return Secret("google_service_account", "google", "Google service account key", key)
    return None


def detect(value: str, *, name: str = "") -> list[Secret]:
    """The secrets in one value. `name` is the variable, key or header it sits under."""
    if not value or GRANTRY_TOKEN.match(value.strip()):
        return []
    account = service_account(value)
    if account is not None:
        return [account]
    found = known_formats(value)
    if found:
        return found
    secret = generic(value.strip(), name)
    return [secret] if secret else []
