"""OpenAPI import: from an OpenAPI 3.0/3.1 or Swagger 2.0 document to custom-action drafts.

The document is parsed and validated by prance with the openapi-spec-validator backend,
and its `$ref`s are inlined by prance's resolver, limited to references inside the
document: every `$ref` is checked BEFORE any library sees the document, and one that
points elsewhere (a file, a URL) refuses the whole document, so nothing is ever fetched
on its behalf. Size, operation count, YAML aliases and the size of each built schema are
capped. Nothing here writes: `services.custom_actions_import()` saves the drafts an admin
chose (and maybe edited).

A draft's input schema holds the path, query and JSON-body parameters side by side:
path parameters fill the path template, query parameters are listed in `query_params`,
and the properties of an object request body form the rest. Header and cookie
parameters are left out (Grantry sends the credential; other headers are not part of a
custom action), and an operation that requires one is marked as not importable.
"""

from apps.providers.openapi.document import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_OPERATIONS,
    OpenAPIImportError,
    ParsedDocument,
    fetch_document,
    max_bytes,
    max_operations,
    parse_document,
)
from apps.providers.openapi.drafts import Draft

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_OPERATIONS",
    "Draft",
    "OpenAPIImportError",
    "ParsedDocument",
    "fetch_document",
    "max_bytes",
    "max_operations",
    "parse_document",
]
