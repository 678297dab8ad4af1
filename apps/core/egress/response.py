"""What comes back: the body read under the size cap (gzip and deflate inflated a
bounded piece at a time), its headers, and the EgressResponse made of them."""

from __future__ import annotations

import http.client
import json as jsonlib
import re
import zlib
from collections.abc import ItemsView, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .errors import EgressTooLarge, _elapsed_ms

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


class _Inflater:
    """Incremental gzip/deflate decoding that never produces more than it is allowed to."""

    def __init__(self, wbits: int) -> None:
        self._decompressor = zlib.decompressobj(wbits)
        # "deflate" is meant to be zlib-wrapped, but some servers send it raw.
        self._may_be_raw = wbits == zlib.MAX_WBITS

    def feed(self, data: bytes, allowed: int) -> bytes:
        """Decode `data`; more than `allowed` bytes out means the cap is exceeded, so at
        most one byte past it is ever produced. An answer under max_length means all
        input was consumed."""
        try:
            out = self._decompressor.decompress(data, allowed + 1)
        except zlib.error:
            if not self._may_be_raw:
                raise
            self._decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
            out = self._decompressor.decompress(data, allowed + 1)
        self._may_be_raw = False
        return out

    def finish(self, data: bytes, allowed: int) -> bytes:
        out = self.feed(data, allowed) if data else b""
        if len(out) > allowed:
            return out  # refused by the caller; flush() would inflate the rest unbounded
        return out + self._decompressor.flush()  # all input is consumed: little or nothing


def _inflaters(content_encoding: str | None) -> list[_Inflater]:
    """Decoders in the order to apply them (the last encoding applied comes off first).
    Unknown codings pass through as they are, as httpx did."""
    if not content_encoding:
        return []
    inflaters = []
    for coding in reversed(content_encoding.split(",")):
        name = coding.strip().lower()
        if name in ("gzip", "x-gzip"):
            inflaters.append(_Inflater(zlib.MAX_WBITS | 16))
        elif name == "deflate":
            inflaters.append(_Inflater(zlib.MAX_WBITS))
    return inflaters


def _read_body(
    response: http.client.HTTPResponse,
    content_encoding: str | None,
    *,
    host: str,
    cap: int,
    started: float,
) -> bytes:
    """The whole (decoded) body, or EgressTooLarge as soon as it passes `cap`."""

    def too_large() -> EgressTooLarge:
        return EgressTooLarge(
            f"{host} answered with more than {cap} bytes.",
            host=host,
            elapsed_ms=_elapsed_ms(started),
        )

    if response.length is not None and response.length > cap:
        raise too_large()
    inflaters = _inflaters(content_encoding)
    chunks: list[bytes] = []
    received = size = 0
    while block := response.read(_READ_SIZE):
        received += len(block)  # what the decoders are fed is bounded too
        if received > cap:
            raise too_large()
        for inflater in inflaters:
            block = inflater.feed(block, cap - size)
            if len(block) > cap - size:
                raise too_large()
        size += len(block)
        chunks.append(block)
    if response.length:  # the connection closed before Content-Length bytes came
        raise http.client.IncompleteRead(b"", response.length)
    if inflaters:
        tail = b""
        for inflater in inflaters:
            tail = inflater.finish(tail, cap - size)
            if len(tail) > cap - size:
                raise too_large()
        chunks.append(tail)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
