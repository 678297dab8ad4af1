"""Client ID Metadata Documents, fetched through Grantry's egress (not DOT's own fetcher).

DOT resolves a client id that is an https URL (`oauth2_provider.cimd`): it checks the
document's `client_id` equals the URL, builds a public Application and caches it for
the document's max-age (5 min to 24 h), with a failure backoff. Grantry supplies the
fetch: `apps.core.egress` refuses private, loopback (outside tests), link-local and
metadata addresses, follows no redirect and bounds the time; the document must be JSON
and at most CIMD_MAX_DOCUMENT_SIZE bytes.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from oauth2_provider.cimd import CIMDError, _effective_max_age, _validate_client_id_url
from oauth2_provider.settings import oauth2_settings

from apps.core.egress import egress_request
from apps.core.egress.errors import EgressError

GRANTRY_AS_PREFIX = "/oauth/"


class EgressMetadataFetcher:
    def fetch(self, client_id: str) -> tuple[dict[str, Any], int]:
        _validate_client_id_url(client_id)
        max_size = int(oauth2_settings.CIMD_MAX_DOCUMENT_SIZE)
        try:
            response = egress_request(
                "GET",
                client_id,
                headers={"Accept": "application/json"},
                timeout=float(oauth2_settings.CIMD_FETCH_TIMEOUT_SECONDS),
                max_bytes=max_size,
            )
        except EgressError as exc:
            raise CIMDError(f"could not fetch the client id document: {exc}") from None
        if response.status_code != 200:
            raise CIMDError(f"client id document answered HTTP {response.status_code}")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if media_type != "application/json" and not (
            media_type.startswith("application/") and media_type.endswith("+json")
        ):
            raise CIMDError("client id document is not JSON")
        if len(response.content) > max_size:
            raise CIMDError("client id document is too large")
        try:
            data = json.loads(response.content)
        except ValueError:
            raise CIMDError("client id document is not valid JSON") from None
        if not isinstance(data, dict):
            raise CIMDError("client id document must be a JSON object")
        return data, _effective_max_age(response.headers.get("Cache-Control"))


class GrantryCIMDPermission:
    """Only Grantry's own authorization server (under /oauth/) resolves CIMD client
    ids; the Sandbox's authorization server never does."""

    def has_permission(self, request: Any, client_id: str) -> bool:  # noqa: ARG002 - DOT's permission interface
        path = urlsplit(getattr(request, "uri", "") or "").path
        return path.startswith(GRANTRY_AS_PREFIX)
