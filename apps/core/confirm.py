"""One way to confirm a destructive action, everywhere in the dashboard.

The action's button posts to the action's own URL. Without `confirmed=yes`
the view answers a confirmation page (no JavaScript, no browser confirm())
that names what stops working and whether it can be undone; its button posts
the same fields again with `confirmed=yes`, and only then the view acts.
An action that can be undone offers Undo once, on the next page."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

CONFIRMED_FIELD = "confirmed"
UNDO_SESSION_KEY = "dashboard:undo"


@dataclass
class Confirmation:
    title: str  # "Revoke token tok_ab12?"
    stops: list[str]  # what stops working, in plain words, with counts
    button: str  # "Revoke token"
    cancel_url: str
    undo: str = ""  # how to undo it; "" means it cannot be undone
    lists: list[tuple[str, list[str]]] = field(default_factory=list)  # ("Workers using it", […])
    carry: dict[str, str] = field(default_factory=dict)  # fields to post again


def is_confirmed(request: HttpRequest) -> bool:
    return request.POST.get(CONFIRMED_FIELD) == "yes"


def confirmation_page(
    request: HttpRequest, confirmation: Confirmation, context: dict[str, Any]
) -> HttpResponse:
    carry = {**confirmation.carry}
    for name, value in request.POST.items():
        if name not in ("csrfmiddlewaretoken", CONFIRMED_FIELD):
            carry.setdefault(name, str(value))
    confirmation.carry = carry
    return render(request, "includes/confirm.html", {**context, "confirm": confirmation})


def offer_undo(
    request: HttpRequest,
    *,
    label: str,
    url: str,
    org_slug: str,
    fields: dict[str, str] | None = None,
) -> None:
    """Show an Undo button (a POST to `url`) once, on the next dashboard page of the org."""
    request.session[UNDO_SESSION_KEY] = {
        "label": label,
        "url": url,
        "org_slug": org_slug,
        "fields": fields or {},
    }


def take_undo(request: HttpRequest, org_slug: str) -> dict[str, Any] | None:
    entry = request.session.pop(UNDO_SESSION_KEY, None)
    if entry is None or entry.get("org_slug") != org_slug:
        return None
    return entry
