"""The token format shared by worker tokens (`gry_`) and personal API tokens (`gryp_`),
with the lifetime limits and the leak report both kinds use (part of the tenancy kernel:
apps.workers and apps.accounts both build on it, neither owns it).

    gry_ + 43 base62 chars (secrets, > 256 bits) + 6 base62 chars (CRC32 of the random part)

This is GitHub's scheme: a secret scanner can recognise a Grantry token offline,
and `parse_token()` rejects a mistyped or invented one without touching the
database. Only the SHA-256 digest is stored; the raw token exists in memory
once, when it is minted, and in the Authorization header of each request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Model, Q
from django.utils import timezone

if TYPE_CHECKING:
    from apps.core.models import IssuedToken

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_BASE62_SET = frozenset(BASE62)

WORKER_PREFIX = "gry_"
PERSONAL_PREFIX = "gryp_"
PREFIXES: dict[str, Literal["worker", "personal"]] = {
    WORKER_PREFIX: "worker",
    PERSONAL_PREFIX: "personal",
}
RANDOM_LENGTH = 43  # 62**43 ≈ 2**256.03
CHECKSUM_LENGTH = 6  # 62**6 > 2**32, so any CRC32 fits
PUBLIC_ID_PREFIX = "tok_"
PUBLIC_ID_LENGTH = 12

TokenKind = Literal["worker", "personal"]
_T = TypeVar("_T", bound="IssuedToken")


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, rest = divmod(number, 62)
        chars.append(BASE62[rest])
    return "".join(reversed(chars))


def _random_base62(length: int) -> str:
    return "".join(secrets.choice(BASE62) for _ in range(length))


def checksum(random_part: str) -> str:
    return _base62(zlib.crc32(random_part.encode("ascii")), CHECKSUM_LENGTH)


def token_digest(raw: str) -> str:
    """SHA-256 hex digest: what the database stores and looks up by."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def digests_match(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("ascii"), b.encode("ascii"))


def new_public_id() -> str:
    """The id a token is shown, audited and managed by (not a secret)."""
    return PUBLIC_ID_PREFIX + _random_base62(PUBLIC_ID_LENGTH)


@dataclass(frozen=True)
class GeneratedToken:
    raw: str
    digest: str
    last4: str

    def __repr__(self) -> str:  # never let the raw value reach a log by accident
        return f"GeneratedToken(last4={self.last4!r})"


@dataclass(frozen=True)
class ParsedToken:
    kind: TokenKind
    digest: str
    last4: str

    def __repr__(self) -> str:
        return f"ParsedToken(kind={self.kind!r}, last4={self.last4!r})"


def generate_token(kind: TokenKind) -> GeneratedToken:
    prefix = WORKER_PREFIX if kind == "worker" else PERSONAL_PREFIX
    random_part = _random_base62(RANDOM_LENGTH)
    raw = prefix + random_part + checksum(random_part)
    return GeneratedToken(raw=raw, digest=token_digest(raw), last4=raw[-4:])


def parse_token(raw: str | None, *, kind: TokenKind | None = None) -> ParsedToken | None:
    """A well-formed token with a valid checksum, or None. Never queries anything.

    `kind` restricts which prefix is accepted (agents: "worker", automation:
    "personal")."""
    if not raw or not isinstance(raw, str):
        return None
    prefix = next((p for p in PREFIXES if raw.startswith(p)), None)
    if prefix is None:
        return None
    prefix_kind = PREFIXES[prefix]
    if kind is not None and prefix_kind != kind:
        return None
    body = raw[len(prefix) :]
    if len(body) != RANDOM_LENGTH + CHECKSUM_LENGTH or not set(body) <= _BASE62_SET:
        return None
    random_part, check = body[:RANDOM_LENGTH], body[RANDOM_LENGTH:]
    if not hmac.compare_digest(checksum(random_part), check):
        return None
    return ParsedToken(kind=prefix_kind, digest=token_digest(raw), last4=raw[-4:])


def looks_like_token(raw: str) -> bool:
    """Has a Grantry prefix (well-formed or not): used to tell "malformed" from "missing"."""
    return any(raw.startswith(prefix) for prefix in PREFIXES)


# --- Lifetime and leaks (both kinds) ------------------------------------------

DEFAULT_TOKEN_DAYS = 30
MAX_TOKEN_DAYS = 366
EXPIRY_WARNING_DAYS = 7


def max_token_days(organization: Any) -> int:
    """The org's ceiling on token lifetime: its own lower maximum, or the hard cap."""
    own = getattr(organization, "max_token_days", None)
    return min(own, MAX_TOKEN_DAYS) if own else MAX_TOKEN_DAYS


