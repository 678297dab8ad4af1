"""What comes back: the body read under the size cap (urllib3 inflates gzip and
deflate a bounded piece at a time), its headers, and the EgressResponse made of them."""

from __future__ import annotations

import json as jsonlib
import re
from collections.abc import ItemsView, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from urllib3 import BaseHTTPResponse

from .errors import EgressTooLarge, _elapsed_ms
from .guard import time_left

_READ_SIZE = 64 * 1024

# the broker copies some answer headers into its own response, which refuses them.
_FOLD = re.compile(r"\r?\n[ \t]+")
_NOT_IN_VALUE = re.compile(r"[\r\n\0]")


class ResponseHeaders(Mapping[str, str]):
    """Response headers, looked up in any capitalisation. A name sent more than once
    reads as its values joined by ", "; names iterate in lower case (as httpx.Headers).
    Folded values are unfolded; CR, LF and NUL are dropped."""

    __slots__ = ("_values",)

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        values: dict[str, str] = {}
        for name, value in pairs:
            if "\n" in value or "\r" in value or "\0" in value:
                value = _NOT_IN_VALUE.sub("", _FOLD.sub(" ", value))
            key = name.lower()
            values[key] = f"{values[key]}, {value}" if key in values else value
        self._values = values

    def __getitem__(self, name: str) -> str:
        return self._values[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def items(self) -> ItemsView[str, str]:
        return self._values.items()

    def __repr__(self) -> str:
        return f"ResponseHeaders({self._values!r})"


@dataclass(frozen=True)
class EgressResponse:
    status_code: int
    headers: ResponseHeaders
    content: bytes
    elapsed_ms: int
    url: str = field(repr=False)  # may carry a credential in its query string

    def json(self) -> Any:
        return jsonlib.loads(self.content)

    @property
    def text(self) -> str:
        charset = "utf-8"
        for part in self.headers.get("Content-Type", "").split(";")[1:]:
            name, _, value = part.strip().partition("=")
            if name.lower() == "charset" and value:
                charset = value.strip('"')
        try:
            return self.content.decode(charset, "replace")
        except LookupError:
            return self.content.decode("utf-8", "replace")

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    def is_success(self) -> bool:
        return 200 <= self.status_code < 300


def read_body(
    response: BaseHTTPResponse, *, host: str, cap: int, deadline: float, started: float
) -> bytes:
    """The whole body, decoded by urllib3 a bounded piece at a time (gzip and deflate
    bombs included), or EgressTooLarge as soon as it, or what came over the wire,
    passes `cap`. The deadline is checked between pieces; the socket enforces it
    within one."""

    def too_large() -> EgressTooLarge:
        return EgressTooLarge(
            f"{host} answered with more than {cap} bytes.",
            host=host,
            elapsed_ms=_elapsed_ms(started),
        )

    length = response.length_remaining
    if length is not None:
        if length > cap:
            raise too_large()
        if "content-encoding" not in response.headers:
            return response.read()  # what was declared, and not more: one read
    chunks: list[bytes] = []
    size = 0
    while True:
        time_left(deadline)
        block = response.read(_READ_SIZE)
        if not block:
            break
        size += len(block)
        if size > cap or response.tell() > cap:
            raise too_large()
        chunks.append(block)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
