"""Server-rendered SVG charts for reviewers: no JS library, no CDN.

* Calls are the broker's decided requests (`broker.execute`, `broker.proxy`);
  dry runs (`broker.check`) are counted on their own, and the `.attempt`
  events an allowed call writes before going upstream are not counted twice.
* Denials are grouped by what the agent tried (the SaaS action, or the proxy's
  method on a provider), by worker *name* and by reason.
* Buckets fit the window: minutes for an hour, hours for a day, days for a month.
* Every bar links to the audit trail filtered to the events it counts.

Everything is computed for the current filter inside a bounded time window. The reviewer's
side (apps/review, the top layer), so worker names come straight from apps.workers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Count, DateTimeField, F, Func, Q, QuerySet, Value
from django.utils.html import escape, format_html
from django.utils.http import urlencode
from django.utils.safestring import SafeString, mark_safe

from apps.audit.actions import DRY_RUN
from apps.audit.filters import tried_expression
from apps.audit.models import AuditEvent
from apps.audit.selectors import CALL, DENIED
from apps.workers.models import Worker

WIDTH, HEIGHT, PAD = 640, 180, 32
CALLS_COLOUR, DENIED_COLOUR, DRY_RUN_COLOUR = "#1f5fa8", "#b3261e", "#6b7280"
# Distinct enough for five lines, each at least 3:1 against white.
WORKER_COLOURS = ("#b3261e", "#1f5fa8", "#7c3aed", "#0f766e", "#a16207")
TOP_WORKERS = 5
TOP_BARS = 10
MAX_BUCKETS = 96
# (step, label) from fine to coarse: the finest that keeps the window within MAX_BUCKETS.
STEPS = (
    (timedelta(minutes=1), "minute"),
    (timedelta(minutes=5), "5 minutes"),
    (timedelta(minutes=15), "15 minutes"),
    (timedelta(hours=1), "hour"),
    (timedelta(hours=6), "6 hours"),
    (timedelta(days=1), "day"),
)
ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)
MIN_FITTED_WINDOW = timedelta(hours=1)


@dataclass
class Series:
    label: str
    colour: str
    values: list[int]


class DateBin(Func):
    """PostgreSQL's date_bin(stride, source, origin): buckets of any size."""

    function = "date_bin"
    output_field = DateTimeField()


