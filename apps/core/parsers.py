"""DRF's JSON parser behind the one JSON gate (apps.core.json_input).

A module of its own: DRF imports the parser classes named in its settings while
`rest_framework.views` is still importing, so this module must not import it
(apps.core.api does)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework import exceptions, parsers
from typing_extensions import override

from apps.core.json_input import HostileInput, loads

# Management API JSON bodies: looser than the agent's (an OpenAPI document may come as
# an object), still bounded so that nothing downstream recurses past the stack.
MAX_DEPTH = 64
MAX_NODES = 500_000


class JSONParser(parsers.JSONParser):
    """A hostile body (nesting past the interpreter's limit, a lone surrogate, NUL,
    NaN, bytes that are not UTF-8) is 400 `parse_error` with the standard body, never
    a 500."""

    @override
    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = stream.read().decode(encoding)
        except UnicodeDecodeError:
            raise exceptions.ParseError(f"The request body is not valid {encoding}.") from None
        try:
            return loads(text, max_depth=MAX_DEPTH, max_nodes=MAX_NODES)
        except HostileInput as problem:
            raise exceptions.ParseError(problem.message) from None
