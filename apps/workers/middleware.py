"""Tokens in URLs are leaked tokens.

A URL's query string ends up in access logs, proxies and browser history. When a
request to the APIs or MCP carries a valid worker (`gry_`) or personal (`gryp_`)
token in its query string, the token is treated as leaked, as GitHub's secret
scanning does: it is revoked, `token.leaked` is audited, its owner is emailed, and
the request answers 401 `token_leaked`. Malformed or unknown tokens there change
nothing (the request fails its normal authentication).

It lives in apps.workers because it revokes both kinds of token: workers sits above
apps.accounts (personal tokens) and may import it, not the other way round."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import unquote_plus

from django.http import HttpRequest, HttpResponse

from apps.accounts.models import PersonalAPIToken
from apps.accounts.services import personal_token_leaked
from apps.core.api import error_response
from apps.core.exceptions import ServiceUnavailable
from apps.core.responses import is_api_path
from apps.core.tokens import parse_token
from apps.workers.models import WorkerToken
from apps.workers.services import token_leaked

_CANDIDATE = re.compile(r"gryp?_[0-9A-Za-z]{49}")
WHERE = "a URL's query string"


def leaked_tokens_revoke(request: HttpRequest) -> int:
    """Revoke every valid token in this request's query string; how many were."""
    query = request.META.get("QUERY_STRING", "")
    if "%" in query or "+" in query:
        query = unquote_plus(query)
    revoked = 0
    for candidate in set(_CANDIDATE.findall(query)):
        parsed = parse_token(candidate)
        if parsed is None:
            continue
        if parsed.kind == "worker":
            worker_token = (
                WorkerToken.objects.usable().select_related("worker").filter(digest=parsed.digest)
            ).first()
            if worker_token is not None:
                token_leaked(
                    token=worker_token, where=WHERE, method=request.method or "", path=request.path
                )
                revoked += 1
        else:
            personal = (
                PersonalAPIToken.objects.usable()
                .select_related("user")
                .filter(digest=parsed.digest)
                .first()
            )
            if personal is not None:
                personal_token_leaked(
                    token=personal, where=WHERE, method=request.method or "", path=request.path
                )
                revoked += 1
    return revoked


class LeakedTokenMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        query = request.META.get("QUERY_STRING", "")
        if query and "gry" in query.lower() and is_api_path(request.path):
            try:
                revoked = leaked_tokens_revoke(request)
            except ServiceUnavailable as exc:  # raised outside a view: answer it here
                return error_response(
                    exc.code,
                    exc.message,
                    status_code=503,
                    headers={"Retry-After": str(exc.retry_after)},
                )
            if revoked:
                return error_response(
                    "token_leaked",
                    "A token was sent in the URL's query string, which logs keep. Grantry "
                    "has revoked it and emailed its owner. Mint a new one and send it only "
                    "in the 'Authorization: Bearer' header.",
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="grantry", error="invalid_token"'},
                )
        return self.get_response(request)
