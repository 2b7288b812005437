"""Clicks whose write batch commits late, with two PostgreSQL processes writing one
database: the fraud screening and the rollup pass clicks by RefID (time-ordered), so a
click committed after another process's later clicks were taken would be passed over for
good. A click is committed within the write timeout of its coming or not at all, and the
jobs wait that long (and a second) before passing a RefID. SQLite is written by one
process, in stamp order: it cannot commit a click after a later one."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from clickback.domain import fraud
from clickback.domain.reports import run_report
from clickback.domain.reportspec import build_spec
from clickback.domain.rollup import RollupJob
from clickback.domain.screener import Screener
from clickback.domain.tracker import open_tracker
from clickback.errors import UnavailableError
from clickback.storage.postgres import TIMED_OUT, PostgresStore
from tests.conftest import PG_URL
from tests.reports_world import build_world

BOT = "ExampleBot/1.0"
SLOW_TRIGGER = (
    "CREATE FUNCTION slow_click() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "IF NEW.sub1 LIKE 'slow%' THEN PERFORM pg_sleep({seconds}); END IF; RETURN NEW; END $$",
    "CREATE TRIGGER slow_click BEFORE INSERT ON clicks FOR EACH ROW EXECUTE FUNCTION slow_click()",
)


async def _stores(schema: str, write_timeout: float, slow: float) -> list[PostgresStore]:
    """Two stores on one database, as two processes (or nodes) have, the clicks table
    made to take `slow` seconds to write a click whose sub1 starts with `slow`."""
    stores = []
    for _ in range(2):
        store = PostgresStore(f"{PG_URL}?schema={schema}", write_timeout=write_timeout)
        await store.open()
        stores.append(store)
    await stores[0].migrate()
    for sql in SLOW_TRIGGER:
        await stores[0]._write(sql.format(seconds=slow))
    return stores


def _refid(location: str | None) -> str:
    assert location is not None
    return parse_qs(urlsplit(location).query)["refid"][0]


async def test_a_click_committed_after_another_process_s_later_one_is_screened_and_rolled_up(
    schema: str,
) -> None:
    """Process A's click takes 3 s to commit; process B's, 0.3 s younger, commits at
    once. Screening and rollup passes run all along, as a server's do: both clicks end
    flagged (a bot) and in the reports."""
    first, second = await _stores(schema, write_timeout=4.0, slow=3.0)
    try:
        world = await build_world(first, 11)
        code = world.links[0]["code"]
        a = await open_tracker(first, ("test-secret",))
        b = await open_tracker(second, ("test-secret",))
        screener = Screener(
            second,
            fraud.ClickScreen(lambda ua: ua == BOT, fraud.Networks(), fraud.Thresholds()),
            fraud.ConversionScreen(lambda ip: "", fraud.Thresholds()),
            b.catalog.delivery_state,
        )
        job = RollupJob(second, after_screening=True)  # settle: the store's
        slow = asyncio.ensure_future(a.click(code, "sub1=slow", "203.0.113.9", BOT, ""))
        await asyncio.sleep(0.3)
        fast = _refid(await b.click(code, "sub1=fast", "203.0.113.9", BOT, ""))
        until = time.monotonic() + 4.0 + 1.0 + 2.5  # the settle, and passes after it
        while time.monotonic() < until:
            await screener.run_once()
            await job.tick()
            await asyncio.sleep(0.2)
        late = _refid(await slow)
        flags = [(await second.get_row("clicks", r) or {}).get("flags") for r in (late, fast)]
        assert flags == ["bot", "bot"]
        spec = build_spec({}, time.time_ns() // 1000)
        report = await run_report(second, spec, "USD")
        assert report["totals"]["clicks"] == 2
    finally:
        for store in (first, second):
            await store.close()


async def test_a_click_that_would_commit_past_the_write_timeout_is_answered_503(
    schema: str,
) -> None:
    """A click queued behind a batch that took most of the write timeout gets what is
    left of it, counted from its coming: past it, its batch is given up (503) and its row
    is not stored, rather than committed later than the jobs wait for."""
    store, other = await _stores(schema, write_timeout=2.0, slow=1.5)
    try:
        world = await build_world(store, 12)
        code = world.links[0]["code"]
        tracker = await open_tracker(store, ("test-secret",))
        first = asyncio.ensure_future(tracker.click(code, "sub1=slow1", "203.0.113.9", BOT, ""))
        await asyncio.sleep(0.6)
        with pytest.raises(UnavailableError) as refused:
            await tracker.click(code, "sub1=slow2", "203.0.113.9", BOT, "")
        assert refused.value.message == TIMED_OUT
        _refid(await first)  # committed within its time
        await asyncio.sleep(2.0)  # the given-up batch's server process has ended it
        rows: Any = await other._fetch("SELECT sub1 FROM clicks ORDER BY sub1")
        assert [r["sub1"] for r in rows] == ["slow1"]
    finally:
        await store.close()
        await other.close()
