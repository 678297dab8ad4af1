"""The exceptions an outbound call raises; each carries the host name and the
elapsed time, never the URL (a query string may hold a credential)."""

from __future__ import annotations

import time


class EgressError(Exception):
    """Base: an outbound call did not produce a usable response."""

    def __init__(self, message: str, *, host: str = "", elapsed_ms: int = 0) -> None:
        super().__init__(message)
        self.host = host
        self.elapsed_ms = elapsed_ms


class EgressBlocked(EgressError):
    """The destination is not allowed (scheme, address, metadata endpoint)."""


class EgressTimeout(EgressError):
    """Connect, read or the overall deadline ran out."""


class EgressConnectError(EgressError):
    """DNS failure, refused connection, TLS failure or a broken transfer."""


class EgressNotSent(EgressError):
    """The send window ended before the request was written: nothing, or only a
    part the server cannot act on (the connection is closed), was sent."""


class EgressTooLarge(EgressError):
    """The response body exceeded the configured cap; it was not read further."""


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
