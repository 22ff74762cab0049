"""Cron schedules as OpenFaaS's cron-connector reads and runs them, and the local scheduler.

cron-connector 0.7.0 (types/scheduler.go) parses a function's `schedule` annotation with
robfig/cron v3.0.1's parser for Minute | Hour | Dom | Month | Dow | Descriptor, and `parse` here
accepts exactly that grammar (robfig/cron v3.0.1 parser.go, spec.go, constantdelay.go):

- five fields: minute 0-59, hour 0-23, day of month 1-31, month 1-12 or jan-dec, day of week 0-6
  or sun-sat (7 is refused); each a comma-separated list of `*` or `?`, `N`, `N-M`, with an
  optional `/step` (`N/step` means N to the maximum);
- when day of month and day of week are both restricted, either may match; when one is `*`, both
  must (spec.go dayMatches);
- descriptors `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`), `@hourly`
  and `@every <Go duration>` (at least 1 s, whole seconds);
- a `CRON_TZ=` or `TZ=` prefix names a zone. The connector's image is alpine with no tzdata and
  its code does not embed Go's (Dockerfile and imports at 0.7.0), so it runs schedules in UTC;
  here too, and a zone other than UTC is refused rather than honoured locally only.

When it runs them (robfig/cron v3.0.1 cron.go: run, startJob): at each due time every due entry
starts in its own goroutine, so a run still going when the next is due overlaps it; the next
time is computed from the time of waking, so runs missed while the connector was down (or asleep)
are not made up, and a late wake runs a missed entry once. `Scheduler` keeps those rules, with the
clock passed in so tests need not wait for the wall clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

MONTHS = {m: i for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1)}
DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
# (name, low, high, names) per field, in order (robfig spec.go bounds)
FIELDS = [
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day of month", 1, 31, None),
    ("month", 1, 12, MONTHS),
    ("day of week", 0, 6, DAYS),
]
DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
HORIZON_YEARS = 5  # robfig's Next gives up (zero time: never runs) after five years


class CronError(ValueError):
    """A schedule cron-connector would not run; the message says why."""


@dataclass(frozen=True)
class Spec:
    """A five-field schedule: the allowed values of each field, and whether day of month / day of
    week was given as `*` (their star bits decide how the two combine)."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool
    any_weekday: bool

    def _day_matches(self, t: datetime) -> bool:
        dom, dow = t.day in self.days, (t.weekday() + 1) % 7 in self.weekdays
        return (dom and dow) if (self.any_day or self.any_weekday) else (dom or dow)

    def next(self, after: datetime) -> datetime | None:
        """The first matching minute strictly after `after` (UTC), None if none in five years."""
        t = after.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = t.year + HORIZON_YEARS
        while t.year <= limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
            elif not self._day_matches(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
            elif t.minute not in self.minutes:
                t += timedelta(minutes=1)
            else:
                return t
        return None


@dataclass(frozen=True)
class Every:
    """`@every <duration>`: a fixed delay from each run (robfig constantdelay.go)."""

    seconds: int

    def next(self, after: datetime) -> datetime:
        return after.replace(microsecond=0) + timedelta(seconds=self.seconds)


def parse(spec: str) -> Spec | Every:
    """A `schedule` annotation -> its schedule, or CronError naming what is wrong."""
    if not spec:
        raise CronError("empty schedule")
    if spec.startswith(("TZ=", "CRON_TZ=")):
        zone, sep, rest = spec.partition("=")[2].partition(" ")
        if not sep:
            raise CronError("a TZ= prefix must be followed by a space and the schedule")
        if zone != "UTC":
            raise CronError(f"time zone {zone!r}: schedules run in UTC (cron-connector's image has no zone data)")
        spec = rest.strip()
    if spec.startswith("@"):
        if spec.startswith("@every "):
            return Every(max(1, int(go_duration(spec[len("@every ") :]))))
        if spec not in DESCRIPTORS:
            raise CronError(f"unknown descriptor {spec!r} (known: {', '.join(DESCRIPTORS)}, @every <duration>)")
        spec = DESCRIPTORS[spec]
    fields = spec.split()
    if len(fields) != 5:
        raise CronError(f"expected exactly 5 fields (minute hour day-of-month month day-of-week), found {len(fields)}")
    parsed = [_field(text, *bounds) for text, bounds in zip(fields, FIELDS)]
    (minutes, _), (hours, _), (days, any_day), (months, _), (weekdays, any_weekday) = parsed
    schedule = Spec(minutes, hours, days, months, weekdays, any_day, any_weekday)
    if schedule.next(datetime(2000, 1, 1, tzinfo=UTC)) is None:  # 2000-2005 holds every date
        raise CronError(f"{spec!r} matches no date (robfig/cron would never run it)")
    return schedule


_INT = re.compile(r"^\+?[0-9]+$")  # what Go's strconv.Atoi takes that is not negative


def _number(text: str, names: dict[str, int] | None, where: str) -> int:
    if names and text.lower() in names:
        return names[text.lower()]
    if not _INT.match(text):
        raise CronError(f"{where}: {text!r} is not a number" + (f" or one of {', '.join(names)}" if names else ""))
    return int(text)


def _field(text: str, where: str, low: int, high: int, names: dict[str, int] | None) -> tuple[frozenset[int], bool]:
    """One field -> (values, star): robfig parser.go getField/getRange, star bit included."""
    values: set[int] = set()
    star = False
    for expr in filter(None, text.split(",")):
        range_step = expr.split("/")
        if len(range_step) > 2:
            raise CronError(f"{where}: too many slashes in {expr!r}")
        bounds = range_step[0].split("-")
        if bounds[0] in ("*", "?"):
            start, end, is_star = low, high, True
        else:
            if len(bounds) > 2:
                raise CronError(f"{where}: too many hyphens in {expr!r}")
            start = _number(bounds[0], names, where)
            end = _number(bounds[1], names, where) if len(bounds) == 2 else start
            is_star = False
        step = 1
        if len(range_step) == 2:
            step = _number(range_step[1], None, where)
            if len(bounds) == 1:  # "N/step" is "N-max/step"
                end = high
        if start < low or end > high:
            raise CronError(f"{where}: {expr!r} is outside {low}-{high}")
        if start > end:
            raise CronError(f"{where}: {expr!r} starts after it ends")
        if step == 0:
            raise CronError(f"{where}: the step in {expr!r} must be positive")
        values.update(range(start, end + 1, step))
        star = star or (is_star and step == 1)
    if not values:
        raise CronError(f"{where}: {text!r} names no value")
    return frozenset(values), star


_DURATION_PART = re.compile(r"([0-9]*\.?[0-9]*)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration(text: str) -> float:
    """Seconds of a Go duration ("90s", "1h30m", "1.5h"), as time.ParseDuration reads it."""
    body = text[1:] if text[:1] in ("+", "-") else text
    if body == "0":
        return 0.0
    total, pos = 0.0, 0
    while pos < len(body) or not body:
        m = _DURATION_PART.match(body, pos)
        if not m or m.group(1) in ("", "."):
            raise CronError(f"@every: {text!r} is not a duration such as 30s, 5m or 1h30m")
        total += float(m.group(1)) * _UNIT_S[m.group(2)]
        pos = m.end()
    return -total if text.startswith("-") else total


@dataclass
class Entry:
    function: str
    spec: str
    schedule: Spec | Every
    next: datetime | None


@dataclass
class Scheduler:
    """The cron functions and when each runs next; `sync` adds and removes them as cron-connector's
    probe does (a function is identified by name and schedule: a new schedule replaces the entry)."""

    entries: dict[str, Entry] = field(default_factory=dict)

    def sync(self, wanted: dict[str, str], now: datetime) -> tuple[list[str], list[str]]:
        """Make the entries those of `wanted` (function -> schedule); (added, removed) names."""
        removed = [n for n, e in self.entries.items() if wanted.get(n) != e.spec]
        for name in removed:
            del self.entries[name]
        added = [n for n in wanted if n not in self.entries]
        for name in added:
            schedule = parse(wanted[name])
            self.entries[name] = Entry(name, wanted[name], schedule, schedule.next(now))
        return added, removed

    def due(self, now: datetime) -> list[Entry]:
        """The entries due at `now`, each moved to its next time after `now` (so a late wake runs
        each missed entry once, and nothing it slept through is made up)."""
        ready = [e for e in self.entries.values() if e.next is not None and e.next <= now]
        for e in ready:
            e.next = e.schedule.next(now)
        return ready

    def seconds_to_next(self, now: datetime) -> float | None:
        times = [e.next for e in self.entries.values() if e.next is not None]
        return max(0.0, (min(times) - now).total_seconds()) if times else None
