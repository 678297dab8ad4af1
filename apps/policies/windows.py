"""Time windows and quotas of rules, as plain values. Pure: no database, no cache.

A `Schedule` limits a rule to some days and hours in one time zone, e.g. weekdays
09:00-18:00 Europe/Berlin. `start` is inclusive, `end` exclusive; an `end` at or
before `start` is a window over midnight (22:00-06:00 belongs to the day it starts on);
"24:00" is the end of the day. Local wall-clock times follow the zone's DST rules.

A `Quota` caps how many calls ONE WORKER may make under a rule per minute, hour or day
(fixed windows aligned to UTC; counted by `apps.policies.ratelimit.quota_check`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_SETS = {
    "weekdays": DAY_NAMES[:5],
    "weekend": DAY_NAMES[5:],
    "daily": DAY_NAMES,
}
QUOTA_PERIODS = {"minute": 60, "hour": 3600, "day": 86400}
MAX_QUOTA = 1_000_000


class ScheduleError(ValueError):
    pass


@dataclass(frozen=True)
class Schedule:
    days: tuple[int, ...]  # 0 = Monday
    start: int  # minutes after midnight
    end: int  # minutes after midnight; 1440 = 24:00
    timezone: str

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_open(self, at: datetime) -> bool:
        local = at.astimezone(self.zone)
        minute = local.hour * 60 + local.minute
        today, yesterday = local.weekday(), (local.weekday() - 1) % 7
        if self.end > self.start:
            return today in self.days and self.start <= minute < self.end
        # Over midnight: the evening of an allowed day, or the morning after one.
        return (today in self.days and minute >= self.start) or (
            yesterday in self.days and minute < self.end
        )

    def next_open(self, at: datetime) -> datetime:
        """The first opening strictly after `at` (aware, in the schedule's zone)."""
        local = at.astimezone(self.zone)
        for offset in range(0, 8):
            day = (local + timedelta(days=offset)).date()
            if day.weekday() not in self.days:
                continue
            opening = datetime.combine(
                day, time(self.start // 60, self.start % 60), tzinfo=self.zone
            )
            if opening > local:
                return opening
        raise ScheduleError("The schedule has no days.")  # validation prevents this

    def describe(self) -> str:
        return f"{_days_text(self.days)} {_hhmm(self.start)}–{_hhmm(self.end)} {self.timezone}"

    def as_document(self) -> dict[str, Any]:
        return {
            "days": [DAY_NAMES[d] for d in self.days],
            "start": _hhmm(self.start),
            "end": _hhmm(self.end),
            "timezone": self.timezone,
        }


@dataclass(frozen=True)
class Quota:
    limit: int
    per: str  # "minute", "hour" or "day"

    @property
    def seconds(self) -> int:
        return QUOTA_PERIODS[self.per]

    def describe(self) -> str:
        return (
            f"at most {self.limit} call{'s' if self.limit != 1 else ''} per {self.per} per worker"
        )

    def as_document(self) -> dict[str, Any]:
        return {"limit": self.limit, "per": self.per}


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _days_text(days: tuple[int, ...]) -> str:
    for name, names in DAY_SETS.items():
        if tuple(DAY_NAMES[d] for d in days) == names:
            return name
    return ", ".join(DAY_NAMES[d].capitalize() for d in days)


def _minutes(text: Any, *, allow_24: bool) -> int:
    if not isinstance(text, str) or len(text) != 5 or text[2] != ":":
        raise ScheduleError("Times look like 09:00 (24-hour clock).")
    hours, minutes = text[:2], text[3:]
    if not (hours.isdigit() and minutes.isdigit() and hours.isascii() and minutes.isascii()):
        raise ScheduleError("Times look like 09:00 (24-hour clock).")
    value = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or value > (1440 if allow_24 else 1439):
        raise ScheduleError(f"{text} is not a time of day.")
    return value


def schedule_from(raw: Mapping[str, Any]) -> Schedule:
    """A Schedule from its document, or ScheduleError saying what is wrong."""
    if not isinstance(raw, Mapping):
        raise ScheduleError("A schedule is an object with days, start, end and timezone.")
    unknown = sorted(set(raw) - {"days", "start", "end", "timezone"})
    if unknown:
        raise ScheduleError(f"Unknown schedule fields: {', '.join(map(str, unknown))}.")
    days_raw = raw.get("days", "daily")
    if isinstance(days_raw, str):
        if days_raw not in DAY_SETS:
            raise ScheduleError(
                "Days are 'weekdays', 'weekend', 'daily' or a list like [mon, tue]."
            )
        names: tuple[str, ...] = DAY_SETS[days_raw]
    elif isinstance(days_raw, list | tuple) and days_raw:
        names = tuple(str(d).lower()[:3] for d in days_raw)
        if any(n not in DAY_NAMES for n in names) or not all(isinstance(d, str) for d in days_raw):
            raise ScheduleError("Days are names like mon, tue, …, sun.")
    else:
        raise ScheduleError("Pick at least one day.")
    start = _minutes(raw.get("start"), allow_24=False)
    end = _minutes(raw.get("end"), allow_24=True)
    if start == end % 1440 and end != 1440:
        raise ScheduleError("The window is empty: start and end are the same time.")
    zone = raw.get("timezone")
    if not isinstance(zone, str) or not zone:
        raise ScheduleError("Name a time zone, e.g. Europe/Berlin or UTC.")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"Unknown time zone {zone[:60]!r}.") from None
    days = tuple(sorted({DAY_NAMES.index(n) for n in names}))
    return Schedule(days=days, start=start, end=end, timezone=zone)


def quota_from(raw: Mapping[str, Any]) -> Quota:
    if not isinstance(raw, Mapping):
        raise ScheduleError("A quota is an object with limit and per.")
    unknown = sorted(set(raw) - {"limit", "per"})
    if unknown:
        raise ScheduleError(f"Unknown quota fields: {', '.join(map(str, unknown))}.")
    limit, per = raw.get("limit"), raw.get("per")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_QUOTA:
        raise ScheduleError(f"A quota's limit is a whole number from 1 to {MAX_QUOTA}.")
    if per not in QUOTA_PERIODS:
        raise ScheduleError("A quota is per 'minute', 'hour' or 'day'.")
    return Quota(limit=limit, per=str(per))


def closed_reason(schedule: Schedule, at: datetime) -> str:
    """Why a call at `at` is outside the window, and when it reopens."""
    opening = schedule.next_open(at)
    wait = opening - at.astimezone(UTC)
    return (
        f"only {schedule.describe()}; it reopens at {opening:%a %Y-%m-%d %H:%M} "
        f"{opening.tzname()} (in {_duration(wait)})"
    )


def _duration(delta: timedelta) -> str:
    minutes = max(1, int(delta.total_seconds() + 59) // 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    parts = [f"{days} d"] if days else []
    if hours:
        parts.append(f"{hours} h")
    if mins and not days:
        parts.append(f"{mins} min")
    return " ".join(parts) or "1 min"
