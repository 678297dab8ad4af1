"""Exceptions every layer may raise; no imports, so anything can import them."""

from __future__ import annotations


class ServiceUnavailable(Exception):  # noqa: N818 - named for the answer it gets
    """Something Grantry cannot work without is down: 503 with the standard body.

    Apps subclass it with their own `code` and `message` (apps.audit.exceptions).
    DRF views map it in apps.core.api.exception_handler, every other view in
    apps.core.middleware.ServiceUnavailableMiddleware."""

    code = "unavailable"
    message = "Grantry cannot serve this request right now. Retry shortly."
    retry_after = 5
