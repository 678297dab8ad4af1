"""Failed token authentication: throttled, and audited in aggregate.

Worker tokens (`gry_`, the agent API and MCP) and personal tokens (`gryp_`, the
management API) share these rules:

- Throttle. Failures are counted per client address and per token prefix (the
  first 12 characters of the presented credential, so one stolen, expired or
  revoked token is limited however many addresses send it; only a digest of the
  prefix is kept). Once either count reaches its limit in the current window,
  every failed token authentication from that address, or with that prefix,
  answers 429 `auth_throttled` with `Retry-After` until the window ends (and is
  no longer counted or audited). The count is read only after a lookup failed:
  a valid token is never throttled, even from an address others fail from (agents
  behind one NAT), and a successful call reads nothing here.
- Aggregate. The first few failures of a kind (organization, action, surface)
  in a window (GRANTRY_AUTH_FAILURES_AUDITED_PER_WINDOW, 5) are audited at once,
  one event each, as before. The rest of that window only count, in the cache;
  when the window has closed one `auth.failed` event sums them up (count, first
  and last seen, codes, a sample of token ids and addresses). A burst stays
  visible to reviewers and costs at most six rows per kind and window, however
  long it lasts. The summary is written by the next failure of a
  later window or by the `workers.flush_auth_failures` beat task, whichever runs
  first (a claim key makes it exactly once).

Counters live in Django's cache: Redis in production and CI, the file cache in
`make run`. They never hold a token, only digests of prefixes and public ids.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from typing import Any, NoReturn

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.http import HttpRequest

from apps.audit.models import ActorType, Outcome
from apps.audit.services import audit_record
from apps.core.audit_context import client_ip
from apps.core.tokens import looks_like_token

PREFIX_LENGTH = 12
SAMPLE_SIZE = 5
# Windows older than this many are no longer flushed (their counters have expired).
FLUSH_LOOKBACK = 5
# Swapped per test (conftest.py), so tests never see each other's counters.
namespace = "authfail"
# The clock windows are counted on (tests hold it still inside one window).
clock = time.time


def window_seconds() -> int:
    return int(getattr(settings, "GRANTRY_AUTH_FAILURE_WINDOW_SECONDS", 60))


def individually_audited() -> int:
    return int(getattr(settings, "GRANTRY_AUTH_FAILURES_AUDITED_PER_WINDOW", 5))


def _window(now: float) -> int:
    return int(now // window_seconds())


def _retry_after(window: int, now: float) -> int:
    return max(1, int((window + 1) * window_seconds() - now + 0.999))


def _bearer(request: HttpRequest) -> str:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not isinstance(header, str):
        return ""
    scheme, _, raw = header.strip().partition(" ")
    credential = raw.strip() if scheme.lower() in ("bearer", "dpop") else header.strip()
    return credential if looks_like_token(credential) else ""


def _throttle_keys(request: HttpRequest, window: int) -> dict[str, int]:
    """Cache key → limit, for this request's address and (when it sent one) token prefix."""
    keys = {
        f"{namespace}:addr:{client_ip(request) or '-'}:{window}": int(
            settings.GRANTRY_AUTH_FAILURES_PER_ADDRESS
        )
    }
    credential = _bearer(request)
    if credential:
        prefix = hashlib.sha256(credential[:PREFIX_LENGTH].encode()).hexdigest()[:32]
        keys[f"{namespace}:prefix:{prefix}:{window}"] = int(
            settings.GRANTRY_AUTH_FAILURES_PER_TOKEN_PREFIX
        )
    return keys


def throttled_for(request: HttpRequest) -> int | None:
    """Seconds until this address or token prefix may try again, or None. One cache read."""
    now = clock()
    window = _window(now)
    limits = _throttle_keys(request, window)
    counts = cache.get_many(list(limits))
    if any(int(counts.get(key) or 0) >= limit for key, limit in limits.items()):
        return _retry_after(window, now)
    return None


