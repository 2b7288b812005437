"""Rollup levels: the same hourly sums kept at several groupings, so that a report reads
the smallest rollup that has every column it groups or filters by.

One rollup keyed by every dimension at once holds about one row per click when sub-IDs
and User-Agents vary (they do), which is no faster to read than the clicks. So each
click and conversion is added at every level below; a column a level leaves out is
stored blank (0 or ''). A report by offer and day reads level 0 (hours by links); one by
country level 1 (hours by countries); one by sub-ID and device the full level 7.

Sub-ID levels hold about a row per link, sub-ID values and hour, which is still many
(millions a month at 10 M clicks). So the links level and each sub-ID alone with the
links are also kept by UTC day (`DAILY`, tables `_d0`…`_d5`; `hour` holds the day's
first hour): a report on those columns reads them for the whole UTC days of its range,
and the hourly level for the hours at either end, as long as its time buckets are whole
UTC days (no time grouping, or days, weeks or months in a zone at UTC+0).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from operator import itemgetter
from typing import Any

ENTITIES = frozenset({"link_id", "offer_id", "affiliate_id", "advertiser_id"})
SUBS = frozenset({"sub1", "sub2", "sub3", "sub4", "sub5"})
COUNTRY = frozenset({"country"})
AGENT = frozenset({"device", "os", "browser"})

LEVELS: tuple[frozenset[str], ...] = (
    ENTITIES,
    COUNTRY,
    AGENT,
    COUNTRY | AGENT,
    ENTITIES | COUNTRY,
    ENTITIES | AGENT,
    ENTITIES | SUBS,
    ENTITIES | SUBS | COUNTRY | AGENT,
)
DAILY: dict[str, frozenset[str]] = {"d0": ENTITIES}
DAILY |= {f"d{i}": ENTITIES | {f"sub{i}"} for i in range(1, 6)}
ALWAYS = frozenset({"hour", "basis", "status", "flags"})  # kept at every level
BLANK_ID = frozenset(ENTITIES)


def level_for(columns: Iterable[str]) -> int:
    """The smallest level holding every one of these rollup columns."""
    needed = set(columns) - ALWAYS
    for number, kept in enumerate(LEVELS):
        if needed <= kept:
            return number
    raise ValueError(f"no rollup level has {sorted(needed)}")


def daily_level_for(columns: Iterable[str]) -> str | None:
    """The daily level holding every one of these rollup columns, if one does."""
    needed = set(columns) - ALWAYS
    return next((name for name, kept in DAILY.items() if needed <= kept), None)


def segments(
    columns: Iterable[str], start: int, end: int, utc_days: bool, now: int | None = None
) -> list[tuple[str, int, int]]:
    """Which tables (by suffix) a report reads for which UTC hours [start, end): the
    daily level for the whole UTC days inside, when there is one and the report's time
    buckets are whole UTC days; the smallest hourly level for the rest. A range that
    ends now (`end` is the hour after `now`, the hour now is in) reads today's daily row
    too: it holds nothing after now, since nothing happened yet. One that ends at the
    start of this hour does not: the daily row holds this hour's rows so far."""
    columns = list(columns)
    hourly = str(level_for(columns))
    daily = daily_level_for(columns) if utc_days else None
    first, last = -(-start // 24) * 24, end // 24 * 24
    if now is not None and end == now + 1:
        last = -(-end // 24) * 24
    if daily is None or first >= last:
        return [(hourly, start, end)]
    out = [(hourly, start, first)] if start < first else []
    out.append((daily, first, last))
    return out + ([(hourly, last, end)] if last < end else [])


Masks = tuple[tuple[Any, tuple[Any, ...]], ...]


def masks(fields: Sequence[str], daily: bool = False) -> Masks:
    """Per level (the hourly ones, or with `daily` the daily ones), for a key laid out as
    `fields`: the value each position takes, or None where the key's own value is kept."""
    out: list[tuple[Any, tuple[Any, ...]]] = []
    chosen: Iterable[tuple[Any, frozenset[str]]] = DAILY.items() if daily else enumerate(LEVELS)
    for number, kept in chosen:
        blanks = tuple(
            None if name in kept or name in ALWAYS else (0 if name in BLANK_ID else "")
            for name in fields
        )
        out.append((number, blanks))
    return tuple(out)


@functools.cache
def projector(
    level_masks: Masks,
) -> tuple[int, tuple[Any, ...], tuple[Callable[..., Any], ...]]:
    """`spread` made cheap (the rollup job spreads every new key, once per level): the
    length of a key, the constants the masks put in keys, and per level an itemgetter
    that picks the leveled key, level number first, from a key with those constants
    appended."""
    consts: dict[tuple[type, Any], int] = {}  # 0 and False, '' and 0 kept apart
    width = len(level_masks[0][1]) if level_masks else 0

    def at(value: Any) -> int:
        return width + consts.setdefault((type(value), value), len(consts))

    getters = tuple(
        itemgetter(at(number), *(i if b is None else at(b) for i, b in enumerate(blanks)))
        for number, blanks in level_masks
    )
    return width, tuple(value for _, value in consts), getters


def extended(
    key: tuple[Any, ...], level_masks: Masks
) -> tuple[tuple[Any, ...], tuple[Callable[..., Any], ...]]:
    """The key with the masks' constants appended, and the getters that pick each
    level's key from it; a key of the wrong length is refused, not misread."""
    width, consts, getters = projector(level_masks)
    if len(key) != width:
        raise ValueError(f"a key of {len(key)} values for masks of {width}")
    return key + consts, getters


def spread(key: tuple[Any, ...], level_masks: Masks) -> list[tuple[Any, ...]]:
    """The key at every level, the level number first."""
    full, getters = extended(key, level_masks)
    return [get(full) for get in getters]
