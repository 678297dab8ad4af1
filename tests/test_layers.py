"""Upward look-ups through Django's app registry, which import-linter cannot see.

`make lint` runs import-linter's contract (pyproject.toml): no app imports a layer
above its own, and no import cycle between apps. A module can still reach a model
above it by name (`django_apps.get_model("workers", "Worker")`). The few that do are
listed here and in docs/architecture.md ("Layers"); a new one fails this test until it
is either removed (move the caller up, or the piece down) or added here on purpose."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (module, app label it reaches above its own layer; "*": a label chosen at run time). Empty:
# a lower layer that needs a higher one's answer declares a port (apps/core/ports.py).
KNOWN_UPWARD_LOOKUPS: set[tuple[str, str]] = set()


def layer_ranks() -> dict[str, int]:
    """App label -> its layer, 0 at the top, from the contract in pyproject.toml."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contract = next(c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers")
    ranks: dict[str, int] = {}
    for rank, layer in enumerate(contract["layers"]):
        for name in layer.replace(":", "|").split("|"):
            ranks[name.strip().strip("()")] = rank
    return ranks


def upward_lookups(root: Path = ROOT) -> set[tuple[str, str]]:
    ranks = layer_ranks()
    found: set[tuple[str, str]] = set()
    for path in sorted((root / "apps").rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if "tests" in parts or "migrations" in parts:
            continue
        module = ".".join(p for p in parts if p != "__init__")
        app = parts[1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get_model"
                and node.args
            ):
                continue
            label = node.args[0]
            if not (isinstance(label, ast.Constant) and isinstance(label.value, str)):
                found.add((module, "*"))  # a label chosen at run time: listed by hand
                continue
            target = label.value.split(".")[0]
            if target in ranks and ranks[target] < ranks[app]:
                found.add((module, target))
    return found


def test_every_app_has_a_layer() -> None:
    apps = {p.parent.name for p in (ROOT / "apps").glob("*/apps.py")}
    assert apps <= set(layer_ranks())


def test_upward_registry_lookups_are_the_known_ones() -> None:
    assert upward_lookups() == KNOWN_UPWARD_LOOKUPS


def test_the_check_sees_an_upward_lookup_and_only_that(tmp_path: Path) -> None:
    (tmp_path / "apps" / "audit").mkdir(parents=True)
    (tmp_path / "apps" / "workers" / "tests").mkdir(parents=True)
    (tmp_path / "apps" / "audit" / "names.py").write_text(
        'from django.apps import apps\nW = apps.get_model("workers", "Worker")\n'
    )
    (tmp_path / "apps" / "workers" / "down.py").write_text(
        'from django.apps import apps\nE = apps.get_model("audit.AuditEvent")\n'
    )
    (tmp_path / "apps" / "core").mkdir()
    (tmp_path / "apps" / "core" / "any.py").write_text(
        "from django.apps import apps\ndef m(label):\n    return apps.get_model(label)\n"
    )
    (tmp_path / "apps" / "workers" / "tests" / "test_x.py").write_text(
        'from django.apps import apps\nB = apps.get_model("broker", "Anything")\n'
    )
    assert upward_lookups(tmp_path) == {("apps.audit.names", "workers"), ("apps.core.any", "*")}


# URL names point at a URLconf's app (its `app_name`); naming a page of an app above is an
# upward reference import-linter cannot see either. (module, URL name) still doing it: none.
KNOWN_UPWARD_URL_NAMES: set[tuple[str, str]] = set()
# Strings that look like a URL name and are not one.
NOT_URL_NAMES = {("apps.core.confirm", "dashboard:undo")}  # a session key


def url_namespaces(root: Path = ROOT) -> dict[str, str]:
    """URL namespace -> the app whose URLconf declares it."""
    found = {}
    for path in (root / "apps").glob("*/*urls*.py"):
        for match in re.finditer(r'^app_name = "([a-z_]+)"', path.read_text(), re.MULTILINE):
            found[match.group(1)] = path.parent.name
        for match in re.finditer(r'\(\w+, "([a-z_]+)"\)', path.read_text()):
            found.setdefault(match.group(1), path.parent.name)
    return found


def upward_url_names(root: Path = ROOT) -> set[tuple[str, str]]:
    ranks = layer_ranks()
    namespaces = url_namespaces(root)
    if not namespaces:
        return set()
    alternatives = "|".join(map(re.escape, namespaces))
    name = re.compile(rf"({alternatives}):[a-z_-]+")
    found = set()
    for path in sorted((root / "apps").rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if "tests" in parts or "migrations" in parts:
            continue
        module = ".".join(p for p in parts if p != "__init__")
        app = parts[1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and name.fullmatch(node.value)
            ):
                target = namespaces[node.value.split(":")[0]]
                if target in ranks and app in ranks and ranks[target] < ranks[app]:
                    found.add((module, node.value))
    return found - NOT_URL_NAMES


def test_upward_url_names_are_the_known_ones() -> None:
    assert upward_url_names() == KNOWN_UPWARD_URL_NAMES


def test_the_check_sees_an_upward_url_name(tmp_path: Path) -> None:
    (tmp_path / "apps" / "workers").mkdir(parents=True)
    (tmp_path / "apps" / "workers" / "urls.py").write_text('app_name = "workers"\n')
    (tmp_path / "apps" / "audit").mkdir()
    (tmp_path / "apps" / "audit" / "urls.py").write_text('app_name = "audit"\n')
    (tmp_path / "apps" / "audit" / "links.py").write_text('U = reverse("workers:detail")\n')
    (tmp_path / "apps" / "workers" / "links.py").write_text('U = reverse("audit:list")\n')
    assert upward_url_names(tmp_path) == {("apps.audit.links", "workers:detail")}
