"""Which of a driver's errors say the database is out of reach for now (the admin API
answers them 503, retry) and which a statement or the code is wrong (500), from errors
the real drivers raised."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import asyncpg
import pytest

from clickback.domain.models import Outcome
from clickback.domain.ports import Store
from clickback.errors import UnavailableError
from clickback.storage.sqlite import SqliteStore
from tests.conftest import PG_URL
from tests.storage.test_group_commit import conv, ledger, setup


async def test_a_statement_the_database_refuses_is_not_an_outage(store: Store) -> None:
    with pytest.raises(Exception) as caught:
        await store._fetch("SELECT * FROM no_such_table")  # type: ignore[attr-defined]
    assert not store.unavailable(caught.value), repr(caught.value)


async def test_a_connection_refused_is_an_outage(store: Store) -> None:
    with pytest.raises(OSError) as caught:
        await asyncpg.connect("postgresql://postgres@127.0.0.1:1/test", timeout=5)
    assert store.unavailable(caught.value)


def test_a_sqlite_file_locked_or_out_of_reach_is_an_outage(tmp_path: object) -> None:
    path = f"{tmp_path}/locked.db"
    store = SqliteStore(path)
    holder = sqlite3.connect(path)
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0)
    with pytest.raises(sqlite3.OperationalError) as locked:
        other.execute("CREATE TABLE t (x)")
    with pytest.raises(sqlite3.OperationalError) as missing:
        sqlite3.connect(f"{tmp_path}/no/such/dir/x.db").execute("SELECT 1")
    with pytest.raises(sqlite3.OperationalError) as wrong:
        other.execute("SELEC 1")
    assert store.unavailable(locked.value), str(locked.value)
    assert store.unavailable(missing.value), str(missing.value)
    assert not store.unavailable(wrong.value), str(wrong.value)
    holder.rollback()
    for conn in (holder, other, store.conn):
        conn.close()


async def test_a_statement_cancelled_for_its_time_is_not_an_outage(store: Store) -> None:
    """A report past the DBA's statement_timeout is a slow query to see in the log, with
    its traceback, not a 503 to retry for ever."""
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute("SET statement_timeout = 10")
        with pytest.raises(asyncpg.exceptions.QueryCanceledError) as caught:
            await conn.execute("SELECT pg_sleep(1)")
    finally:
        await conn.close()
    assert not store.unavailable(caught.value)


async def test_a_sqlite_batch_that_finds_the_file_locked_is_not_retried_row_by_row(
    tmp_path: Path,
) -> None:
    """The file locked past the busy timeout (another process's long write): the whole
    batch is answered unavailable after one wait, not retried row by row, each row
    waiting the busy timeout again on the event loop (10 s a row by default)."""
    store = SqliteStore(str(tmp_path / "locked.db"))
    await store.migrate()
    try:
        adv, link = await setup(store)
        store.conn.execute("PRAGMA busy_timeout = 50")
        began: list[str] = []
        store.conn.set_trace_callback(
            lambda sql: began.append(sql) if sql.startswith("BEGIN") else None
        )
        holder = sqlite3.connect(store.path)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            answers = await asyncio.gather(
                *(
                    store.write_postback(ledger(f"L{i}"), conv(adv, link, f"L{i}"))
                    for i in range(5)
                ),
                return_exceptions=True,
            )
        finally:
            holder.rollback()
            holder.close()
            store.conn.set_trace_callback(None)
        assert all(isinstance(a, UnavailableError) for a in answers), answers
        assert len(began) == 1, began  # one try for the batch of five
        written = await store.write_postback(ledger("L0"), conv(adv, link, "L0"))
        assert written.outcome is Outcome.ACCEPTED  # nothing of them stayed; it goes on
    finally:
        await store.close()
