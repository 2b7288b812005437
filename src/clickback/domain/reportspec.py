"""What a report asks for, read from loosely typed parameters (API query, CLI options):
groups, filters, a time range in a timezone, and which time conversions count at.

Rollups are kept in hourly buckets in UTC. A local hour, day, week or month is a run
of whole UTC hours in every timezone whose offset is a whole number of hours, so those
reports are exact, across DST changes too. In a zone with a half- or quarter-hour
offset (Asia/Kolkata, Australia/Adelaide, Asia/Kathmandu) each UTC hour is counted in
the local hour, day, week or month in which it starts, and `from`/`to` are rounded up
to a whole UTC hour (so a local day is the hours that start in it; a range within one
hour is given that hour): boundaries there are up to 45 minutes off, and the report
says so. Elsewhere a time off the hour widens the range to the whole hours around it
(`from` back to its hour, `to` on to the end of its own), so that the report covers what
was asked, and the report says so too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from clickback.domain.enrich import DEVICES
from clickback.domain.fraud import REPORTED
from clickback.domain.levels import segments
from clickback.domain.money import countries
from clickback.domain.timefmt import EPOCH, from_datetime, iso, restore_plus
from clickback.errors import InputError

HOUR_US = 3_600_000_000
TIME_DIMS = ("hour", "day", "week", "month")
ENTITY_DIMS = {
    "advertiser": "advertiser_id",
    "offer": "offer_id",
    "affiliate": "affiliate_id",
    "link": "link_id",
}
TEXT_DIMS = ("sub1", "sub2", "sub3", "sub4", "sub5", "country", "device", "os", "browser")
# fraud flags: grouped by, the combination a row carries ('' for none); as a filter, rows
# carrying any of the flags named, `none` (no flag) or `any` (at least one)
FLAG_DIM = {"flag": "flags"}
FLAG_VALUES = frozenset({*REPORTED, "none", "any"})
DIMENSIONS = {**ENTITY_DIMS, **{d: d for d in TEXT_DIMS}, **FLAG_DIM}  # name -> rollup column
BASES = ("conversion", "click")
DEFAULT_DAYS = 7
MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1000
MAX_HOURS = 24 * 366 * 5


@dataclass(frozen=True, slots=True)
class TimePlan:
    """How UTC hours map to local buckets: for `day`/`week`, the hour offset in force from
    each listed hour on; for `month`, the first hour of each local month after the first."""

    kind: str  # hour | day | week | month
    tz: str
    offsets: tuple[tuple[int, int], ...] = ()  # (from hour, whole-hour offset), ascending
    month_starts: tuple[int, ...] = ()
    first_month: tuple[int, int] = (1970, 1)

    def bucket(self, hour: int) -> int:
        """The bucket of a UTC hour, as the storage computes it in SQL."""
        if self.kind == "hour":
            return hour
        if self.kind == "month":
            return sum(1 for start in self.month_starts if hour >= start)
        offset = [o for h, o in self.offsets if h <= hour][-1] if self.offsets else 0
        day = (hour + offset) // 24
        return day if self.kind == "day" else (day + 3) // 7

    @property
    def whole_utc_days(self) -> bool:
        """Whether every UTC day lies in one bucket (so daily rollups can be read)."""
        if self.kind == "month":
            return all(start % 24 == 0 for start in self.month_starts)
        return self.kind != "hour" and all(offset == 0 for _, offset in self.offsets)

    def buckets(self, start: int, end: int) -> list[int]:
        """Every bucket of the hours [start, end), in order (a chart's x axis)."""
        return list(dict.fromkeys(self.bucket(h) for h in range(start, end)))

    def label(self, bucket: int) -> str:
        """The local name of a bucket value as the storage computed it."""
        if self.kind == "hour":
            local = (EPOCH + timedelta(hours=bucket)).astimezone(ZoneInfo(self.tz))
            return local.isoformat(timespec="minutes")
        if self.kind == "day":
            return (date(1970, 1, 1) + timedelta(days=bucket)).isoformat()
        if self.kind == "week":  # ISO weeks: the Monday they start on
            return (date(1970, 1, 1) + timedelta(days=bucket * 7 - 3)).isoformat()
        year, month = self.first_month
        month += bucket - 1
        return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


@dataclass(frozen=True, slots=True)
class ReportSpec:
    group_by: tuple[str, ...]
    time: TimePlan | None
    filters: dict[str, tuple[int | str, ...]]  # rollup column -> allowed values
    start_hour: int  # UTC hours since the epoch, inclusive
    end_hour: int  # exclusive
    tz: str
    by: str
    sort: str | None = None
    limit: int = DEFAULT_LIMIT
    notes: tuple[str, ...] = field(default_factory=tuple)
    now_hour: int | None = None  # the UTC hour the report was asked in

    @property
    def segments(self) -> list[tuple[str, int, int]]:
        """The rollup tables (by suffix) to read, each for its UTC hours."""
        utc_days = self.time is None or self.time.whole_utc_days
        needed = [*self.columns, *self.filters]
        return segments(needed, self.start_hour, self.end_hour, utc_days, self.now_hour)

    @property
    def columns(self) -> list[str]:
        """The rollup columns grouped by, besides time."""
        return [DIMENSIONS[g] for g in self.group_by if g in DIMENSIONS]


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones()) | {"UTC"}