def token_lifetime(
    organization: Any, expires_in_days: int | None, *, now: datetime | None = None
) -> datetime:
    """The expiry of a token minted now: mandatory, `expires_in_days` (None: the default, 30
    days, or the org's maximum when that is lower) between 1 and the org's maximum (≤ 366),
    else a ValidationError on `expires_in_days`."""
    ceiling = max_token_days(organization)
    days = min(DEFAULT_TOKEN_DAYS, ceiling) if expires_in_days is None else expires_in_days
    if not 1 <= days <= ceiling:
        raise ValidationError(
            {
                "expires_in_days": f"Choose between 1 and {ceiling} days (this organization's "
                "maximum token lifetime)."
            }
        )
    return (now or timezone.now()) + timedelta(days=days)


# --- Lifecycle: mint, revoke, leak (both kinds; each service audits its own action) ----


def issued_token_create(
    model: type[_T], *, kind: TokenKind, generated: GeneratedToken | None = None, **fields: Any
) -> tuple[_T, str]:
    """Mint: a new row of `model` (an `IssuedToken`) for a new token of `kind` (or for one
    already `generated`, as an OAuth server must hand out before the row exists) with a new
    public id, its digest and last four. Returns (row, raw); the raw value is never stored."""
    generated = generated or generate_token(kind)
    token = model._default_manager.create(
        public_id=new_public_id(), digest=generated.digest, last4=generated.last4, **fields
    )
    return token, generated.raw


def issued_token_revoke(model: type[_T], *, pk: int, **fields: Any) -> tuple[_T, bool]:
    """Revoke: lock the token row (FOR NO KEY UPDATE: nothing references it by a changed
    key), and unless it is revoked already set `revoked_at` (and `fields`, such as who and
    why). Inside the caller's transaction, which audits it. Returns (row, whether this call
    revoked it): revocation is permanent and happens once."""
    token = model._default_manager.select_for_update(no_key=True).get(pk=pk)
    if token.revoked_at is not None:
        return token, False
    token.revoked_at = timezone.now()
    for name, value in fields.items():
        setattr(token, name, value)
    token.save(update_fields=["revoked_at", *fields])
    return token, True


def leak_report(*, kind: TokenKind, where: str, method: str, path: str) -> dict[str, Any]:
    """The `token.leaked` event's reason and metadata (the service adds the target)."""
    return {
        "reason": f"The token was sent in {where}; it has been revoked.",
        "metadata": {"where": where, "kind": kind, **request_line(method, path)},
    }


def leak_notify(
    *,
    recipients: Iterable[str],
    subject: str,
    label: str,
    where: str,
    method: str,
    path: str,
    remedy: str,
) -> None:
    """Email the people who hold a leaked token, after the revocation commits (and not
    at all when it rolls back). Never given the raw token."""
    to = [address for address in recipients if address]
    if not to:
        return
    body = leaked_token_email(label=label, where=where, method=method, path=path, remedy=remedy)
    transaction.on_commit(lambda: send_mail(subject, body, None, to))


def request_line(method: str, path: str) -> dict[str, str]:
    """Method and path of the request a token leaked in (never its query string)."""
    return {"method": method, "path": path[:300]} if method or path else {}


def leaked_token_email(*, label: str, where: str, method: str, path: str, remedy: str) -> str:
    line = request_line(method, path)
    seen = f"{line['method']} {line['path']}" if line else "a request"
    return (
        f"Grantry saw the {label} in {where} of {seen} at "
        f"{timezone.now():%Y-%m-%d %H:%M} UTC.\n\n"
        "URLs end up in access logs, proxies and browser history, so Grantry treats "
        "the token as leaked and has revoked it. Calls with it now fail.\n\n"
        f"{remedy}, and send it only in the Authorization header.\n"
    )


# Last use is written at most once a minute per token: no write on every call.
LAST_USED_THROTTLE = timedelta(seconds=60)


def last_used_touch(
    model: type[Model],
    *,
    pk: int,
    last_used_at: datetime | None,
    now: datetime | None = None,
    **also: Any,
) -> bool:
    """Record a token's last use (and `also`, e.g. the address) at most once per
    LAST_USED_THROTTLE. `last_used_at` is what the caller already read, so a recently used
    token costs no query; the conditional UPDATE makes concurrent processes agree on one
    write. True when this call wrote."""
    now = now or timezone.now()
    cutoff = now - LAST_USED_THROTTLE
    if last_used_at is not None and last_used_at >= cutoff:
        return False
    updated = (
        model._default_manager.filter(pk=pk)
        .filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=cutoff))
        .update(last_used_at=now, **also)
    )
    return bool(updated)
