"""Kill -9 in the middle of click and postback load: nothing answered is lost or doubled.

Every RefID that was answered with a 302 must be stored after a restart, and every
postback answered `accepted` must be exactly one conversion. Runs on both engines.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import sqlite3
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest

from tests.cli.conftest import Server, cli
from tests.conftest import PG_URL


@pytest.fixture
def db(any_db: str) -> str:
    """A database URL on each engine (`tests.cli.conftest.any_db`)."""
    return any_db


async def load(
    base: str, code: str, stop: threading.Event, clicks: list[str], accepted: list[str]
) -> None:
    """Click and convert as fast as possible until the server dies."""
    counter = itertools.count()
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=base, timeout=2, limits=limits) as client:

        async def worker(n: int) -> None:
            while not stop.is_set():
                try:
                    r = await client.get(f"/c/{code}?sub1=w{n}")
                    if r.status_code != 302:
                        continue
                    refid = parse_qs(urlsplit(r.headers["location"]).query)["refid"][0]
                    clicks.append(refid)
                    order = f"K{next(counter)}"
                    r = await client.get(
                        f"/postback?refid={refid}&orderamount=9.99&ordernumber={order}"
                    )
                    if r.status_code == 200 and r.json()["status"] == "accepted":
                        accepted.append(order)
                except (httpx.HTTPError, ValueError):
                    await asyncio.sleep(0.01)  # the server is gone; keep trying until told

        await asyncio.gather(*(worker(n) for n in range(24)))


def demo_load(
    server: Server, stop: threading.Event, clicks: list[str], accepted: list[str]
) -> threading.Thread:
    """`load` on the demo link of a server started with `--demo`, in a thread of its own,
    once it has 200 postbacks accepted (or after 20 s)."""
    code = re.search(r"/c/([^?\s]+)", server.log.read_text())
    assert code
    loader = threading.Thread(
        target=asyncio.run, args=(load(server.base, code.group(1), stop, clicks, accepted),)
    )
    loader.start()
    deadline = time.monotonic() + 20
    while len(accepted) < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    return loader


def stored(db: str) -> tuple[set[str], list[str]]:
    """Click RefIDs and conversion ordernumbers in the database."""
    if db.startswith("sqlite"):
        conn = sqlite3.connect(db.removeprefix("sqlite:///"))
        clicks = {r[0] for r in conn.execute("SELECT refid FROM clicks")}
        orders = [r[0] for r in conn.execute("SELECT ordernumber FROM conversions")]
        conn.close()
        return clicks, orders
    schema = parse_qs(urlsplit(db).query)["schema"][0]

    async def read() -> tuple[set[str], list[str]]:
        conn = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
        clicks = {r[0] for r in await conn.fetch("SELECT refid FROM clicks")}
        orders = [r[0] for r in await conn.fetch("SELECT ordernumber FROM conversions")]
        await conn.close()
        return clicks, orders

    return asyncio.run(read())


@pytest.mark.parametrize("kind", ["granian", "native"])
def test_kill9_under_load_loses_nothing_answered(db: str, tmp_path: Path, kind: str) -> None:
    server = Server(db, tmp_path)
    try:
        server.start("--demo", "--server", kind)
        clicks: list[str] = []
        accepted: list[str] = []
        stop = threading.Event()
        loader = demo_load(server, stop, clicks, accepted)
        server.kill9()  # mid-load: requests are in flight and batches are being committed
        time.sleep(0.3)
        stop.set()
        loader.join(30)
        assert len(accepted) >= 200, "the load did not get going"

        server.start("--server", kind)  # recovers (SQLite WAL replay, PostgreSQL as usual)
        stored_clicks, orders = stored(db)
        assert set(clicks) <= stored_clicks, "a click answered with a 302 was lost"
        assert set(accepted) <= set(orders), "a postback answered accepted was lost"
        assert len(orders) == len(set(orders)), "a conversion was counted twice"
        # firing every accepted order again after the restart counts none twice
        for order in accepted[:50]:
            r = httpx.get(
                f"{server.base}/postback?refid={clicks[0]}&orderamount=1&ordernumber={order}"
            )
            assert r.json()["status"] == "duplicate"
        assert cli("conversions", "list", "--json", "--limit", "5000", db=db).count("\n") == len(
            orders
        )
    finally:
        server.stop()
