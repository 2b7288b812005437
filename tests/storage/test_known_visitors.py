"""The rollup's unique-visitor lookup: which of a pass's (day, link, visitor) keys were
seen before, by the primary key, on both engines."""

from __future__ import annotations

import sqlite3

import orjson
import pytest

from clickback.domain.ports import Store
from clickback.domain.rollup_delta import Delta, Mark
from clickback.storage.postgres import PostgresStore
from clickback.storage.reports import PG_KNOWN_VISITORS, known_visitors_sql
from clickback.storage.schema import MIGRATIONS, statements
from clickback.storage.sqlite import with_functions


async def test_known_visitors_are_exactly_the_stored_keys(store: Store) -> None:
    stored = {(d, link, v) for d in (20_000, 20_001) for link in (1, 2) for v in range(0, 60, 3)}
    stored.add((20_000, 2**40, 2**62 + 5))  # visitors are 62-bit hashes, links BIGINT
    mark = await store.rollup_claim("me", 1, 10**9)
    assert mark is not None
    assert await store.rollup_apply("me", mark, Mark("R", 0, 0), Delta(visitors=stored))
    # the same visitor numbers on another day or link are other keys
    asked = [
        (d, link, v) for d in (20_000, 20_001, 20_002) for link in (1, 2, 3) for v in range(60)
    ]
    asked += [(20_000, 2**40, 2**62 + 1), (20_000, 2**40, 2**62 + 5)]
    assert await store.rollup_known_visitors(asked) == stored
    assert await store.rollup_known_visitors([]) == set()


def test_the_lookup_searches_the_primary_key_on_sqlite() -> None:
    conn = with_functions(sqlite3.connect(":memory:"))
    for version, _title, _sql in MIGRATIONS:
        for statement in statements("sqlite", version):
            conn.execute(statement)
    plan = conn.execute(
        f"EXPLAIN QUERY PLAN {known_visitors_sql(3)}", [20_000, 1, 5] * 3
    ).fetchall()
    details = [row[-1] for row in plan]
    assert any(d.startswith("SEARCH v USING PRIMARY KEY") for d in details), details
    assert not any("SCAN report_visitors" in d or d == "SCAN v" for d in details), details


async def test_the_lookup_searches_the_primary_key_on_postgresql(store: Store) -> None:
    """PostgreSQL gets every key in one parameter (`pg_rows`), so it cannot count them
    when it plans: with a day of visitors stored the lookup must still go by the key."""
    if not isinstance(store, PostgresStore):
        pytest.skip("PostgreSQL's plan")
    many = {(20_000, 1, v) for v in range(50_000)}
    mark = await store.rollup_claim("me", 1, 10**9)
    assert mark is not None
    assert await store.rollup_apply("me", mark, Mark("R", 0, 0), Delta(visitors=many))
    assert store.pool is not None
    async with store.pool.acquire() as conn:
        await conn.execute(store._sql("ANALYZE report_visitors"))
        keys = orjson.dumps([[20_000, 1, v] for v in range(0, 3_000, 3)]).decode()
        plan = "\n".join(
            r[0] for r in await conn.fetch(store._sql(f"EXPLAIN {PG_KNOWN_VISITORS}"), keys)
        )
    assert "Seq Scan on report_visitors" not in plan, plan
    assert "report_visitors_pkey" in plan, plan
