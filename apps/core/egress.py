"""The one outbound HTTP client: every call Grantry makes to a SaaS goes through here.

Token, revocation, identity and broker API calls share one pooled
`httpx.Client` (connection reuse matters for the broker's latency) with:

* timeouts (settings.GRANTRY_EGRESS_TIMEOUT) plus an overall deadline while
  the body streams, so a server that drips bytes cannot hold a worker;
* no redirects followed (a 3xx is returned as it is);
* a response-size cap (settings.GRANTRY_EGRESS_MAX_RESPONSE_BYTES), enforced
  while streaming, on the decoded body (so a compressed bomb is caught too);
* https only, except where loopback is allowed (development and tests);
* an SSRF guard: the host is resolved, EVERY resolved address must be public
  (no private, loopback, link-local, multicast, reserved, CGNAT or cloud
  metadata address), and the connection is made to the address that was
  checked. The URL handed to the connection pool carries the IP; the Host
  header and TLS SNI/certificate check keep the original name. That pins
  the address, so DNS rebinding between check and connect cannot happen.
  Loopback is allowed only with settings.GRANTRY_EGRESS_ALLOW_LOOPBACK
  (development and tests); metadata addresses never are.

Errors never carry the URL (a query string may hold a credential), only the
host name and the elapsed time.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings

__all__ = [
    "EgressBlocked",
    "EgressConnectError",
    "EgressError",
    "EgressResponse",
    "EgressTimeout",
    "EgressTooLarge",
    "check_destination",
    "egress_request",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# httpx logs every request URL at INFO; a URL may carry a credential (query
# placement), so its request log is kept quiet. Egress errors are ours to log.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)

# Cloud metadata endpoints. Most are link-local or private anyway; listed so
# that no setting (not even loopback for dev) can ever open them.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.123",  # AWS time sync
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
    )
)
ALLOWED_SCHEMES = frozenset({"http", "https"})


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


class EgressTooLarge(EgressError):
    """The response body exceeded the configured cap; it was not read further."""


@dataclass(frozen=True)
class EgressResponse:
    status_code: int
    headers: httpx.Headers
    content: bytes
    elapsed_ms: int
    url: str = field(repr=False)  # may carry a credential in its query string

    def json(self) -> Any:
        import json

        return json.loads(self.content)

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


# --- The SSRF guard ---------------------------------------------------------


def _address_refusal(ip: IPAddress, *, allow_loopback: bool) -> str | None:
    """Why `ip` may not be contacted, or None if it may."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is not None:
            return _address_refusal(embedded, allow_loopback=allow_loopback)
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_loopback:
        return None if allow_loopback else "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "a non-public address"
    return None


def check_destination(host: str, port: int) -> str:
    """Resolve `host` and return the one address to connect to, or raise EgressBlocked.

    Every address the name resolves to must pass; a name that resolves to one
    public and one private address is refused (that is how rebinding starts)."""
    allow_loopback = bool(settings.GRANTRY_EGRESS_ALLOW_LOOPBACK)
    if not host:
        raise EgressBlocked("The URL has no host.", host=host)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        candidates = [literal]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise EgressConnectError(f"Could not resolve {host}.", host=host) from exc
        candidates = []
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if address not in candidates:
                candidates.append(address)
        if not candidates:
            raise EgressConnectError(f"Could not resolve {host}.", host=host)
    for address in candidates:
        reason = _address_refusal(address, allow_loopback=allow_loopback)
        if reason is not None:
            raise EgressBlocked(f"{host} resolves to {reason}; refusing to connect.", host=host)
    return str(candidates[0])


class _PinnedTransport(httpx.BaseTransport):
    """Checks the destination of every request and connects to the checked IP.

    Connections are pooled per (scheme, hostname, port), never per IP: the URL
    handed to httpcore carries the checked IP, and httpcore would otherwise reuse
    a TLS connection whose certificate was checked for another hostname that
    happens to share the address (CDNs, load balancers)."""

    MAX_POOLS = 512

    def __init__(self, **pool_options: Any) -> None:
        self._pool_options = pool_options
        self._pools: dict[tuple[str, str, int], httpx.HTTPTransport] = {}
        self._lock = threading.Lock()

    def _pool(self, key: tuple[str, str, int]) -> httpx.HTTPTransport:
        pool = self._pools.get(key)
        if pool is None:
            with self._lock:
                pool = self._pools.get(key)
                if pool is None:
                    if len(self._pools) >= self.MAX_POOLS:
                        # Forget the oldest pool; in-flight requests keep their reference
                        # and its sockets close when it is collected.
                        self._pools.pop(next(iter(self._pools)))
                    pool = self._pools[key] = httpx.HTTPTransport(**self._pool_options)
        return pool

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        scheme = request.url.scheme
        if scheme not in ALLOWED_SCHEMES:
            raise EgressBlocked("Only http and https URLs may be called.", host=host)
        port = request.url.port or (443 if scheme == "https" else 80)
        address = check_destination(host, port)
        if address != host:
            # Host header was set from the original URL by build_request and stays.
            request.url = request.url.copy_with(host=address)
            if scheme == "https":
                request.extensions = {**request.extensions, "sni_hostname": host}
        return self._pool((scheme, host.lower(), port)).handle_request(request)

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()


