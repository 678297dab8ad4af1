"""The API documentation pages' own Content-Security-Policy (the rest of the site
gets settings.CONTENT_SECURITY_POLICY).

Swagger UI and ReDoc render their styles at run time (Swagger UI's React
components, ReDoc's styled-components insert <style> elements), so these pages
alone allow inline styles; their scripts still come only from this origin (the
Swagger initializer is a separate file: SpectacularSwaggerSplitView). ReDoc runs
its search index in a blob: worker, draws icons as data: images and shows its
vendor's logo from cdn.redoc.ly (an image only; the Referrer-Policy keeps our URLs
to ourselves). The pages show the public schema, no secrets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from csp.decorators import csp_update

API_DOCS_POLICY: dict[str, list[str]] = {
    "style-src": ["'unsafe-inline'"],
    "img-src": ["data:", "https://cdn.redoc.ly"],
    "worker-src": ["blob:"],
}


def api_docs_policy(view: Callable[..., Any]) -> Callable[..., Any]:
    return csp_update(API_DOCS_POLICY)(view)
