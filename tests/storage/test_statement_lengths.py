"""Statements written for a list's length (`IN (?, ?, …)`, a `VALUES` list) come in a few
lengths: both engines keep what they ran prepared, and with lists as long as they came a
rollup whose passes found a varying number of new clicks filled SQLite's statement
cache with one-off lookups (39 MB of SQLite's memory against 8 MB, measured with
`bench/rollup_memory.py`)."""

from __future__ import annotations

import _sqlite3
import ctypes
from pathlib import Path

from clickback.domain.ports import Store
from clickback.domain.rollup_delta import Delta, Fact, Mark
from clickback.storage.primitives import CHUNK, padded_chunks
from clickback.storage.sqlite import SqliteStore


def test_padded_chunks_come_in_few_lengths_and_keep_every_item_in_order() -> None:
    lengths: set[int] = set()
    for n in range(1, 2 * CHUNK + 40):
        items = list(range(n))
        chunks = padded_chunks(items)
        lengths.update(len(chunk) for chunk in chunks)
        # a chunk only repeats its own last item: nothing lost, added or moved
        assert [x for chunk in chunks for x in dict.fromkeys(chunk)] == items
    assert lengths == {1 << k for k in range(3, 11)}  # 8 … 1,024
    assert padded_chunks([]) == []


def _fact(conversion_id: int) -> Fact:
    subs_country_agent_flags = ("a", "", "", "", "", "US", "mobile", "iOS", "Safari", "")
    return Fact(
        conversion_id,
        "approved",
        1,
        500,
        50,
        400_000,
        400_001,
        1,
        *subs_country_agent_flags,
        1,
        1,
        1,
    )


async def test_lookups_by_padded_lists_find_each_row_once(store: Store) -> None:
    n = CHUNK + 9  # two chunks, the second padded from 9 ids to 16
    facts = {i: _fact(i) for i in range(1, n + 1)}
    mark = await store.rollup_claim("me", 1, 10**9)
    assert mark is not None
    assert await store.rollup_apply("me", mark, Mark("R", 0, 0), Delta(facts=facts))
    found = await store.rollup_facts([*facts, n + 1, n + 2])  # two that are not stored
    assert sorted(int(r["conversion_id"]) for r in found) == list(facts)
    stored = {(20_000, 1, v) for v in range(0, n, 2)}
    assert await store.rollup_apply("me", Mark("R", 0, 0), Mark("S", 0, 0), Delta(visitors=stored))
    asked = [(20_000, 1, v) for v in range(n)]
    assert await store.rollup_known_visitors(asked) == stored


def _sqlite_memory_used() -> int:
    """SQLite's own count of the bytes it holds, in this process (the library the
    `sqlite3` module runs on)."""
    lib = ctypes.CDLL(_sqlite3.__file__)
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    return int(lib.sqlite3_memory_used())


async def test_sqlite_holds_few_lookups_prepared_whatever_their_lengths(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "clickback.db"))
    await store.migrate()
    try:
        await store.rollup_known_visitors([(20_000, 1, 0)])  # the schema read
        before = _sqlite_memory_used()
        for n in range(1, 301):
            await store.rollup_known_visitors([(20_000, 1, v) for v in range(n)])
        grown = _sqlite_memory_used() - before
        # padded: nine lengths (8 … 512 keys), about 0.5 MB prepared in all; with every
        # length its own statement, sqlite3's cache keeps the last 128 (about 13 MB)
        assert grown < 3_000_000, f"SQLite holds {grown:,} bytes more"
    finally:
        await store.close()
