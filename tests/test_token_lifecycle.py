"""One token lifecycle (docs/architecture.md, `apps/core` and "The tenant boundary").

Worker tokens, personal API tokens and the tokens Grantry's OAuth server issues are all an
`apps.core.models.IssuedToken`, minted by `apps.core.tokens.issued_token_create` and revoked by
`issued_token_revoke`; a failed authentication of either kind is refused by
`apps.accounts.auth_failures.auth_refuse`. This reads the source and fails on a second way:
a token row created directly, a raw token generated outside the lifecycle (the OAuth server
alone must generate first, because django-oauth-toolkit hands the raw value out before the
row exists), or an authenticator that records failures itself."""

from __future__ import annotations

import ast
from pathlib import Path

from django.apps import apps

from apps.core.models import IssuedToken

ROOT = Path(__file__).resolve().parent.parent
LIFECYCLE = "apps/core/tokens.py"
# Generates first, then hands the value to issued_token_create (through mcpauth.services).
GENERATES_FIRST = {"apps/mcpauth/validator.py"}
FAILURES = "apps/accounts/auth_failures.py"
FAILURE_STEPS = {"auth_failure_record", "auth_throttle_check"}


def token_model_names() -> set[str]:
    return {m.__name__ for m in apps.get_models() if issubclass(m, IssuedToken)}


def second_ways(root: Path = ROOT, names: set[str] | None = None) -> set[tuple[str, str]]:
    names = token_model_names() if names is None else names
    found: set[tuple[str, str]] = set()
    for path in sorted((root / "apps").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        parts = path.relative_to(root).parts
        if "tests" in parts or "migrations" in parts or rel == LIFECYCLE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                imported = {a.name for a in node.names}
                if node.module == "apps.core.tokens" and rel not in GENERATES_FIRST:
                    found |= {(rel, name) for name in imported & {"generate_token"}}
                if node.module == "apps.accounts.auth_failures" and rel != FAILURES:
                    found |= {(rel, name) for name in imported & FAILURE_STEPS}
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "create"
                and isinstance(node.value, ast.Attribute)
                and node.value.attr in ("objects", "_default_manager")
                and isinstance(node.value.value, ast.Name)
                and node.value.value.id in names
            ):
                found.add((rel, f"{node.value.value.id}.objects.create"))
    return found


def test_every_token_is_minted_and_refused_through_the_one_lifecycle() -> None:
    assert second_ways() == set(), (
        "Mint with apps.core.tokens.issued_token_create, revoke with issued_token_revoke, "
        "refuse a failed authentication with apps.accounts.auth_failures.auth_refuse."
    )


def test_both_token_kinds_are_issued_tokens() -> None:
    assert {"WorkerToken", "PersonalAPIToken"} <= token_model_names()


def test_the_check_sees_a_second_way(tmp_path: Path) -> None:
    (tmp_path / "apps/demo").mkdir(parents=True)
    (tmp_path / "apps/demo/services.py").write_text(
        "from apps.core.tokens import generate_token, issued_token_create\n"
        "from apps.accounts.auth_failures import auth_failure_record, auth_refuse\n"
        "row = WorkerToken.objects.create(digest='x')\n"
    )
    (tmp_path / "apps/demo/tests").mkdir()
    (tmp_path / "apps/demo/tests/test_x.py").write_text("WorkerToken.objects.create()\n")
    assert second_ways(tmp_path, {"WorkerToken"}) == {
        ("apps/demo/services.py", "generate_token"),
        ("apps/demo/services.py", "auth_failure_record"),
        ("apps/demo/services.py", "WorkerToken.objects.create"),
    }
