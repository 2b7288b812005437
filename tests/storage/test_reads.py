"""Reads that must see one moment of the database, on both engines."""

from __future__ import annotations

import asyncio
import threading
import time

from clickback.domain.ports import Store
from clickback.storage.postgres import PostgresStore
from clickback.storage.sqlite import SqliteStore
from tests.storage.test_group_commit import conv, ledger, setup


def twin(store: Store) -> Store:
    """Another store on the same database, as another process would open it."""
    if isinstance(store, SqliteStore):
        return SqliteStore(store.path)
    assert isinstance(store, PostgresStore)
    return PostgresStore(f"{store.dsn}?schema={store.schema_name}")


async def flip(store: Store, conversion_id: int, seconds: float, stop: threading.Event) -> int:
    """Moves the conversion between approved and pending until time is up (or `stop`)."""
    if isinstance(store, PostgresStore):
        await store.open()
    moves, status, deadline = 0, "approved", time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and not stop.is_set():
            to = "pending" if status == "approved" else "approved"
            assert await store.transition(conversion_id, status, to, "flip", "test")
            status, moves = to, moves + 1
    finally:
        await store.close()
    return moves


async def test_a_conversion_is_read_with_the_history_of_its_status(store: Store) -> None:
    adv, link = await setup(store)
    written = await store.write_postback(ledger("H"), conv(adv, link, "H"))
    cid = written.conversion_id
    assert cid is not None
    # another connection changes the status (and writes its history row) over and over,
    # in its own thread; every read must show the status its last history row moved to
    stop = threading.Event()
    flips = flip(twin(store), cid, 1.5, stop)
    writer = asyncio.create_task(asyncio.to_thread(asyncio.run, flips))
    reads = 0
    try:
        while not writer.done():
            row, history = await store.conversion_with_history(cid)
            assert row is not None
            if history:
                assert row["status"] == history[-1]["to_status"], (reads, len(history))
            reads += 1
            await asyncio.sleep(0)
    finally:  # the writer ends before the database is dropped, also on a failure
        stop.set()
        moves = await writer
    row, history = await store.conversion_with_history(cid)
    assert row is not None and len(history) == moves > 10 and reads > 10
    assert (await store.conversion_with_history(cid + 1)) == (None, [])


async def test_set_meta_replaces_what_get_or_set_meta_kept(store: Store) -> None:
    assert await store.get_or_set_meta("served_url", "http://127.0.0.1:8150") == (
        "http://127.0.0.1:8150"
    )
    await store.set_meta("served_url", "http://127.0.0.1:8151")
    assert await store.get_meta("served_url") == "http://127.0.0.1:8151"
    await store.set_meta("demo_link_id", "3")
    assert await store.get_meta("demo_link_id") == "3"
