"""The `grantry` command.

    grantry scan [PATH…] [--json] [--check] [--upload]
    grantry login --url URL --org ORG
    grantry import FINDING [--name CONNECTION]
    grantry rewrite CONFIG [--worker NAME | --token gry_… | --oauth] [--dry-run]
    grantry call ACTION --input JSON
    grantry mcp-config --client cursor|claude|claude-code|vscode|windsurf|codex|zed
    grantry exchange --audience ORG/WORKER (--github-actions | --token-file PATH) [--url URL]
                     [--dpop-key PATH]
    grantry dpop-key PATH

Exit status: 0 on success (a scan that finds keys still succeeds), 1 when Grantry or
the input refuses, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from grantry_cli import __version__, api, check, rewrite
from grantry_cli.scan import Finding, ScanResult, scan

CLIENT_CHOICES = (
    "cursor",
    "claude",
    "claude-desktop",
    "claude-code",
    "vscode",
    "windsurf",
    "codex",
    "zed",
)


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _home(path: str) -> str:
    home = str(Path.home())
    return "~" + path[len(home) :] if path.startswith(home + os.sep) else path


# --- scan ---------------------------------------------------------------------------


def _print_scan(result: ScanResult, checks: dict[str, check.ScopeCheck]) -> None:
    keys = {f.secret.fingerprint for f in result.findings}
    _out(
        f"Scanned {len(result.files_scanned)} files on {result.host}: "
        f"{len(keys)} raw keys in {len(result.findings)} places."
    )
    for finding in result.findings:
        where = f"{_home(finding.file)}  {finding.location}"
        if finding.line and not finding.location.startswith("line"):
            where += f" (line {finding.line})"
        _out(f"\n  {where}")
        used_by = (
            f'MCP server "{finding.server}"'
            if finding.server and finding.client != "compose"
            else ""
        )
        if finding.program:
            used_by += f" ({finding.program})" if used_by else finding.program
        provider = finding.secret.provider or "unknown provider"
        _out(
            f"    {finding.secret.label} [{provider}]" + (f", used by {used_by}" if used_by else "")
        )
        _out(f"    fingerprint {finding.secret.fingerprint}")
        result_check = checks.get(finding.secret.fingerprint)
        if result_check is not None:
            scopes = ", ".join(result_check.scopes) if result_check.scopes else "not told"
            note = f" ({result_check.note})" if result_check.note else ""
            _out(f"    check: {result_check.status}; scopes: {scopes}{note}")
    if result.problems:
        _out("\nSkipped or read differently (the scan went on):")
        for problem in result.problems:
            _out(f"  {_home(problem.path)}: {problem.message}")


def _run_checks(findings: list[Finding], urls: dict[str, str]) -> dict[str, check.ScopeCheck]:
    done: dict[str, check.ScopeCheck] = {}
    for finding in findings:
        if finding.secret.fingerprint not in done:
            done[finding.secret.fingerprint] = check.check(finding.secret, urls)
    return done


def cmd_scan(args: argparse.Namespace) -> int:
    try:
        urls = check.base_urls(args.check_url)
    except ValueError as exc:
        _err(f"--check-url: {exc}")
        return 2
    result = scan([Path(p).expanduser() for p in args.paths])
    checks = _run_checks(result.findings, urls) if args.check else {}
    document = result.as_json()
    for item, finding in zip(document["findings"], result.findings, strict=True):  # type: ignore[call-overload]
        if finding.secret.fingerprint in checks:
            item["check"] = checks[finding.secret.fingerprint].as_json()
    if args.json:
        _out(json.dumps(document, indent=2))
    else:
        _print_scan(result, checks)
    if args.upload:
        try:
            answer = api.ManagementAPI(api.load_login()).post("inventory/scans/", document)
        except api.APIFailure as exc:
            _err(f"Upload refused: {exc}")
            return 1
        if not args.json:
            _out(
                f"\nUploaded to Grantry: {answer.get('findings_new', 0)} new keys, "
                f"{answer.get('findings_seen', 0)} seen before, "
                f"{answer.get('locations_gone', 0)} places no longer holding a key."
            )
    return 0


# --- login --------------------------------------------------------------------------


def cmd_login(args: argparse.Namespace) -> int:
    if args.token_stdin:
        token = sys.stdin.readline().strip()
    else:
        token = getpass.getpass("Personal API token (gryp_…, from API tokens in Grantry): ").strip()
    if not token.startswith("gryp_"):
        _err("That is not a personal API token (they start with gryp_).")
        return 1
    login = api.Login(args.url.rstrip("/"), args.org, token)
    try:
        api.ManagementAPI(login).get("inventory/summary/")
    except api.APIFailure as exc:
        _err(f"Grantry refused the login: {exc}")
        return 1
    path = api.save_login(login)
    _out(f"Logged in to {login.url} (organization {login.org}); saved in {path}.")
    return 0


# --- import -------------------------------------------------------------------------


def _finding(management: api.ManagementAPI, ident: str) -> dict[str, Any]:
    if ident.startswith("fp_"):
        page = management.get(f"inventory/findings/?fingerprint={ident}")
        results = page.get("results") or []
        if not results:
            raise api.APIFailure(
                f"Grantry has no finding with fingerprint {ident}: "
                "run `grantry scan --upload` first."
            )
        return dict(results[0])
    return dict(management.get(f"inventory/findings/{ident}/"))


def cmd_import(args: argparse.Namespace) -> int:
    try:
        management = api.ManagementAPI(api.load_login())
        finding = _finding(management, args.finding)
    except api.APIFailure as exc:
        _err(str(exc))
        return 1
    files = [Path(p) for p in args.source] or sorted(
        {Path(loc["file"]) for loc in finding.get("locations", []) if Path(loc["file"]).exists()}
    )
    local = [f for f in scan(files).findings if f.secret.fingerprint == finding["fingerprint"]]
    if not local:
        _err(
            f"The key {finding['fingerprint']} is not in "
            f"{', '.join(map(str, files)) or 'any file here'} "
            "any more: run the import on the machine (and as the user) that holds it, or "
            "name the file with --from."
        )
        return 1
    secret = local[0].secret
    name = args.name or f"{secret.provider or 'key'}-{local[0].server or 'imported'}"[:60]
    body: dict[str, Any] = {"secret": secret.value, "connection_name": name}
    if args.param:
        body["base_url_params"] = dict(p.partition("=")[::2] for p in args.param)
    try:
        answer = management.post(f"inventory/findings/{finding['id']}/import/", body)
    except api.APIFailure as exc:
        _err(f"Import refused: {exc}")
        return 1
    _out(
        f"Imported {finding['fingerprint']} into connection '{answer.get('connection_name')}' "
        f"(finding {answer.get('id')}, now {answer.get('state')}). The key was checked at "
        f"{secret.provider} first."
    )
    _out(f"Next: grantry rewrite {_home(str(local[0].file))} --worker WORKER")
    return 0


# --- rewrite ------------------------------------------------------------------------


def _worker_token(management: api.ManagementAPI, worker: str) -> str:
    page = management.get("workers/?page_size=500")
    match = [w for w in page.get("results", []) if w.get("name") == worker]
    if not match:
        raise api.APIFailure(
            f"No worker named '{worker}': create it (with a role) in Grantry first."
        )
    minted = management.post(f"workers/{match[0]['id']}/tokens/", {})
    return str(minted["token"])


def _rewrite_token(args: argparse.Namespace, login: api.Login | None) -> tuple[str | None, int]:
    """The token the rewritten entry carries (None with --oauth) and 0, or an exit code
    after saying what is missing. With --worker, mints one (not on a dry run)."""
    token = None if args.oauth else (args.token or os.environ.get("GRANTRY_TOKEN"))
    if args.oauth or token:
        return token, 0
    if not args.worker:
        _err(
            "Say how the client signs in: --worker NAME (mints a token), --token gry_… or --oauth."
        )
        return None, 2
    if args.dry_run:
        return "gry_‹minted-at-rewrite›", 0
    if login is None:
        _err("--worker needs `grantry login` first.")
        return None, 1
    return _worker_token(api.ManagementAPI(login), args.worker), 0


def cmd_rewrite(args: argparse.Namespace) -> int:
    path = Path(args.config).expanduser()
    login: api.Login | None = None
    try:
        login = api.load_login()
    except api.APIFailure:
        login = None
    base = (args.url or (login.url if login else "") or os.environ.get("GRANTRY_URL", "")).rstrip(
        "/"
    )
    if not base:
        _err("Name Grantry's URL with --url (or run `grantry login`).")
        return 2
    try:
        # A file that cannot be rewritten fails here, before a token is minted for it.
        rewrite.plan(path, url=f"{base}/mcp", token=None, only=args.server)
        token, code = _rewrite_token(args, login)
        if code:
            return code
        planned = rewrite.plan(path, url=f"{base}/mcp", token=token, only=args.server)
    except rewrite.CannotRewrite as exc:
        _err(str(exc))
        return 1
    except api.APIFailure as exc:
        _err(f"Grantry refused: {exc}")
        return 1
    _out(planned.diff(hide=[token or ""]))
    if args.dry_run:
        _out(f"Dry run: {path} was not changed.")
        return 0
    backup = rewrite.apply(planned)
    _out(
        f"Rewrote {path}: {', '.join(planned.replaced)} replaced by '{rewrite.ENTRY_NAME}' "
        f"({'OAuth' if args.oauth else 'worker token'})."
    )
    _out(f"Backup: {backup} (it still holds the old key: delete it once the key is rotated).")
    if login is not None:
        _report_replaced(api.ManagementAPI(login), planned, path)
    return 0


def _report_replaced(management: api.ManagementAPI, planned: rewrite.Rewrite, path: Path) -> None:
    import socket

    for fp in sorted({s.fingerprint for s in planned.secrets}):
        try:
            finding = _finding(management, fp)
            management.post(
                f"inventory/findings/{finding['id']}/config-replaced/",
                {"host": socket.gethostname(), "file": str(path)},
            )
            _out(f"Told Grantry: {fp} is out of {path}.")
        except api.APIFailure as exc:
            _err(f"Could not tell Grantry about {fp}: {exc}")


# --- call and mcp-config ------------------------------------------------------------


def _grantry_url(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url).rstrip("/")
    if os.environ.get("GRANTRY_URL"):
        return os.environ["GRANTRY_URL"].rstrip("/")
    try:
        return api.load_login().url
    except api.APIFailure:
        return ""


def cmd_call(args: argparse.Namespace) -> int:
    url, token = _grantry_url(args), args.token or os.environ.get("GRANTRY_TOKEN", "")
    if not url or not token:
        _err("Set GRANTRY_URL and GRANTRY_TOKEN (a worker token, gry_…) or pass --url/--token.")
        return 2
    try:
        payload: dict[str, Any] = {"input": json.loads(args.input)}
    except ValueError as exc:
        _err(f"--input is not JSON: {exc}")
        return 2
    if args.connection:
        payload["connection"] = args.connection
    try:
        key = _dpop_key(args.dpop_key)
        answer = api.agent_call(url, token, args.action, payload, dpop_key=key)
    except _KeyUnusable as exc:
        _err(str(exc))
        return 2
    except api.APIFailure as exc:
        _err(f"{args.action}: {exc}")
        return 1
    _out(json.dumps(answer, indent=2))
    return 0


def cmd_mcp_config(args: argparse.Namespace) -> int:
    url = _grantry_url(args)
    if not url:
        _err("Name Grantry's URL with --url (or run `grantry login`).")
        return 2
    client = "claude-desktop" if args.client == "claude" else args.client
    token = None if args.oauth else (args.token or os.environ.get("GRANTRY_TOKEN") or "gry_…")
    _out(rewrite.snippet(client, f"{url}/mcp", token).rstrip("\n"))
    return 0


def cmd_exchange(args: argparse.Namespace) -> int:
    """A workload's signed identity for a short-lived worker token, printed alone on stdout
    (`export GRANTRY_TOKEN=$(grantry exchange …)`): README, "No secret in the runtime"."""
    url = _grantry_url(args)
    if not url:
        _err("Name Grantry's URL with --url (or GRANTRY_URL).")
        return 2
    try:
        key = _dpop_key(args.dpop_key)
        if args.github_actions:
            subject_token = api.github_actions_token(args.oidc_audience or url)
        else:
            subject_token = Path(args.token_file).read_text(encoding="utf-8").strip()
        answer = api.token_exchange(url, subject_token, args.audience, dpop_key=key)
    except _KeyUnusable as exc:
        _err(str(exc))
        return 2
    except OSError as exc:
        _err(f"Could not read {args.token_file}: {exc.strerror}")
        return 1
    except api.APIFailure as exc:
        _err(f"Exchange refused: {exc}")
        return 1
    if args.json:
        _out(json.dumps(answer, indent=2))
    else:
        _out(str(answer["access_token"]))
    return 0


class _KeyUnusable(Exception):
    pass


def _dpop_key(path: str | None) -> Any:
    """The DPoP key in `path` (grantry_cli.dpop, imported only now: it needs the `dpop`
    extra), or None without a path."""
    if not path:
        return None
    try:
        from grantry_cli.dpop import DPoPKey
    except ImportError:
        raise _KeyUnusable(
            "DPoP needs the optional extra: pip install 'grantry-cli[dpop]' (joserfc, httpx2)."
        ) from None
    try:
        return DPoPKey.load(path)
    except (OSError, ValueError) as exc:
        raise _KeyUnusable(f"Could not read the DPoP key {path}: {exc}") from None


def cmd_dpop_key(args: argparse.Namespace) -> int:
    """Make the agent's DPoP key in PATH once (owner-only), and print its thumbprint and
    public JWK: what a token is bound to when it is minted (dashboard or API)."""
    try:
        from grantry_cli.dpop import DPoPKey
    except ImportError:
        _err("DPoP needs the optional extra: pip install 'grantry-cli[dpop]' (joserfc, httpx2).")
        return 2
    try:
        key, created = DPoPKey.load_or_create(args.path)
    except (OSError, ValueError) as exc:
        _err(f"Could not read or write the DPoP key {args.path}: {exc}")
        return 1
    if created:
        _err(f"New DPoP key in {args.path} (keep it on this machine; only you can read it).")
    _out(json.dumps({"jkt": key.jkt, "jwk": key.public_jwk}, indent=2))
    return 0


# --- the parser ---------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="grantry", description="Move agents off raw keys.")
    top.add_argument("--version", action="version", version=f"grantry {__version__}")
    sub = top.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "scan", help="find raw keys in agent configs, .env files, compose files, shell profiles"
    )
    p.add_argument(
        "paths", nargs="*", help="files or folders (default: every client's config, then .)"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--check", action="store_true", help="ask each provider what each key can do")
    p.add_argument(
        "--check-url", action="append", metavar="PROVIDER=URL", help="another base URL for --check"
    )
    p.add_argument(
        "--upload", action="store_true", help="send the inventory (no secrets) to Grantry"
    )
    p.set_defaults(run=cmd_scan)

    p = sub.add_parser(
        "login", help="save Grantry's URL, the organization and a personal API token"
    )
    p.add_argument("--url", required=True)
    p.add_argument("--org", required=True, help="the organization's slug")
    p.add_argument("--token-stdin", action="store_true", help="read the token from standard input")
    p.set_defaults(run=cmd_login)

    p = sub.add_parser("import", help="move one key into a Grantry connection")
    p.add_argument("finding", help="the finding's id (fnd_…) or the key's fingerprint (fp_…)")
    p.add_argument("--name", help="the connection's name (default: provider-server)")
    p.add_argument(
        "--from",
        dest="source",
        action="append",
        default=[],
        metavar="FILE",
        help="the file that holds the key (default: where the inventory saw it)",
    )
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="a base URL parameter")
    p.set_defaults(run=cmd_import)

    p = sub.add_parser("rewrite", help="point an MCP config at Grantry instead of raw keys")
    p.add_argument("config")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--worker", help="mint a token for this worker and write it in")
    how.add_argument("--token", help="a worker token (gry_…) to write in")
    how.add_argument("--oauth", action="store_true", help="no token: the client signs in itself")
    p.add_argument("--server", action="append", help="only this MCP server entry (repeatable)")
    p.add_argument("--url", help="Grantry's URL (default: from login)")
    p.add_argument("--dry-run", action="store_true", help="print the diff, change nothing")
    p.set_defaults(run=cmd_rewrite)

    p = sub.add_parser("call", help="run one action with a worker token (GRANTRY_TOKEN)")
    p.add_argument("action", help="e.g. github.list_repos")
    p.add_argument("--input", default="{}", help="the action's input as JSON")
    p.add_argument("--connection", help="which connection, when several are allowed")
    p.add_argument("--url")
    p.add_argument("--token")
    p.add_argument(
        "--dpop-key", help="the key the token is bound to (DPoP): sign a proof for the call"
    )
    p.set_defaults(run=cmd_call)

    p = sub.add_parser("mcp-config", help="print the MCP config entry for a client")
    p.add_argument("--client", required=True, choices=CLIENT_CHOICES)
    p.add_argument("--token", help="a worker token (default: GRANTRY_TOKEN)")
    p.add_argument("--oauth", action="store_true", help="no token: the client signs in itself")
    p.add_argument("--url")
    p.set_defaults(run=cmd_mcp_config)

    p = sub.add_parser(
        "exchange",
        help="trade this workload's signed identity (CI job, pod) for a short-lived worker token",
    )
    p.add_argument("--audience", required=True, help="the worker, as <org slug>/<worker name>")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--github-actions", action="store_true", help="ask GitHub for this job's OIDC token"
    )
    source.add_argument(
        "--token-file", help="a file holding the JWT (a projected service-account token)"
    )
    p.add_argument("--oidc-audience", help="the aud to ask GitHub for (default: Grantry's URL)")
    p.add_argument("--json", action="store_true", help="print the whole answer")
    p.add_argument("--url")
    p.add_argument(
        "--dpop-key",
        help="bind the token to this key (DPoP, RFC 9449; made by `grantry dpop-key`)",
    )
    p.set_defaults(run=cmd_exchange)

    p = sub.add_parser(
        "dpop-key",
        help="make this agent's DPoP key once and print its thumbprint (jkt) and public JWK",
    )
    p.add_argument("path", help="the key file (created owner-only when missing)")
    p.set_defaults(run=cmd_dpop_key)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
