"""Keyset pages with a search box for the dashboard's lists.

A page is ordered by one column plus the primary key, and the links carry the
id of the row at the page's edge (`?after=<id>` / `?before=<id>`), never an
OFFSET: page 200 of 10,000 workers costs what page 1 costs, as long as
(organization, column) is indexed. The audit trail keeps its own id-only
keyset (apps.audit.selectors.keyset_page); this one is for lists sorted by a name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import reduce
from operator import or_
from typing import Any

from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.http import urlencode

PAGE_SIZE = 50
SEARCH_MAX = 100


@dataclass
class KeysetPage:
    rows: list[Any]
    search: str = ""
    after: int | None = None  # ?after=<id> for the next page, if there is one
    before: int | None = None  # ?before=<id> for the previous page, if there is one
    extra: dict[str, str] = field(default_factory=dict)

    def __iter__(self) -> Any:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def _query(self, **cursor: int) -> str:
        params: dict[str, str] = {**self.extra, **({"q": self.search} if self.search else {})}
        params.update({name: str(value) for name, value in cursor.items()})
        return "?" + urlencode(params)

    @property
    def next_query(self) -> str:
        return self._query(after=self.after) if self.after is not None else ""

    @property
    def previous_query(self) -> str:
        return self._query(before=self.before) if self.before is not None else ""

    @property
    def is_paginated(self) -> bool:
        return self.after is not None or self.before is not None


def int_param(request: HttpRequest, name: str) -> int | None:
    value = request.GET.get(name, "").strip()
    return int(value) if value.isdigit() and len(value) < 19 else None


def search_query(request: HttpRequest) -> str:
    return request.GET.get("q", "").strip()[:SEARCH_MAX]


def search(rows: QuerySet[Any], text: str, fields: tuple[str, ...]) -> QuerySet[Any]:
    """Rows where any of `fields` contains `text` (case-insensitive)."""
    if not text or not fields:
        return rows
    return rows.filter(reduce(or_, (Q(**{f"{name}__icontains": text}) for name in fields)))


def keyset_page(
    rows: QuerySet[Any],
    *,
    order: str,
    after: int | None = None,
    before: int | None = None,
    size: int = PAGE_SIZE,
    descending: bool = False,
) -> KeysetPage:
    """One page of `rows` sorted by (`order`, pk), ascending unless `descending`.

    The cursor row's `order` value is read again from `rows`, so a cursor from
    another organization or a deleted row simply starts from the first page."""
    cursor_id = after if after is not None else before
    value = None
    if cursor_id is not None:
        value = rows.filter(pk=cursor_id).values_list(order, flat=True).first()
        if value is None:
            after = before = cursor_id = None
    forward = before is None
    # Walking forward in a descending list is walking "down" the index.
    down = descending == forward
    lt, sign = ("lt", "-") if down else ("gt", "")
    if cursor_id is not None:
        rows = rows.filter(
            Q(**{f"{order}__{lt}": value}) | Q(**{order: value, f"pk__{lt}": cursor_id})
        )
    chunk = list(rows.order_by(f"{sign}{order}", f"{sign}pk")[: size + 1])
    more = len(chunk) > size
    chunk = chunk[:size]
    if not forward:
        chunk.reverse()
    if not chunk:
        return KeysetPage([])
    has_next = more if forward else True
    has_previous = (after is not None) if forward else more
    return KeysetPage(
        chunk,
        after=chunk[-1].pk if has_next else None,
        before=chunk[0].pk if has_previous else None,
    )


class KeysetListMixin:
    """For dashboard list views: `paginate(rows)` applies `?q=` over
    `search_fields` and returns one keyset page sorted by `keyset_order`."""

    request: HttpRequest
    search_fields: tuple[str, ...] = ("name",)
    keyset_order: str = "name"
    keyset_descending: bool = False
    page_size: int = PAGE_SIZE

    def paginate(self, rows: QuerySet[Any], **extra: str) -> KeysetPage:
        text = search_query(self.request)
        page = keyset_page(
            search(rows, text, self.search_fields),
            order=self.keyset_order,
            after=int_param(self.request, "after"),
            before=int_param(self.request, "before"),
            size=self.page_size,
            descending=self.keyset_descending,
        )
        page.search = text
        page.extra = {k: v for k, v in extra.items() if v}
        return page
