"""The fraud screening's counts over their windows (clicks from an IP on a link within a
minute, conversions from the clicks of an IP within a day) across a restart of the
screening and its passing from one process to another, on both engines: the flags are
those of one screening that ran throughout."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from clickback.domain import fraud
from clickback.domain.ports import Store
from clickback.domain.screener import Screener
from tests.conftest import PG_URL
from tests.reports_world import World, build_world

S = 1_000_000  # µs
HOUR, DAY = 3600 * S, 86_400 * S
LIMITS = fraud.Thresholds(min_seconds=0, flood_clicks=3, ip_conversions=2)
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
P, Q = "198.51.100.7", "198.51.100.8"  # the flooding address, and another

# clicks (ip, seconds after the start) and conversions (name, its click, when): three parts,
# screened one after the other
PARTS = [
    ([(P, 0), (P, 10), (P, 20), (Q, 0), (Q, 1), (Q, 2)], [("c1", 0, HOUR), ("c2", 1, 2 * HOUR)]),
    ([(P, 30), (P, 40)], [("c3", 2, 3 * HOUR)]),
    (
        [(P, 50), (P, 60), (P, 70), (Q, 75), (Q, 76)],
        [("c4", 6, DAY + HOUR + HOUR // 2), ("c5", 7, DAY + 3 * HOUR + HOUR // 2)],
    ),
]
# one screening throughout: more than 3 clicks from P within a minute from its fourth on
# (at 60 s the click at 0 is exactly a minute old, still in); Q's are never more than 3.
# More than 2 conversions from P's clicks within a day: c3 (c1, c2, c3) and c4 (c2, c3,
# c4; c1 left at 1:30), not c5 (c4, c5; c2 and c3 left at 3:30). c4's and c5's clicks
# are flood clicks: their conversions carry the flag.
CLICK_FLAGS = [""] * 3 + [""] * 3 + ["click_flood"] * 2 + ["click_flood"] * 3 + [""] * 2
CONVERSION_FLAGS = {
    "c1": "",
    "c2": "",
    "c3": "ip_conversions",
    "c4": "click_flood,ip_conversions",
    "c5": "click_flood",
}


def screener(world: World, lease_seconds: float) -> Screener:
    return Screener(
        world.store,
        fraud.ClickScreen(lambda ua: False, fraud.Networks(), LIMITS),
        fraud.ConversionScreen(lambda ip: "", LIMITS),
        world.tracker.catalog.delivery_state,
        lease_seconds=lease_seconds,
    )


@pytest.mark.parametrize("handover", ["none", "restart", "there_and_back"])
async def test_the_screening_flags_as_one_that_ran_throughout_after_it_changed_hands(
    store: Store, handover: str
) -> None:
    """`restart`: a new screening (a restarted server, or another node) takes the job
    after the second part; `there_and_back`: another takes it for the second part, and
    the first, its lease lapsed meanwhile, takes it back for the third."""
    world = await build_world(store, 5)
    code = world.links[0]["code"]
    start = time.time_ns() // 1000 - 3 * DAY  # all long settled
    lease = 10.0 if handover == "none" else 0.2  # a handover waits for the lease to lapse
    first = screener(world, lease)
    second = first if handover == "none" else screener(world, lease)
    screeners = {"none": [first] * 3, "restart": [first, second, second]}.get(
        handover, [first, second, first]
    )
    refids: list[str] = []
    conversions: dict[str, int] = {}
    for (clicks, converts), job in zip(PARTS, screeners, strict=True):
        for ip, at in clicks:
            world.clock.now = start + at * S
            location = await world.tracker.click(code, "", ip, UA, "")
            assert location is not None
            refids.append(parse_qs(urlsplit(location).query)["refid"][0])
        for name, of, at in converts:
            world.clock.now = start + at
            params = {"refid": refids[of], "orderamount": "10", "ordernumber": name}
            answer = await world.tracker.postback("GET", "127.0.0.1", params)
            conversions[name] = answer.body["conversion_id"]
        deadline = time.monotonic() + 5
        while await job.catch_up() == (0, 0):  # another's lease is running out
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        if handover != "none":
            await asyncio.sleep(lease + 0.1)  # the one that screened stops, its lease lapses
    got_clicks = [(await store.get_row("clicks", r) or {}).get("flags") for r in refids]
    assert got_clicks == CLICK_FLAGS
    got = {
        n: (await store.get_row("conversions", i) or {}).get("flags")
        for n, i in conversions.items()
    }
    assert got == CONVERSION_FLAGS


async def _click(world: World, ip: str, at: int) -> str:
    world.clock.now = at
    location = await world.tracker.click(world.links[0]["code"], "", ip, UA, "")
    assert location is not None
    return parse_qs(urlsplit(location).query)["refid"][0]


async def _convert(world: World, refid: str, order: str, at: int, geo: str = "") -> int:
    world.clock.now = at
    params = {"refid": refid, "orderamount": "10", "ordernumber": order}
    if geo:
        params["geo"] = geo
    answer = await world.tracker.postback("GET", "127.0.0.1", params)
    return int(answer.body["conversion_id"])


async def _flags(store: Store, table: str, keys: list[Any]) -> list[Any]:
    return [(await store.get_row(table, k) or {}).get("flags") for k in keys]


async def _refuse(store: Store, table: str, column: str) -> None:
    """A trigger that fails every update of `column` on `table`: the store refuses the
    screening's write (as a full disk or a dropped connection would)."""
    if store.engine == "sqlite":
        await store._write(  # type: ignore[attr-defined]
            f"CREATE TRIGGER refuse BEFORE UPDATE OF {column} ON {table} "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
        return
    await store._write(  # type: ignore[attr-defined]
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'refused'; END $$"
    )
    await store._write(  # type: ignore[attr-defined]
        f"CREATE TRIGGER refuse BEFORE UPDATE OF {column} ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION refuse()"
    )


async def _allow(store: Store, table: str) -> None:
    on = "" if store.engine == "sqlite" else f" ON {table}"
    await store._write(f"DROP TRIGGER refuse{on}")  # type: ignore[attr-defined]


async def test_clicks_whose_flags_failed_to_store_are_counted_once(store: Store) -> None:
    """Three clicks from one address (the limit), screened by a pass whose write fails:
    the next pass screens them again, and none is a flood."""
    world = await build_world(store, 5)
    job = screener(world, 10.0)
    start = time.time_ns() // 1000 - DAY
    refids = [await _click(world, P, start + i * S) for i in range(3)]
    await _refuse(store, "jobs", "watermark")
    with pytest.raises(Exception, match="refused"):
        await job.run_once()
    await _allow(store, "jobs")
    assert await job.run_once() == (3, 0)
    assert await _flags(store, "clicks", refids) == ["", "", ""]
    # the counts go on from the three: a fourth within the minute is one too many
    refids.append(await _click(world, P, start + 3 * S))
    assert await job.run_once() == (1, 0)
    assert await _flags(store, "clicks", refids) == ["", "", "", "click_flood"]


async def test_a_conversion_whose_screening_failed_to_store_is_counted_once(
    store: Store,
) -> None:
    """Two conversions from one address's clicks are the limit within a day: the second,
    screened by a pass whose write fails and then again, is not one too many."""
    world = await build_world(store, 5)
    job = screener(world, 10.0)
    start = time.time_ns() // 1000 - DAY
    clicks = [await _click(world, P, start + i * S) for i in range(3)]
    first = await _convert(world, clicks[0], "c1", start + HOUR)
    assert await job.run_once() == (3, 1)
    second = await _convert(world, clicks[1], "c2", start + 2 * HOUR)
    await _refuse(store, "conversions", "screened")
    with pytest.raises(Exception, match="refused"):
        await job.run_once()
    await _allow(store, "conversions")
    assert await job.run_once() == (0, 1)
    third = await _convert(world, clicks[2], "c3", start + 3 * HOUR)
    assert await job.run_once() == (0, 1)
    assert await _flags(store, "conversions", [first, second, third]) == [
        "",
        "",
        "ip_conversions",
    ]


def _take_lease(store: Store) -> None:
    """Another holder takes the screening's lease, from a connection of its own, while the
    screening's pass runs (called from within it: synchronous)."""
    far = time.time_ns() // 1000 + HOUR
    sql = "UPDATE jobs SET owner = 'another', lease_until = {} WHERE name = 'screening'"
    if store.engine == "sqlite":
        conn = sqlite3.connect(store.path)  # type: ignore[attr-defined]
        with conn:
            conn.execute(sql.format(far))
        conn.close()
        return

    async def take() -> None:
        schema = store.schema_name  # type: ignore[attr-defined]
        conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
        try:
            await conn.execute(sql.format(far))
        finally:
            await conn.close()

    thread = threading.Thread(target=asyncio.run, args=(take(),))
    thread.start()
    thread.join()


async def test_a_screening_that_lost_its_lease_mid_pass_stores_no_conversion(
    store: Store,
) -> None:
    """The lease passes to another holder while the pass screens conversions: what the
    pass made of them is not stored (the holder screens them, with counts of its own),
    and once the job comes back it is screened, and counted, once."""
    world = await build_world(store, 5)
    taken: list[str] = []

    def country_of(ip: str) -> str:
        if not taken:
            taken.append(ip)
            _take_lease(store)
        return ""

    job = Screener(
        world.store,
        fraud.ClickScreen(lambda ua: False, fraud.Networks(), LIMITS),
        fraud.ConversionScreen(country_of, LIMITS),
        world.tracker.catalog.delivery_state,
    )
    start = time.time_ns() // 1000 - DAY
    clicks = [await _click(world, P, start + i * S) for i in range(3)]
    first = await _convert(world, clicks[0], "c1", start + HOUR, geo="US")
    second = await _convert(world, clicks[1], "c2", start + 2 * HOUR, geo="US")
    await job.run_once()
    assert taken
    rows = [await store.get_row("conversions", c) or {} for c in (first, second)]
    assert [r.get("screened") for r in rows] == [0, 0]
    assert await job.run_once() == (0, 0)  # the other holder's lease runs
    await store._write("UPDATE jobs SET lease_until = 0")  # type: ignore[attr-defined]
    assert await job.run_once() == (0, 2)
    third = await _convert(world, clicks[2], "c3", start + 3 * HOUR)
    assert await job.run_once() == (0, 1)
    assert await _flags(store, "conversions", [first, second, third]) == [
        "",
        "",
        "ip_conversions",
    ]


@pytest.mark.parametrize("rest", ["poll", "share"])
async def test_the_screening_keeps_its_lease_while_it_rests(
    store: Store, rest: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Rests longer than the lease: between polls (`poll`), or between the passes of a
    backlog with a small share of the event loop (`share`). Another process does not take
    the job meanwhile, and the one resting does not count its windows again."""
    world = await build_world(store, 5)
    start = time.time_ns() // 1000 - DAY
    for i in range(3):
        await _click(world, P, start + i * S)
    job = Screener(
        world.store,
        fraud.ClickScreen(lambda ua: False, fraud.Networks(), LIMITS),
        fraud.ConversionScreen(lambda ip: "", LIMITS),
        world.tracker.catalog.delivery_state,
        poll_seconds=30.0 if rest == "poll" else 0.5,
        lease_seconds=0.3,
        batch=1 if rest == "share" else 250,
        share=1e-6,  # a pass of a millisecond rests some 15 minutes
        busy=lambda: True,
    )
    other = screener(world, 0.3)
    caplog.set_level("INFO", "clickback.screening")
    job.start()
    try:
        deadline = time.monotonic() + 5
        while job.held_until == 0 or (rest == "share" and not job.rested):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        for _ in range(12):  # 1.2 s: four leases
            await asyncio.sleep(0.1)
            assert await other.run_once() == (0, 0)
            assert other.held_until == 0  # it found the job held
    finally:
        await job.stop()
    recounts = [r for r in caplog.records if "counting windows read" in r.getMessage()]
    assert len(recounts) == 1  # the one at the start


async def _until(check: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


async def test_a_lease_renewal_the_database_refuses_is_logged_and_counted_once(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """The screening rests longer than its lease, and the database refuses the renewal
    (an error, not another holder): the error is logged, the lease lapses, and the running
    job screens on once the database takes writes again, counting the clicks it screened
    before the failure once: two clicks from an address, then a third (the limit, no
    flood), then a fourth (a flood)."""
    world = await build_world(store, 5)
    start = time.time_ns() // 1000 - DAY
    refids = [await _click(world, P, start + i * S) for i in range(2)]
    job = Screener(
        world.store,
        fraud.ClickScreen(lambda ua: False, fraud.Networks(), LIMITS),
        fraud.ConversionScreen(lambda ip: "", LIMITS),
        world.tracker.catalog.delivery_state,
        poll_seconds=1.0,
        lease_seconds=0.3,
    )

    async def screened(refid: str) -> Any:
        return await store.job_watermark("screening") >= refid

    def logged(text: str) -> int:
        return sum(text in r.getMessage() for r in caplog.records)

    caplog.set_level("INFO", "clickback.screening")
    job.start()
    try:
        await _until(lambda: screened(refids[-1]))
        await _refuse(store, "jobs", "lease_until")

        async def refused() -> bool:
            return logged("screening lease not renewed") > 0

        await _until(refused)
        await _allow(store, "jobs")
        refids.append(await _click(world, P, start + 2 * S))
        await _until(lambda: screened(refids[-1]))
        refids.append(await _click(world, P, start + 3 * S))
        await _until(lambda: screened(refids[-1]))
        assert job._task is not None and not job._task.done()
    finally:
        await job.stop()
    assert await _flags(store, "clicks", refids) == ["", "", "", "click_flood"]
    # the lease lapsed while the renewal was refused: the windows were counted again
    assert logged("counting windows read") == 2
