"""The tenant scope is enforced, not a convention (docs/architecture.md, "The tenant boundary").

A view or API module (the surfaces: `views`, `api`, `agent`, and the modules of such packages)
reaches an organization's rows through its mixin (`scope_queryset()`, `self.tenant_rows(Model)`,
apps.core.models.tenant_rows), never through `<TenantModel>.objects`. Tenant models are every
model with an organization key and every model owned through a parent (`tenant_through`).
Rows that belong to a person rather than an organization (their memberships, their personal
tokens) or to no organization (a public signing key by id) come from a selector of the owning
app. The list of uses that predate the rule is empty: a new `<TenantModel>.objects` in a
surface fails here."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

from django.apps import apps

from apps.organizations.models import Organization

ROOT = Path(__file__).resolve().parent.parent
SURFACES = {"views", "api", "agent"}

# (module, model): how many `<Model>.objects` it still has. Empty: every surface reads tenant
# rows through its mixin or a selector. Keep it empty.
KNOWN: Counter[tuple[str, str]] = Counter()


def tenant_model_names() -> set[str]:
    names = set()
    for model in apps.get_models():
        fields = {f.name: f for f in model._meta.concrete_fields}
        keyed = "organization" in fields and fields["organization"].related_model is Organization
        trail = "organization_id" in {f.attname for f in model._meta.concrete_fields}
        if keyed or trail or getattr(model, "tenant_through", None):
            names.add(model.__name__)
    return names


def is_surface(path: Path) -> bool:
    return path.stem in SURFACES or path.parent.name in SURFACES


def direct_uses(root: Path = ROOT, names: set[str] | None = None) -> Counter[tuple[str, str]]:
    names = tenant_model_names() if names is None else names
    found: Counter[tuple[str, str]] = Counter()
    for path in sorted((root / "apps").rglob("*.py")):
        parts = path.relative_to(root).parts
        if "tests" in parts or "migrations" in parts or parts[1] == "sandbox":
            continue
        if not is_surface(path):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "objects"
                and isinstance(node.value, ast.Name)
                and node.value.id in names
            ):
                found[(path.relative_to(root).as_posix(), node.value.id)] += 1
    return found


def test_no_new_tenant_model_objects_in_views_or_apis() -> None:
    grown = {key: n for key, n in direct_uses().items() if n > KNOWN.get(key, 0)}
    assert grown == {}, (
        "Read tenant rows through scope_queryset() or self.tenant_rows(Model) "
        "(apps.organizations.tenancy), not <TenantModel>.objects."
    )


def test_the_pinned_list_is_not_stale() -> None:
    """A use that was removed comes off the list, so it cannot come back unnoticed."""
    found = direct_uses()
    assert {key: n for key, n in KNOWN.items() if found.get(key, 0) < n} == {}


def test_the_check_sees_a_direct_use(tmp_path: Path) -> None:
    (tmp_path / "apps/demo/api").mkdir(parents=True)
    (tmp_path / "apps/demo/views.py").write_text(
        "def get(self):\n    return Worker.objects.all(), self.tenant_rows(Worker)\n"
    )
    (tmp_path / "apps/demo/api/rules.py").write_text("rows = Rule.objects.filter(pk=1)\n")
    (tmp_path / "apps/demo/services.py").write_text("rows = Worker.objects.all()\n")
    assert direct_uses(tmp_path, {"Worker", "Rule"}) == Counter(
        {("apps/demo/views.py", "Worker"): 1, ("apps/demo/api/rules.py", "Rule"): 1}
    )
