"""The SSRF guard: which schemes may be used and which addresses may be contacted.

A host is resolved and EVERY address it resolves to must be public;
`safe_create_connection` (urllib3's connection hook calls it) then connects to
the address that was checked, never to a second lookup's answer."""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterable

from django.conf import settings

from .errors import EgressBlocked, EgressConnectError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

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


def _require_https() -> bool:
    """Plain http only where loopback is allowed too (development, tests), unless
    GRANTRY_EGRESS_REQUIRE_HTTPS says otherwise."""
    explicit = getattr(settings, "GRANTRY_EGRESS_REQUIRE_HTTPS", None)
    if explicit is not None:
        return bool(explicit)
    return not settings.GRANTRY_EGRESS_ALLOW_LOOPBACK


# Address classes refused after the metadata and loopback checks, in this order: the first
# that applies names the refusal.
_REFUSED_CLASSES = (
    ("is_link_local", "a link-local address"),
    ("is_multicast", "a multicast address"),
    ("is_unspecified", "an unspecified address"),
    ("is_private", "a private address"),
    ("is_reserved", "a reserved address"),
)


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
    for attribute, why in _REFUSED_CLASSES:
        if getattr(ip, attribute):
            return why
    return None if ip.is_global else "a non-public address"


def check_destination(host: str, port: int) -> str:
    """Resolve `host` and return the first address to connect to, or raise
    EgressBlocked (see checked_addresses)."""
    return checked_addresses(host, port)[0]


def checked_addresses(host: str, port: int) -> list[str]:
    """Resolve `host` and return its addresses in the resolver's order, or raise
    EgressBlocked.

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
    return [str(address) for address in candidates]


def destination_refusal(host: str, port: int) -> str | None:
    """Why `host` could never be contacted under the egress policy, in words for a form
    (None: it may be). For checking a destination when it is saved; every call is
    still checked again when it is made (a name can change what it resolves to), so a
    name that does not resolve yet is not refused here."""
    try:
        checked_addresses(host, port)
    except EgressBlocked as exc:
        return str(exc)
    except EgressConnectError:
        return None
    return None


def url_refusal(url: str) -> str | None:
    """Why `url` could never be called under the egress policy (scheme, https, host,
    addresses), in words for a form; None when it may be. The rules `egress_request`
    applies to every call."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return "This is not a valid URL."
    if parts.scheme not in ALLOWED_SCHEMES:
        return "Only http and https URLs may be called."
    if parts.scheme != "https" and _require_https():
        return "Use an https:// URL: credentials and events never travel in clear text."
    if not parts.hostname:
        return "The URL has no host."
    return destination_refusal(parts.hostname, port)


SocketOption = tuple[int, int, int]


def safe_create_connection(
    address: tuple[str, int],
    timeout: float | None,
    *,
    socket_options: Iterable[SocketOption] | None = None,
    socket_class: type[socket.socket] = socket.socket,
) -> socket.socket:
    """A TCP connection to `address` (host, port) the way urllib3's create_connection
    makes one (each address in turn until one answers), but only ever to addresses
    checked_addresses let through. `timeout` covers the lookup and the connects;
    what is left of it stays on the socket, so the TLS handshake that follows gets
    only the rest."""
    deadline = None if timeout is None else time.monotonic() + timeout
    host, port = address
    failure: OSError | None = None
    for checked in checked_addresses(host, port):
        family = socket.AF_INET6 if ":" in checked else socket.AF_INET
        sock = socket_class(family, socket.SOCK_STREAM)
        try:
            for option in socket_options or ():
                sock.setsockopt(*option)
            sock.settimeout(time_left(deadline))
            sock.connect((checked, port))
            sock.settimeout(time_left(deadline))
        except TimeoutError:
            sock.close()
            raise  # the call's time is up: no other address gets tried
        except OSError as exc:
            sock.close()
            failure = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    assert failure is not None  # checked_addresses returns at least one address
    raise failure


def time_left(deadline: float | None) -> float | None:
    """Seconds until `deadline` (a time.monotonic() value; None is no deadline), or
    TimeoutError once it has passed."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the request's deadline has passed")
    return left
