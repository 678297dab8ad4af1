"""Server-rendered SVG charts for reviewers: no JS library, no CDN.

Calls are broker events (a decision was made); denials are those denied.
Everything is computed for the current filter inside a bounded time window."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import Trunc
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from apps.audit.models import AuditEvent, Decision

WIDTH, HEIGHT, PAD = 640, 180, 32
CALLS_COLOUR, DENIED_COLOUR = "#1f5fa8", "#b3261e"
TOP_WORKERS = 5


@dataclass
class Series:
    label: str
    colour: str
    values: list[int]


def _buckets(start: datetime, end: datetime) -> tuple[str, timedelta, list[datetime]]:
    kind, step = (
        ("hour", timedelta(hours=1))
        if end - start <= timedelta(days=2)
        else ("day", timedelta(days=1))
    )
    first = start.replace(minute=0, second=0, microsecond=0)
    if kind == "day":
        first = first.replace(hour=0)
    points, cursor = [], first
    while cursor <= end:
        points.append(cursor)
        cursor += step
    return kind, step, points


def chart_data(events: QuerySet[AuditEvent], start: datetime, end: datetime) -> dict[str, Any]:
    calls = events.filter(created_at__gte=start, created_at__lte=end).exclude(decision="")
    kind, _step, points = _buckets(start, end)
    index = {p: i for i, p in enumerate(points)}

    totals = [0] * len(points)
    denied = [0] * len(points)
    rows = (
        calls.order_by()
        .annotate(bucket=Trunc("created_at", kind))
        .values("bucket")
        .annotate(n=Count("id"), d=Count("id", filter=Q(decision=Decision.DENIED)))
    )
    for row in rows:
        i = index.get(row["bucket"])
        if i is not None:
            totals[i], denied[i] = row["n"], row["d"]

    top = list(
        calls.order_by()
        .exclude(worker_id=None)
        .values("worker_id")
        .annotate(n=Count("id"))
        .order_by("-n")[:TOP_WORKERS]
    )
    per_worker = []
    if top:
        ids = [t["worker_id"] for t in top]
        series = {wid: ([0] * len(points), [0] * len(points)) for wid in ids}
        for row in (
            calls.order_by()
            .filter(worker_id__in=ids)
            .annotate(bucket=Trunc("created_at", kind))
            .values("worker_id", "bucket")
            .annotate(n=Count("id"), d=Count("id", filter=Q(decision=Decision.DENIED)))
        ):
            i = index.get(row["bucket"])
            if i is not None:
                series[row["worker_id"]][0][i] = row["n"]
                series[row["worker_id"]][1][i] = row["d"]
        for t in top:
            c, d = series[t["worker_id"]]
            per_worker.append(
                {
                    "worker_id": t["worker_id"],
                    "calls": sum(c),
                    "denied": sum(d),
                    "svg": line_chart(
                        [Series("Calls", CALLS_COLOUR, c), Series("Denied", DENIED_COLOUR, d)],
                        points,
                        kind,
                        title=f"Worker {t['worker_id']}: calls and denials",
                        height=110,
                    ),
                }
            )

    top_denied = list(
        calls.filter(decision=Decision.DENIED)
        .order_by()
        .values("action")
        .annotate(n=Count("id"))
        .order_by("-n", "action")[:10]
    )
    return {
        "kind": kind,
        "start": start,
        "end": end,
        "total_calls": sum(totals),
        "total_denied": sum(denied),
        "overall_svg": line_chart(
            [Series("Calls", CALLS_COLOUR, totals), Series("Denied", DENIED_COLOUR, denied)],
            points,
            kind,
            title="Calls and denials over time",
        ),
        "per_worker": per_worker,
        "top_denied": top_denied,
        "top_denied_svg": bar_chart(
            [(r["action"], r["n"]) for r in top_denied], title="Top denied actions"
        ),
    }


def _label(point: datetime, kind: str) -> str:
    return point.strftime("%m-%d %H:00" if kind == "hour" else "%Y-%m-%d")


def line_chart(
    series: list[Series], points: list[datetime], kind: str, *, title: str, height: int = HEIGHT
) -> SafeString:
    top = max([1, *(v for s in series for v in s.values)])
    n = max(len(points) - 1, 1)
    plot_w, plot_h = WIDTH - 2 * PAD, height - 2 * PAD

    def xy(i: int, v: int) -> str:
        return f"{PAD + i * plot_w / n:.1f},{PAD + plot_h - v * plot_h / top:.1f}"

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{PAD}" y1="{PAD + plot_h}" x2="{WIDTH - PAD}" y2="{PAD + plot_h}" '
        f'stroke="#666" />',
        f'<text x="{PAD - 4}" y="{PAD + 4}" text-anchor="end" font-size="11">{top}</text>',
        f'<text x="{PAD - 4}" y="{PAD + plot_h}" text-anchor="end" font-size="11">0</text>',
    ]
    if points:
        parts.append(
            f'<text x="{PAD}" y="{height - 8}" font-size="11">'
            f"{escape(_label(points[0], kind))}</text>"
        )
        parts.append(
            f'<text x="{WIDTH - PAD}" y="{height - 8}" font-size="11" '
            f'text-anchor="end">{escape(_label(points[-1], kind))}</text>'
        )
    for k, s in enumerate(series):
        line = " ".join(xy(i, v) for i, v in enumerate(s.values))
        parts.append(
            f'<polyline fill="none" stroke="{s.colour}" stroke-width="2" '
            f'points="{line}"><title>{escape(s.label)}</title></polyline>'
        )
        parts.append(
            f'<text x="{WIDTH - PAD}" y="{14 + 14 * k}" text-anchor="end" '
            f'font-size="12" fill="{s.colour}">{escape(s.label)}: '
            f"{sum(s.values)}</text>"
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text is escaped


def bar_chart(items: list[tuple[str, int]], *, title: str) -> SafeString:
    row_h, label_w = 22, 260
    height = max(1, len(items)) * row_h + 10
    top = max([1, *(n for _, n in items)])
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    if not items:
        parts.append('<text x="8" y="20" font-size="12">No denials in this window.</text>')
    for i, (label, n) in enumerate(items):
        y = 5 + i * row_h
        w = (WIDTH - label_w - 60) * n / top
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" '
            f'font-size="12">{escape(label[:40])}</text>'
        )
        parts.append(
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" '
            f'fill="{DENIED_COLOUR}"><title>{escape(label)}: {n}</title></rect>'
        )
        parts.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" font-size="12">{n}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text is escaped
