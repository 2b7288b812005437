"""Both engines spread a rollup's keys over the levels in SQL (`storage.reports.spread_sql`
on SQLite, `pg_spread_sql` on PostgreSQL): what they leave in every level table equals
the rows the domain spreads in Python (`Delta.click_rows` / `conversion_rows`), also
when a second apply takes back part of the first (status changes) and keys meet at
coarser levels."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import pytest

from clickback.domain.levels import DAILY, LEVELS
from clickback.domain.ports import Store
from clickback.domain.rollup_delta import (
    CLICK_FIELDS,
    CONVERSION_FIELDS,
    CONVERSION_SUMS,
    Delta,
    Mark,
)
from clickback.storage.reports import CLICK_SUMS
from clickback.storage.sqlite import SqliteStore

Sums = dict[tuple[Any, ...], list[int]]


def click_key(rng: random.Random) -> tuple[Any, ...]:
    link = rng.choice([1, 2])
    return (
        rng.choice([480_000, 480_001, 480_030]),  # hours, two of them on one UTC day
        link,
        *(rng.choice(["", "a", "b"]) for _ in range(5)),
        rng.choice(["", "DE", "US"]),
        rng.choice(["desktop", "mobile"]),
        rng.choice(["iOS", "Windows"]),
        "Safari",
        rng.choice(["", "bot"]),
        10 + link,
        20 + link,
        30,
    )


def conversion_key(rng: random.Random, click: tuple[Any, ...]) -> tuple[Any, ...]:
    return (rng.choice(["conversion", "click"]), *click[:12], rng.choice(["pending", "approved"]),
            *click[12:])  # fmt: skip


def random_deltas(seed: int) -> tuple[Delta, Delta]:
    rng = random.Random(seed)
    first, second = Delta(), Delta()
    for _ in range(60):
        key = click_key(rng)
        first.clicks.setdefault(key, [0, 0, 0])[0] += 1
        first.clicks[key][1] += rng.randint(0, 1)
        conv = conversion_key(rng, click_key(rng))
        sums = first.conversions.setdefault(conv, [0] * len(CONVERSION_SUMS))
        for i in range(len(sums)):
            sums[i] += rng.randint(1, 900)
    for key, sums in list(first.conversions.items())[:25]:  # status changes: some taken back
        second.conversions[key] = [-v for v in sums]
        moved = (*key[:13], "approved" if key[13] == "pending" else "pending", *key[14:])
        second.conversions[moved] = list(sums)
    for _ in range(20):
        second.clicks[click_key(rng)] = [1, 1, 0]
    # made and taken back within one batch: its sums cancel out, it leaves no row
    second.conversions[(*conversion_key(rng, click_key(rng))[:-3], 7, 8, 9)] = [0] * 7
    return first, second


def python_rows(deltas: tuple[Delta, ...], kind: str) -> dict[str, Sums]:
    """What applying the Python-spread rows one delta after another leaves, per table."""
    tables: dict[str, Sums] = defaultdict(dict)
    for delta in deltas:
        rows = delta.click_rows() if kind == "clicks" else delta.conversion_rows()
        for level, *rest in rows:
            n = len(CLICK_SUMS) if kind == "clicks" else len(CONVERSION_SUMS)
            key, sums = tuple(rest[:-n]), rest[-n:]
            total = tables[str(level)].setdefault(key, [0] * n)
            for i, v in enumerate(sums):
                total[i] += v
    return tables


async def stored_rows(store: Store, kind: str) -> dict[str, Sums]:
    fields = CLICK_FIELDS if kind == "clicks" else CONVERSION_FIELDS
    sums = CLICK_SUMS if kind == "clicks" else CONVERSION_SUMS
    out: dict[str, Sums] = {}
    for level in [*map(str, range(len(LEVELS))), *DAILY]:
        rows = await store._fetch(
            f"SELECT {', '.join((*fields, *sums))} FROM report_{kind}_{level}"
        )
        if rows:
            out[level] = {tuple(r[f] for f in fields): [r[s] for s in sums] for r in rows}
    return out


async def check_spreading(store: Store, seed: int) -> None:
    deltas = random_deltas(seed)
    mark = await store.rollup_claim("me", 1, 10**9)
    assert mark is not None
    for i, delta in enumerate(deltas):
        new = Mark(f"R{i}", i + 1, 0)
        assert await store.rollup_apply("me", mark, new, delta)
        mark = new
    for kind in ("clicks", "conversions"):
        assert await stored_rows(store, kind) == python_rows(deltas, kind), kind


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_the_levels_spread_in_sql_equal_those_spread_in_python(
    store: Store, seed: int
) -> None:
    await check_spreading(store, seed)  # SQLite (a file) and PostgreSQL


async def test_the_levels_spread_in_sql_in_memory() -> None:
    store = SqliteStore(":memory:")  # the staging tables on the one connection
    await store.migrate()
    try:
        await check_spreading(store, 4)
    finally:
        await store.close()
