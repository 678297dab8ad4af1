"""The one registry of audit actions (apps/audit/actions.py), checked by reading the source.

The writer refuses an unregistered name at run time (apps/audit/tests/test_actions.py); this
test refuses one before anything runs: every event name the code spells out — an `action=`
argument or an `action = …` assignment, plain, conditional or an f-string's fixed start — must
be registered (or, for an f-string, start a registered name). docs/audit-actions.md lists the
registry as it is."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from apps.audit.actions import CATEGORIES, REGISTRY

ROOT = Path(__file__).resolve().parent.parent
NAME = re.compile(r"[a-z_]+(\.[a-z_]+)+")


def _spelled(value: ast.expr) -> list[tuple[str, bool]]:
    """The event names an expression spells: (name, is_prefix_of_an_f_string)."""
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        return [(value.value, False)]
    if isinstance(value, ast.IfExp):
        return _spelled(value.body) + _spelled(value.orelse)
    if isinstance(value, ast.BoolOp):
        return [name for v in value.values for name in _spelled(v)]
    if isinstance(value, ast.JoinedStr) and value.values:
        head = value.values[0]
        if isinstance(head, ast.Constant) and isinstance(head.value, str):
            return [(head.value, True)]
    return []


def spelled_actions(root: Path = ROOT) -> list[tuple[str, str, bool]]:
    """(where, name, is_prefix) for every action name the apps spell out."""
    found = []
    for path in sorted((root / "apps").rglob("*.py")):
        if "tests" in path.parts or "migrations" in path.parts or "sandbox" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            values: list[ast.expr] = []
            if (isinstance(node, ast.keyword) and node.arg == "action") or (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "action" for t in node.targets)
            ):
                values = [node.value]
            for value in values:
                for name, prefix in _spelled(value):
                    if prefix or NAME.fullmatch(name):
                        where = f"{path.relative_to(root)}:{value.lineno}"
                        found.append((where, name, prefix))
    return found


def unregistered(root: Path = ROOT) -> list[str]:
    bad = []
    for where, name, prefix in spelled_actions(root):
        ok = any(r.startswith(name) for r in REGISTRY) if prefix else name in REGISTRY
        if not ok:
            bad.append(f"{where}: {name}{'…' if prefix else ''}")
    return bad


def test_every_action_the_code_spells_is_registered() -> None:
    assert unregistered() == [], "register these in apps/audit/actions.py"


def test_the_check_refuses_an_unregistered_action(tmp_path: Path) -> None:
    (tmp_path / "apps/demo").mkdir(parents=True)
    (tmp_path / "apps/demo/services.py").write_text(
        "def f(x):\n"
        "    audit_record(action='token.minted')\n"
        "    audit_record(action='token.teleported')\n"
        "    action = 'role.created' if x else 'role.vanished'\n"
        "    audit_record(action=f'inventory.finding_{x}')\n"
        "    audit_record(action=f'nowhere.{x}')\n"
    )
    assert sorted(line.split(": ", 1)[1] for line in unregistered(tmp_path)) == [
        "nowhere.…",
        "role.vanished",
        "token.teleported",
    ]


def test_the_source_spells_the_names_it_writes() -> None:
    """The walk finds names in the real code (it is not silently seeing nothing)."""
    names = {name for _, name, _ in spelled_actions()}
    assert {"token.minted", "auth.mfa_enabled", "connection.reconnected"} <= names


def test_every_registered_name_has_a_known_category_and_a_label() -> None:
    for name, action in REGISTRY.items():
        assert name.split(".", 1)[0] == action.category.key in CATEGORIES
        assert action.label
        assert action.label != name


def test_the_docs_list_the_registry() -> None:
    doc = (ROOT / "docs/audit-actions.md").read_text()
    listed = set(re.findall(r"^\| `([a-z_.]+)` \|", doc, re.MULTILINE))
    assert listed == set(REGISTRY)
    for name, action in REGISTRY.items():
        assert f"| `{name}` | {action.label} | {action.ocsf_class} " in doc