class _NoCookies(httpx.Cookies):
    """The client is shared by every organization's calls: a cookie one SaaS account's
    answer sets must never ride along on another account's request (and parsing
    Set-Cookie on every broker call is wasted work). Callers that need a cookie send
    the header themselves."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


_client: httpx.Client | None = None
_client_lock = threading.Lock()


def _get_client() -> httpx.Client:
    global _client
    if _client is None:
        with _client_lock:
            if _client is None:
                client = httpx.Client(
                    transport=_PinnedTransport(
                        limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
                        retries=0,
                    ),
                    follow_redirects=False,
                    trust_env=False,  # no proxies from the environment
                    headers={"User-Agent": "Grantry/1.0"},
                )
                # Assigned to the attribute: the `cookies` setter would copy into a
                # plain Cookies and lose the override.
                client._cookies = _NoCookies()
                _client = client
    return _client


def _require_https() -> bool:
    """Plain http only where loopback is allowed too (development, tests), unless
    GRANTRY_EGRESS_REQUIRE_HTTPS says otherwise."""
    explicit = getattr(settings, "GRANTRY_EGRESS_REQUIRE_HTTPS", None)
    if explicit is not None:
        return bool(explicit)
    return not settings.GRANTRY_EGRESS_ALLOW_LOOPBACK


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def egress_request(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    json: Any = None,
    content: bytes | str | None = None,
    data: dict[str, Any] | None = None,
    timeout: float | None = None,
) -> EgressResponse:
    """Make one outbound request under Grantry's egress rules. Never follows redirects."""
    started = time.monotonic()
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ALLOWED_SCHEMES:
        raise EgressBlocked("Only http and https URLs may be called.", host=host)
    if parts.scheme != "https" and _require_https():
        raise EgressBlocked(
            "Only https URLs may be called (credentials never travel in clear text).", host=host
        )
    seconds = float(timeout if timeout is not None else settings.GRANTRY_EGRESS_TIMEOUT)
    cap = int(settings.GRANTRY_EGRESS_MAX_RESPONSE_BYTES)
    client = _get_client()
    try:
        request = client.build_request(
            method.upper(),
            url,
            headers=headers,
            params=params,
            json=json,
            content=content,
            data=data,
            timeout=httpx.Timeout(seconds),
        )
        response = client.send(request, stream=True, follow_redirects=False)
    except EgressError as exc:
        exc.elapsed_ms = _elapsed_ms(started)
        raise
    except httpx.TimeoutException as exc:
        raise EgressTimeout(
            f"{host} did not answer within {seconds:g}s.",
            host=host,
            elapsed_ms=_elapsed_ms(started),
        ) from exc
    except (httpx.TransportError, httpx.InvalidURL, OSError) as exc:
        raise EgressConnectError(
            f"Could not connect to {host} ({type(exc).__name__}).",
            host=host,
            elapsed_ms=_elapsed_ms(started),
        ) from exc
    try:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise EgressTooLarge(
                f"{host} answered with more than {cap} bytes.",
                host=host,
                elapsed_ms=_elapsed_ms(started),
            )
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > cap:
                raise EgressTooLarge(
                    f"{host} answered with more than {cap} bytes.",
                    host=host,
                    elapsed_ms=_elapsed_ms(started),
                )
            if time.monotonic() - started > seconds:
                raise EgressTimeout(
                    f"{host} did not finish answering within {seconds:g}s.",
                    host=host,
                    elapsed_ms=_elapsed_ms(started),
                )
            chunks.append(chunk)
    except httpx.TimeoutException as exc:
        raise EgressTimeout(
            f"{host} did not finish answering within {seconds:g}s.",
            host=host,
            elapsed_ms=_elapsed_ms(started),
        ) from exc
    except (httpx.TransportError, httpx.DecodingError) as exc:
        raise EgressConnectError(
            f"The answer from {host} broke off ({type(exc).__name__}).",
            host=host,
            elapsed_ms=_elapsed_ms(started),
        ) from exc
    finally:
        response.close()
    return EgressResponse(
        status_code=response.status_code,
        headers=response.headers,
        content=b"".join(chunks),
        elapsed_ms=_elapsed_ms(started),
        url=url,
    )
