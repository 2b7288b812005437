"""Rollup levels: the same hourly sums kept at several groupings, so that a report reads
the smallest rollup that has every column it groups or filters by.

One rollup keyed by every dimension at once holds about one row per click when sub-IDs
and User-Agents vary (they do), which is no faster to read than the clicks. So each
click and conversion is added at every level below; a column a level leaves out is
stored blank (0 or ''). A report by offer and day reads level 0 (hours by links); one by
country level 1 (hours by countries); one by sub-ID and device the full level 7.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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
ALWAYS = frozenset({"hour", "basis", "status", "flags"})  # kept at every level
BLANK_ID = frozenset(ENTITIES)


def level_for(columns: Iterable[str]) -> int:
    """The smallest level holding every one of these rollup columns."""
    needed = set(columns) - ALWAYS
    for number, kept in enumerate(LEVELS):
        if needed <= kept:
            return number
    raise ValueError(f"no rollup level has {sorted(needed)}")


def masks(fields: Sequence[str]) -> list[tuple[int, tuple[Any, ...]]]:
    """Per level, for a key laid out as `fields`: the value each position takes, or None
    where the key's own value is kept."""
    out = []
    for number, kept in enumerate(LEVELS):
        blanks = tuple(
            None if name in kept or name in ALWAYS else (0 if name in BLANK_ID else "")
            for name in fields
        )
        out.append((number, blanks))
    return out


def spread(
    key: tuple[Any, ...], level_masks: list[tuple[int, tuple[Any, ...]]]
) -> list[tuple[Any, ...]]:
    """The key at every level, the level number first."""
    return [
        (number, *(v if b is None else b for v, b in zip(key, blanks, strict=True)))
        for number, blanks in level_masks
    ]