def zone(name: str) -> ZoneInfo:
    try:
        if name not in _zones():
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InputError(
            f"`tz` must be an IANA timezone such as Europe/Berlin, not {name!r}",
            code="invalid_timezone",
            field="tz",
        ) from None


def parse_moment(text: str, tz: ZoneInfo, field: str, *, end: bool = False) -> int:
    """A date (local midnight; as `to`, the end of that day) or a time (naive: local)
    as microseconds since the epoch. A date is any ISO 8601 date form (`2026-03-28`,
    `20260328`, `2026-W13-6`): read as a time, `to=20260328` left out the day it names."""
    try:
        day = _iso_date(text)
        if day is not None:
            if end:
                day += timedelta(days=1)
            return from_datetime(datetime(day.year, day.month, day.day, tzinfo=tz))
        # `+01:00` sent unencoded in a query string arrives as ` 01:00`
        dt = datetime.fromisoformat(restore_plus(text).replace("Z", "+00:00"))
        return from_datetime(dt if dt.tzinfo else dt.replace(tzinfo=tz))
    except (ValueError, OverflowError):
        raise InputError(
            f"`{field}` must be an ISO 8601 date or time", code="invalid_time", field=field
        ) from None


def _iso_date(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def ceil_hour(us: int) -> int:
    return -(-us // HOUR_US)


def offsets(tz: ZoneInfo, start: int, end: int) -> tuple[tuple[int, int], ...]:
    """Whole-hour offsets (floored) in force over UTC hours [start, end): a day at a time,
    refined to the hour where the offset changes."""

    def off(hour: int) -> int:
        delta = (EPOCH + timedelta(hours=hour)).astimezone(tz).utcoffset()
        assert delta is not None
        return int(delta.total_seconds() // 3600)

    current = off(start)
    out = [(start, current)]
    h = start
    while h < end - 1:
        nxt = min(h + 24, end - 1)
        if off(nxt) == current:
            h = nxt
            continue
        lo, hi = h, nxt  # off(lo) is current, off(hi) is not: find the first changed hour
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if off(mid) == current else (lo, mid)
        current = off(hi)
        out.append((hi, current))
        h = hi
    return tuple(out)


def month_plan(tz: ZoneInfo, start: int, end: int) -> tuple[tuple[int, int], tuple[int, ...]]:
    first = (EPOCH + timedelta(hours=start)).astimezone(tz)
    year, month = first.year, first.month
    starts: list[int] = []
    while True:
        month += 1
        if month == 13:
            year, month = year + 1, 1
        boundary = ceil_hour(from_datetime(datetime(year, month, 1, tzinfo=tz)))
        if boundary >= end:
            return (first.year, first.month), tuple(starts)
        starts.append(boundary)


def time_plan(kind: str, tz: ZoneInfo, start: int, end: int) -> TimePlan:
    name = str(tz.key)
    if kind in ("day", "week"):
        return TimePlan(kind, name, offsets=offsets(tz, start, end))
    if kind == "month":
        first, starts = month_plan(tz, start, end)
        return TimePlan(kind, name, month_starts=starts, first_month=first)
    return TimePlan(kind, name)


def whole_hour_zone(tz: ZoneInfo, start: int, end: int) -> bool:
    probe = [start, end - 1] + [h for h, _ in offsets(tz, start, end)]
    for hour in probe:
        delta = (EPOCH + timedelta(hours=hour)).astimezone(tz).utcoffset()
        if delta is not None and delta.total_seconds() % 3600:
            return False
    return True


def split(values: Iterable[str]) -> list[str]:
    return [v.strip() for raw in values for v in raw.split(",") if v.strip()]


def _closed_values(name: str, values: list[str]) -> tuple[str, ...]:
    """A text filter's values; those of `country` and `device`, which take a closed set
    of values, are checked, so that a typo is refused rather than matching nothing.
    Countries are ISO 3166-1 alpha-2 codes in any case, stored in capitals; an empty
    value (`country=`) is the rows without one."""
    if name == "country":
        values = [v.upper() for v in values]
        wrong = [v for v in values if v and v not in countries()]
        if wrong:
            raise InputError(
                f"`country` takes two-letter ISO 3166-1 codes such as US or DE (empty for "
                f"clicks whose country is unknown), not {', '.join(wrong)}",
                code="invalid_filter",
                field=name,
            )
    elif name == "device":
        wrong = [v for v in values if v and v not in DEVICES]
        if wrong:
            raise InputError(
                f"`device` takes {', '.join(DEVICES)} (empty for conversions without a "
                f"click), not {', '.join(wrong)}",
                code="invalid_filter",
                field=name,
            )
    return tuple(values)


def build_spec(
    params: dict[str, list[str]], now_us: int, metrics: Iterable[str] = ()
) -> ReportSpec:
    """A ReportSpec from parameters by name (each may repeat); every problem is a 400."""
    known = {"group_by", "from", "to", "tz", "by", "sort", "limit", *DIMENSIONS}
    for name in params:
        if name not in known:
            raise InputError(
                f"unknown parameter `{name}`; reports take: {', '.join(sorted(known))}",
                code="unknown_filter",
                field=name,
            )

    def one(name: str, default: str) -> str:
        values = params.get(name) or [default]
        if len(values) > 1:
            raise InputError(f"`{name}` may be given once", code="invalid_report", field=name)
        return values[0]

    tz = zone(one("tz", "UTC") or "UTC")
    group_by = tuple(split(params.get("group_by", ["day"])))
    for g in group_by:
        if g not in DIMENSIONS and g not in TIME_DIMS:
            raise InputError(
                f"cannot group by `{g}`; use: {', '.join([*TIME_DIMS, *DIMENSIONS])}",
                code="invalid_group_by",
                field="group_by",
            )
    times = [g for g in group_by if g in TIME_DIMS]
    if len(times) > 1 or len(set(group_by)) != len(group_by):
        raise InputError(
            "group by at most one of hour, day, week, month, each dimension once",
            code="invalid_group_by",
            field="group_by",
        )
    end_us = parse_moment(one("to", ""), tz, "to", end=True) if params.get("to") else now_us
    start_us = parse_moment(one("from", ""), tz, "from") if params.get("from") else None
    end = ceil_hour(end_us)
    # rollups are hourly: the range is widened to the whole hours around what was asked
    start = end - DEFAULT_DAYS * 24 if start_us is None else start_us // HOUR_US
    whole = 0 <= start < end and whole_hour_zone(tz, start, end)
    if start_us is not None and not whole and ceil_hour(start_us) < end:
        start = ceil_hour(start_us)  # the hours that start in the range (module docstring)
    if (
        (start_us is not None and start_us >= end_us)
        or not 0 <= start < end
        or (end - start > MAX_HOURS)
    ):
        raise InputError(
            "`from` must be before `to`, after 1970 and at most 5 years apart",
            code="invalid_range",
            field="from",
        )
    by = one("by", "conversion")
    if by not in BASES:
        raise InputError("`by` is conversion or click", code="invalid_report", field="by")
    filters: dict[str, tuple[int | str, ...]] = {}
    for name, column in DIMENSIONS.items():
        given = params.get(name, [])
        values = split(given)
        if any(not split([raw]) for raw in given):
            # given empty (`sub1=`): the rows whose value is blank, not every row
            if name in ENTITY_DIMS:
                raise InputError(
                    f"`{name}` takes ids, not an empty value", code="invalid_filter", field=name
                )
            values.append("none" if name in FLAG_DIM else "")
        if not values:
            continue
        if name in ENTITY_DIMS:
            if not all(v.isascii() and v.isdigit() and len(v) < 19 for v in values):
                raise InputError(f"`{name}` takes ids", code="invalid_filter", field=name)
            filters[column] = tuple(int(v) for v in values)
        elif name in FLAG_DIM and not set(values) <= FLAG_VALUES:
            raise InputError(
                f"`flag` takes {', '.join(sorted(FLAG_VALUES))}", code="invalid_filter", field=name
            )
        else:
            filters[column] = _closed_values(name, values)
    sort = one("sort", "") or None
    if sort is not None and sort.lstrip("-") not in {*metrics, *group_by}:
        raise InputError(
            "`sort` names a metric or a grouped dimension", code="invalid_sort", field="sort"
        )
    limit_text = one("limit", str(DEFAULT_LIMIT))
    # the length first: int() refuses (ValueError) a text of more than 4300 digits
    digits = limit_text.isascii() and limit_text.isdigit() and len(limit_text) <= 5
    if not digits or not 1 <= int(limit_text) <= MAX_LIMIT:
        raise InputError(f"`limit` must be 1 to {MAX_LIMIT}", code="invalid_limit", field="limit")
    notes: tuple[str, ...] = ()
    if not whole:
        notes = (
            f"{tz.key} is not a whole number of hours from UTC: each hour is counted in the "
            "local period it starts in, and from/to are rounded up to whole UTC hours (a "
            "range within one hour: that hour)",
        )
    else:
        moved = []
        if start_us is not None and start_us % HOUR_US:
            moved.append(f"`from` back to {iso(start * HOUR_US)}")
        if params.get("to") and end_us % HOUR_US:
            moved.append(f"`to` on to {iso(end * HOUR_US)}")
        if moved:
            notes = (
                "reports add up whole hours: the range asked was widened to cover it, "
                + " and ".join(moved),
            )
    return ReportSpec(
        group_by=group_by,
        time=time_plan(times[0], tz, start, end) if times else None,
        filters=filters,
        start_hour=start,
        end_hour=end,
        tz=str(tz.key),
        by=by,
        sort=sort,
        limit=int(limit_text),
        notes=notes,
        now_hour=now_us // HOUR_US,
    )