def broker_events(events: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
    """Decided broker requests: calls and dry runs, without the pre-call `.attempt` rows."""
    return events.exclude(decision="").exclude(action__endswith=".attempt")


def fit_window(
    events: QuerySet[AuditEvent], start: datetime, end: datetime, *, start_given: bool
) -> tuple[datetime, datetime]:
    """Without an explicit start, the window begins at the window's first call (at least
    an hour before `end`), so one afternoon of traffic is not drawn as a week-long ramp."""
    if start_given:
        return start, end
    first = (
        broker_events(events)
        .filter(created_at__gte=start, created_at__lte=end)
        .order_by("created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    if first is None:
        return start, end
    return max(start, min(first, end - MIN_FITTED_WINDOW)), end


def bucket_step(start: datetime, end: datetime) -> tuple[timedelta, str]:
    for step, label in STEPS:
        if (end - start) / step <= MAX_BUCKETS:
            return step, label
    return STEPS[-1]


def _points(start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    first = ORIGIN + ((start - ORIGIN) // step) * step
    points, cursor = [], first
    while cursor <= end:
        points.append(cursor)
        cursor += step
    return points


def _worker_names(organization_id: int | None, ids: list[int]) -> dict[int, str]:
    if not ids or organization_id is None:
        return {}
    return dict(
        Worker.objects.for_organization(organization_id)
        .filter(pk__in=ids)
        .values_list("pk", "name")
    )


def chart_data(
    events: QuerySet[AuditEvent],
    start: datetime,
    end: datetime,
    *,
    organization_id: int | None = None,
    list_url: str = "",
    filter_params: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Every chart of the page. `list_url` and `filter_params` build the bars' links
    to the audit trail (the current filter, narrowed to the bar, in this window)."""
    in_window = broker_events(events).filter(created_at__gte=start, created_at__lte=end)
    calls = in_window.filter(CALL)  # what every page counts (apps.audit.selectors)
    denials = calls.filter(DENIED)
    step, step_label = bucket_step(start, end)
    points = _points(start, end, step)
    index = {p: i for i, p in enumerate(points)}
    bucket = DateBin(Value(step), F("created_at"), Value(ORIGIN))

    totals, denied, dry = ([0] * len(points) for _ in range(3))
    for row in (
        in_window.order_by()
        .annotate(bucket=bucket)
        .values("bucket")
        .annotate(
            n=Count("id", filter=CALL),
            d=Count("id", filter=CALL & DENIED),
            dry=Count("id", filter=Q(action=DRY_RUN)),
        )
    ):
        i = index.get(row["bucket"])
        if i is not None:
            totals[i], denied[i], dry[i] = row["n"], row["d"], row["dry"]

    base = {
        **(filter_params or {}),
        "start": start.strftime("%Y-%m-%dT%H:%M"),
        "end": (end + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M"),
    }

    def link(**params: Any) -> str:
        if not list_url:
            return ""
        return f"{list_url}?{urlencode({**base, **{k: str(v) for k, v in params.items()}})}"

    busiest: list[Any] = list(
        calls.order_by()
        .exclude(worker_id=None)
        .values("worker_id")
        .annotate(n=Count("id"), d=Count("id", filter=DENIED))
        .order_by("-n", "worker_id")[:TOP_WORKERS]
    )
    most_denied: list[Any] = list(
        denials.order_by()
        .exclude(worker_id=None)
        .values("worker_id")
        .annotate(n=Count("id"))
        .order_by("-n", "worker_id")[:TOP_WORKERS]
    )
    names = _worker_names(
        organization_id,
        [r["worker_id"] for r in busiest] + [r["worker_id"] for r in most_denied],
    )

    def name(worker_id: int) -> str:
        return names.get(worker_id, f"worker #{worker_id} (deleted)")

    per_worker_series = _per_worker(
        calls, [r["worker_id"] for r in busiest], bucket, index, len(points)
    )
    per_worker = [
        {
            "worker_id": r["worker_id"],
            "name": name(r["worker_id"]),
            "calls": r["n"],
            "denied": r["d"],
            "url": link(worker=r["worker_id"]),
            "svg": line_chart(
                [
                    Series("Calls", CALLS_COLOUR, per_worker_series[r["worker_id"]][0]),
                    Series("Denied", DENIED_COLOUR, per_worker_series[r["worker_id"]][1]),
                ],
                points,
                step,
                title=f"{name(r['worker_id'])}: calls and denials",
                height=110,
            ),
        }
        for r in busiest
    ]
    denial_series = _per_worker(
        denials, [r["worker_id"] for r in most_denied], bucket, index, len(points)
    )

    top_denied = [
        {"label": r["tried"], "n": r["n"], "url": link(decision="denied", call=r["tried"])}
        for r in denials.order_by()
        .annotate(tried=tried_expression())
        .values("tried")
        .annotate(n=Count("id"))
        .order_by("-n", "tried")[:TOP_BARS]
    ]
    top_workers = [
        {
            "label": name(r["worker_id"]),
            "n": r["n"],
            "url": link(decision="denied", worker=r["worker_id"]),
        }
        for r in most_denied
    ]
    top_reasons = [
        {
            "label": r["reason"] or "(no reason recorded)",
            # The text filter matches a part of the reason; 200 characters are plenty.
            "url": link(decision="denied", **({"q": r["reason"][:200]} if r["reason"] else {})),
            "n": r["n"],
        }
        for r in denials.order_by()
        .values("reason")
        .annotate(n=Count("id"))
        .order_by("-n", "reason")[:TOP_BARS]
    ]
    return {
        "step": step_label,
        "start": start,
        "end": end,
        "total_calls": sum(totals),
        "total_denied": sum(denied),
        "total_dry_runs": sum(dry),
        "overall_svg": line_chart(
            [
                Series("Calls", CALLS_COLOUR, totals),
                Series("Denied", DENIED_COLOUR, denied),
                Series("Dry runs", DRY_RUN_COLOUR, dry),
            ],
            points,
            step,
            title="Calls, denials and dry runs over time",
        ),
        "per_worker": per_worker,
        "top_denied": top_denied,
        "top_denied_svg": bar_chart(top_denied, title="Top denied actions"),
        "top_denied_workers": top_workers,
        "top_denied_workers_svg": bar_chart(top_workers, title="Denials by worker"),
        "denials_by_worker_svg": line_chart(
            [
                Series(name(r["worker_id"]), WORKER_COLOURS[k], denial_series[r["worker_id"]][0])
                for k, r in enumerate(most_denied)
            ],
            points,
            step,
            title="Denials per worker over time",
        )
        if most_denied
        else None,
        "top_reasons": top_reasons,
        "top_reasons_svg": bar_chart(top_reasons, title="Top denial reasons", label_width=360),
    }


def _per_worker(
    rows: QuerySet[AuditEvent], ids: list[int], bucket: Any, index: dict[datetime, int], n: int
) -> dict[int, tuple[list[int], list[int]]]:
    """Per worker and bucket: (all rows, denied rows)."""
    series = {wid: ([0] * n, [0] * n) for wid in ids}
    if not ids:
        return series
    for row in (
        rows.order_by()
        .filter(worker_id__in=ids)
        .annotate(bucket=bucket)
        .values("worker_id", "bucket")
        .annotate(n=Count("id"), d=Count("id", filter=DENIED))
    ):
        i, worker_id = index.get(row["bucket"]), row["worker_id"]
        if i is not None and worker_id is not None:
            series[worker_id][0][i] = row["n"]
            series[worker_id][1][i] = row["d"]
    return series


def _label(point: datetime, step: timedelta) -> str:
    if step < timedelta(days=1):
        return point.strftime("%m-%d %H:%M")
    return point.strftime("%Y-%m-%d")


def line_chart(
    series: list[Series],
    points: list[datetime],
    step: timedelta,
    *,
    title: str,
    height: int = HEIGHT,
) -> SafeString:
    top = max([1, *(v for s in series for v in s.values)])
    n = max(len(points) - 1, 1)
    plot_w, plot_h = WIDTH - 2 * PAD, height - 2 * PAD

    def xy(i: int, v: int) -> str:
        return f"{PAD + i * plot_w / n:.1f},{PAD + plot_h - v * plot_h / top:.1f}"

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" preserveAspectRatio="xMinYMin meet" '
        f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{PAD}" y1="{PAD + plot_h}" x2="{WIDTH - PAD}" y2="{PAD + plot_h}" '
        f'stroke="#666" />',
        f'<text x="{PAD - 4}" y="{PAD + 4}" text-anchor="end" font-size="16">{top}</text>',
        f'<text x="{PAD - 4}" y="{PAD + plot_h}" text-anchor="end" font-size="16">0</text>',
    ]
    if points:
        parts.append(
            f'<text x="{PAD}" y="{height - 8}" font-size="16">'
            f"{escape(_label(points[0], step))}</text>"
        )
        parts.append(
            f'<text x="{WIDTH - PAD}" y="{height - 8}" font-size="16" '
            f'text-anchor="end">{escape(_label(points[-1], step))}</text>'
        )
    for s in series:
        line = " ".join(xy(i, v) for i, v in enumerate(s.values))
        parts.append(
            f'<polyline fill="none" stroke="{s.colour}" stroke-width="2" '
            f'points="{line}"><title>{escape(s.label)}</title></polyline>'
        )
    parts.append("</svg>")
    # The legend is page text under the plot: it never covers a line, and it stays
    # readable when the SVG is scaled down to a phone's width.
    legend = "".join(
        f'<li><svg class="swatch" viewBox="0 0 10 10" aria-hidden="true">'
        f'<rect width="10" height="10" fill="{s.colour}"></rect></svg>'
        f"{escape(s.label)}: {sum(s.values)}</li>"
        for s in series
    )
    parts.append(f'<ul class="chart-legend">{legend}</ul>')
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text is escaped


def bar_chart(items: list[dict[str, Any]], *, title: str, label_width: int = 260) -> SafeString:  # noqa: ARG001 - kept for callers
    """Horizontal bars as an HTML list: the labels are page text (readable at any width,
    wrapped, never cut into look-alikes), each bar a tiny SVG scaled to its share (the
    Content-Security-Policy allows no inline style). Each row links to `item["url"]`
    when there is one."""
    top = max([1, *(item["n"] for item in items)])
    if not items:
        return format_html(
            '<p class="bar-chart-empty" role="note" aria-label="{}">No denials in this window.</p>',
            title,
        )
    rows = []
    for item in items:
        label, n, url = str(item["label"]), item["n"], item.get("url", "")
        share = 100 * n / top
        inner = format_html(
            '<span class="bar-label">{}</span>'
            '<svg class="bar" viewBox="0 0 100 10" preserveAspectRatio="none" aria-hidden="true">'
            '<rect width="{}" height="10" fill="{}"></rect></svg>'
            '<span class="bar-n">{}</span>',
            label,
            f"{share:.1f}",
            DENIED_COLOUR,
            n,
        )
        if not url:
            inner = format_html('<span class="bar-row">{}</span>', inner)
        else:
            inner = format_html(
                '<a class="chart-bar" href="{}" aria-label="{}: {}. Show these events">{}</a>',
                url,
                label,
                n,
                inner,
            )
        rows.append(format_html("<li>{}</li>", inner))
    return format_html(
        '<ul class="bar-chart" aria-label="{}">{}</ul>',
        title,
        mark_safe("".join(rows)),  # noqa: S308 - each row is format_html
    )
