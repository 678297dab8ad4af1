"""Same names for the same things (docs/architecture.md, "Same names for the same things").

Every app names its surfaces `views` (dashboard pages), `api` (management API) and `agent`
(agent API), routed by `urls`, `api_urls` and `agent_urls`; a surface that grows becomes a
package of the same name with one module per topic. A module that looks like a surface under
another name (`token_views.py`, `openapi_api.py`, `api_views.py`, `invite_urls.py`) fails
here until it is renamed or moved into such a package."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SURFACES = {"views", "api", "agent"}
URLCONFS = {"urls", "api_urls", "agent_urls"}
# A name that says "I am a view module or a URLconf" without being one of the names above.
SURFACE_LIKE = re.compile(r"(^|_)(views?|api|apis|urls|endpoints?)($|_)")
# On purpose (see the docs): core's api.py is the API's plumbing; the sandbox is a stand-in SaaS.
EXEMPT_APPS = {"sandbox"}


def misnamed_surfaces(root: Path = ROOT) -> list[str]:
    found = []
    for path in sorted((root / "apps").rglob("*.py")):
        rel = path.relative_to(root)
        parts = rel.parts
        if parts[1] in EXEMPT_APPS or "tests" in parts or "migrations" in parts:
            continue
        name = path.stem
        if name == "__init__" or name in SURFACES | URLCONFS:
            continue
        if path.parent.name in SURFACES:  # a module of a surface package: views/openapi.py
            continue
        if SURFACE_LIKE.search(name):
            found.append(rel.as_posix())
    return found


def test_surface_modules_have_the_house_names() -> None:
    assert misnamed_surfaces() == [], (
        "Name a surface module views/api/agent (urls/api_urls/agent_urls for its URLconf), "
        "or make it a module of a views/ or api/ package (docs/architecture.md)."
    )


def test_the_check_sees_a_misnamed_surface(tmp_path: Path) -> None:
    for name in ("token_views.py", "api_views.py", "openapi_api.py", "invite_urls.py", "views.py"):
        (tmp_path / "apps/accounts").mkdir(parents=True, exist_ok=True)
        (tmp_path / "apps/accounts" / name).write_text("")
    (tmp_path / "apps/providers/api").mkdir(parents=True)
    (tmp_path / "apps/providers/api/openapi.py").write_text("")
    assert misnamed_surfaces(tmp_path) == [
        "apps/accounts/api_views.py",
        "apps/accounts/invite_urls.py",
        "apps/accounts/openapi_api.py",
        "apps/accounts/token_views.py",
    ]
