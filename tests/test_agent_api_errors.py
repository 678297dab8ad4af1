"""docs/agent-api.md's error tables list exactly the codes the agent API answers with.

The codes in the code are collected from the source of the modules that answer an
agent (token authentication, the broker, MCP, an agent's approvals), wherever a code
is written as a literal: the code argument of `fail()`, `APIError()`,
`error_response()`, `ApprovalRefused()`, the authenticator's `_fail()`, a `code=`
keyword or default, and an exception class's `code = "…"`. The doc's codes are every
backticked word in the "code" column of its tables. Each side must hold the other's."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "agent-api.md"

# (module, class to read or None for the whole module): everything that answers an agent.
AGENT_SOURCES = [
    *(
        (path.relative_to(ROOT).as_posix(), None)
        for path in sorted((ROOT / "apps/broker").rglob("*.py"))
        if "tests" not in path.parts and "migrations" not in path.parts
    ),
    ("apps/workers/auth.py", None),
    ("apps/accounts/auth_failures.py", None),
    ("apps/workers/agent.py", None),
    ("apps/workers/middleware.py", None),  # a token in the query string: token_leaked
    ("apps/approvals/services/calls.py", None),  # an agent's approval claims
    ("apps/approvals/services/base.py", None),  # the 202 approval_pending gate
    ("apps/approvals/agent.py", None),  # GET /api/v1/approvals/<id>
    ("apps/audit/exceptions.py", None),
    ("apps/core/json_input.py", None),  # the JSON gate behind apps/broker/inputs.py
    ("apps/core/exceptions.py", "DatabaseTimeout"),
    ("apps/core/exceptions.py", "DatabaseUnavailable"),  # PostgreSQL down
    ("apps/core/exceptions.py", "CacheUnavailable"),  # Redis down: a count the call needs
    ("apps/connections/gateway/client.py", None),  # an upstream MCP server's failures
    ("apps/connections/gateway/tools.py", None),  # a pinned tool changed or not approved
]
# Where the code is the n-th positional argument of a call.
CODE_POSITION = {
    "fail": 1,
    "APIError": 0,
    "error_response": 0,
    "_fail": 0,
    "ApprovalRefused": 1,
    "UpstreamError": 0,
    "GatewayProblem": 0,
}
# Written as a code but not an error: the approval gate's go-ahead.
NOT_ERRORS = {"approved"}
# Raised in an agent-facing module but only on an admin's or the beat's path: listing
# an MCP server's tools (agents see the pinned tools from the database).
NOT_AGENT_FACING = {"too_many_tools"}


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def _literal(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def codes_in(tree: ast.AST) -> set[str]:
    found: set[str | None] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _name(node.func)
            position = CODE_POSITION.get(name)
            if position is not None and len(node.args) > position:
                found.add(_literal(node.args[position]))
            found.update(_literal(kw.value) for kw in node.keywords if kw.arg == "code")
        elif isinstance(node, ast.ClassDef):
            for statement in node.body:
                if isinstance(statement, ast.Assign) and any(
                    isinstance(target, ast.Name) and target.id == "code"
                    for target in statement.targets
                ):
                    found.add(_literal(statement.value))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            arguments = node.args
            positional = arguments.posonlyargs + arguments.args
            defaulted = positional[len(positional) - len(arguments.defaults) :]
            pairs = list(zip(defaulted, arguments.defaults, strict=True))
            pairs += [
                (arg, default)
                for arg, default in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True)
                if default is not None
            ]
            found.update(_literal(default) for arg, default in pairs if arg.arg == "code")
    return {code for code in found if code} - NOT_ERRORS - NOT_AGENT_FACING


def codes_in_code() -> dict[str, set[str]]:
    """code -> the modules that answer with it."""
    where: dict[str, set[str]] = {}
    for module, class_name in AGENT_SOURCES:
        tree: ast.AST = ast.parse((ROOT / module).read_text())
        if class_name is not None:
            classes = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
            tree = next(n for n in classes if n.name == class_name)
        for code in codes_in(tree):
            where.setdefault(code, set()).add(module)
    return where


def codes_in_doc(text: str) -> set[str]:
    """Backticked words in the "code" column of every Markdown table of the doc."""
    codes: set[str] = set()
    column = None
    for line in text.splitlines():
        if not line.startswith("|"):
            column = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if column is None:
            column = cells.index("code") if "code" in cells else -1
            continue
        if column < 0 or column >= len(cells) or set(cells[column]) <= set("-: "):
            continue
        codes.update(re.findall(r"`([a-z][a-z0-9_]*)`", cells[column]))
    return codes


def test_the_collector_reads_the_code_literals() -> None:
    """The collector itself: each way a code is written is found, nothing else."""
    source = """
class Gone(Exception):
    code = "class_code"
def refuse(message, *, code="default_code"):
    fail(409, "fail_code", "message", connection="x")
    APIError("api_code", "message", status_code=400)
    error_response("response_code", "m", status_code=403)
    self._fail("auth_code", request)
    ApprovalRefused(404, "refused_code", "m")
    HostileInput("m", code="keyword_code")
    fail(status, variable, "m")
    other("not_a_code")
"""
    assert codes_in(ast.parse(source)) == {
        "class_code", "default_code", "fail_code", "api_code", "response_code",
        "auth_code", "refused_code", "keyword_code",
    }  # fmt: skip


def test_every_code_the_agent_api_answers_with_is_in_the_doc() -> None:
    in_code = codes_in_code()
    assert {"no_connection", "connection_misconfigured", "unsafe_path", "forbidden_origin"} <= set(
        in_code
    )  # the collector sees the broker, MCP and proxy paths
    documented = codes_in_doc(DOC.read_text())
    missing = {code: sorted(where) for code, where in in_code.items() if code not in documented}
    assert missing == {}, f"add these to docs/agent-api.md's error table: {missing}"


def test_every_code_in_the_doc_is_one_the_code_answers_with() -> None:
    stale = codes_in_doc(DOC.read_text()) - set(codes_in_code())
    assert stale == set(), f"docs/agent-api.md lists codes no agent endpoint answers: {stale}"