def auth_throttle_check(request: HttpRequest) -> None:
    """Raise 429 `auth_throttled` (with Retry-After) when too many failures came from
    this address or with this token prefix in the current window."""
    retry_after = throttled_for(request)
    if retry_after is None:
        return
    from apps.core.api import APIError  # apps.core.api imports DRF's views

    raise APIError(
        "auth_throttled",
        f"Too many failed authentications from this address or with this token; "
        f"retry after {retry_after} s.",
        status_code=429,
        headers={"Retry-After": str(retry_after)},
    )


def auth_refuse(
    request: HttpRequest,
    *,
    surface: str,
    code: str,
    message: str,
    www_authenticate: str,
    organization_id: int | None = None,
    token_public_id: str = "",
    fields: dict[str, Any] | None = None,
    details: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> NoReturn:
    """Refuse one failed token authentication, of either kind: 429 when this address or
    token prefix is throttled (read only now, after the lookup failed: it limits failures,
    never a valid token that shares an address with them, such as agents behind a NAT, and
    a successful call does not read it at all); else count and audit it in its own
    transaction (`auth_failure_record`) and answer 401 with `WWW-Authenticate` and the
    standard error body. `fields` name the token's actor and target when it was found;
    `metadata` adds to the event's (which DPoP check failed)."""
    auth_throttle_check(request)
    with transaction.atomic():
        auth_failure_record(
            request=request,
            surface=surface,
            code=code,
            message=message,
            organization_id=organization_id,
            token_public_id=token_public_id,
            fields=fields,
            metadata=metadata,
        )
    from apps.core.api import APIError  # apps.core.api imports DRF's views

    raise APIError(
        code,
        message,
        status_code=401,
        details=details,
        headers={"WWW-Authenticate": www_authenticate},
    )


def auth_failure_count(request: HttpRequest) -> None:
    """Count one failure against this address (and token prefix) for the throttle, for a
    surface that writes its own audit event (the token exchange, apps.mcpauth.exchange)."""
    window = _window(clock())
    for key in _throttle_keys(request, window):
        _incr(key, window_seconds() * 2)


def _incr(key: str, timeout: int) -> int:
    cache.add(key, 0, timeout=timeout)
    try:
        return int(cache.incr(key))
    except ValueError:  # expired between add and incr (window edge)
        cache.add(key, 1, timeout=timeout)
        return 1


# The failures of a known token that have an event of their own.
_ACTIONS = {"token_expired": "token.expired_in_use", "invalid_dpop_proof": "token.dpop_refused"}


def _iso(now: float) -> str:
    return datetime.fromtimestamp(now, tz=UTC).isoformat()


def _kind_key(window: int, organization_id: int | None, action: str, surface: str) -> str:
    return f"{namespace}:agg:{organization_id or '-'}:{action}:{surface}:{window}"


def auth_failure_record(
    *,
    request: HttpRequest | None,
    surface: str,
    code: str,
    message: str,
    organization_id: int | None = None,
    token_public_id: str = "",
    fields: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> bool:
    """Count one failed authentication; audit it if it is among the first few of its kind
    in this window, else fold it into the window's summary. Returns whether an event was written.
    Never given the raw token. A known token past its expiry is `token.expired_in_use`, a
    known token bound to a key sent without a valid proof of it `token.dpop_refused` (a
    stolen bound token looks like this), every other failure `auth.failed`."""
    action = _ACTIONS.get(code, "auth.failed")
    now = clock()
    window = _window(now)
    ttl = window_seconds() * (FLUSH_LOOKBACK + 2)
    if request is not None:
        for key in _throttle_keys(request, window):
            _incr(key, window_seconds() * 2)
    kind = _kind_key(window, organization_id, action, surface)
    ip = client_ip(request) or ""
    if _incr(f"{kind}:seen", ttl) <= individually_audited():
        try:
            audit_record(
                action=action,
                outcome=Outcome.FAILURE,
                reason=message,
                metadata={**(metadata or {}), "code": code, "surface": surface},
                organization_id=organization_id,
                **(fields or {"actor_type": ActorType.ANONYMOUS}),
            )
        except BaseException:
            cache.decr(f"{kind}:seen")  # not recorded: the next failure tries again
            raise
        # Sum up earlier windows now rather than waiting for the beat task.
        transaction.on_commit(auth_failures_flush, robust=True)
        return True
    count = _incr(f"{kind}:count", ttl)
    if count == 1:
        cache.set(f"{kind}:first", _iso(now), timeout=ttl)
        slot = _incr(f"{namespace}:pending:{window}", ttl)
        cache.set(
            f"{namespace}:pending:{window}:{slot}",
            {"organization_id": organization_id, "action": action, "surface": surface},
            timeout=ttl,
        )
    cache.set(f"{kind}:last", _iso(now), timeout=ttl)
    _incr(f"{kind}:code:{code}", ttl)
    if count <= SAMPLE_SIZE:
        cache.set(f"{kind}:addr:{count}", ip, timeout=ttl)
    if token_public_id and _incr(f"{kind}:tokens", ttl) <= SAMPLE_SIZE:
        cache.set(f"{kind}:token:{_incr(f'{kind}:token_slot', ttl)}", token_public_id, ttl)
    return False


CODES = (
    "token_missing",
    "token_malformed",
    "token_invalid",
    "token_expired",
    "worker_disabled",
    "token_audience",
    "invalid_dpop_proof",
    "dpop_required",
    "dpop_unbound",
    "member_inactive",
)


def _summarize(window: int, descriptor: dict[str, Any]) -> bool:
    organization_id = descriptor["organization_id"]
    action, surface = descriptor["action"], descriptor["surface"]
    kind = _kind_key(window, organization_id, action, surface)
    if not cache.add(f"{kind}:flushed", 1, timeout=window_seconds() * (FLUSH_LOOKBACK + 2)):
        return False  # another process wrote (or is writing) this summary
    keys = [f"{kind}:{name}" for name in ("count", "first", "last")]
    keys += [f"{kind}:code:{code}" for code in CODES]
    keys += [f"{kind}:addr:{i}" for i in range(1, SAMPLE_SIZE + 1)]
    keys += [f"{kind}:token:{i}" for i in range(1, SAMPLE_SIZE + 1)]
    got = cache.get_many(keys)
    count = int(got.get(f"{kind}:count") or 0)
    if not count:
        return False
    codes = {
        code: int(got[f"{kind}:code:{code}"]) for code in CODES if got.get(f"{kind}:code:{code}")
    }
    samples = range(1, SAMPLE_SIZE + 1)
    addresses = sorted({got[f"{kind}:addr:{i}"] for i in samples if got.get(f"{kind}:addr:{i}")})
    token_ids = sorted({got[f"{kind}:token:{i}"] for i in samples if got.get(f"{kind}:token:{i}")})
    try:
        with transaction.atomic():
            audit_record(
                action="auth.failed",
                outcome=Outcome.FAILURE,
                reason=f"{count} more failed authentications in {window_seconds()} s",
                organization_id=organization_id,
                actor_type=ActorType.ANONYMOUS,
                metadata={
                    "aggregated": True,
                    "surface": surface,
                    "first_action": action,
                    "count": count,
                    "first_seen": got.get(f"{kind}:first", ""),
                    "last_seen": got.get(f"{kind}:last", ""),
                    "window_seconds": window_seconds(),
                    "codes": codes,
                    "token_ids": token_ids,
                    "addresses": [a for a in addresses if a],
                },
            )
    except BaseException:
        cache.delete(f"{kind}:flushed")  # try again on the next flush
        raise
    return True


def auth_failures_flush(*, now: float | None = None) -> int:
    """Write the summary event of every closed window not yet summed up. Safe to run
    concurrently and twice. Returns how many summaries this call wrote."""
    now = clock() if now is None else now
    current = _window(now)
    windows = range(current - FLUSH_LOOKBACK, current)
    counts = cache.get_many([f"{namespace}:pending:{w}" for w in windows])
    written = 0
    for window in windows:
        slots = int(counts.get(f"{namespace}:pending:{window}") or 0)
        done_key = f"{namespace}:pending:{window}:done"
        done = int(cache.get(done_key) or 0) if slots else 0
        for slot in range(done + 1, slots + 1):
            descriptor = cache.get(f"{namespace}:pending:{window}:{slot}")
            if descriptor and _summarize(window, descriptor):
                written += 1
        if slots > done:
            cache.set(done_key, slots, timeout=window_seconds() * (FLUSH_LOOKBACK + 2))
    return written
