"""The group-commit writer on both engines: per-row outcomes, exact dedupe, failures."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
from pathlib import Path

import orjson
import pytest

from clickback.domain.models import Outcome
from clickback.domain.ports import ConversionRow, LedgerRow, Store
from clickback.errors import UnavailableError
from clickback.storage.sqlite import SqliteStore
from clickback.storage.sqlite_file import Checkpointer


async def setup(store: Store) -> tuple[int, int]:
    adv = await store.create_advertiser("A", "tok", False)
    offer = await store.create_offer(
        {
            "advertiser_id": adv,
            "name": "O",
            "destination_url": "https://x.example/",
            "fallback_url": "",
            "refid_param": "refid",
            "payout_type": "cpa",
            "payout_amount": 100,
            "payout_percent": "0",
            "revenue_type": "",
            "revenue_amount": "0",
            "revenue_percent": "0",
            "currency": "USD",
            "attribution_window_days": 30,
            "status": "active",
            "approval": "auto",
            "fraud_rules": "{}",
            "daily_cap": None,
            "auto_approve_days": None,
            "cap_redirect": 0,
        }
    )
    aff = await store.create_affiliate("F")
    link = await store.create_link("code1", offer, aff)
    return adv, link


def click_row(refid: str, link: int, sub1: str = "") -> tuple:  # type: ignore[type-arg]
    return (refid, link, 1, 1, sub1, "", "", "", "", "127.0.0.1", "ua", "", 1_000, 0)


def conv(
    adv: int,
    link: int,
    order: str,
    refid: str = "R1",
    amount: int = 500,
    currency: str = "USD",
    is_test: int = 0,
) -> ConversionRow:
    return ConversionRow(
        refid=refid,
        offer_id=1,
        affiliate_id=1,
        advertiser_id=adv,
        link_id=link,
        ordernumber=order,
        orderamount=amount,
        currency=currency,
        commission=100,
        commission_currency="USD",
        coupon="",
        geo="",
        commissionid="",
        status="approved",
        created_at=2_000,
        recorded_at=2_000,
        clicked_at=1_000,
        is_test=is_test,
        rule="default",
        flags="",
        base_currency="USD",
        rate="1",
        base_amount=500,
        base_commission=100,
    )


def ledger(order: str) -> LedgerRow:
    return LedgerRow(
        2_000, "GET", "127.0.0.1", "{}", "R1", order, 1, Outcome.ACCEPTED, 200, "[]", "", 1, 0, None
    )


async def test_batch_reports_each_rows_own_outcome(store: Store) -> None:
    adv, link = await setup(store)
    await store.write_click(click_row("R1", link, "s"))
    orders = ["A", "B", "A", "C", "B", "A"]
    written = await asyncio.gather(
        *(store.write_postback(ledger(o), conv(adv, link, o)) for o in orders)
    )
    outcomes = [w.outcome for w in written]
    assert outcomes == [
        Outcome.ACCEPTED,
        Outcome.ACCEPTED,
        Outcome.DUPLICATE,
        Outcome.ACCEPTED,
        Outcome.DUPLICATE,
        Outcome.DUPLICATE,
    ]
    ids = {o: w.conversion_id for o, w in zip(orders, written, strict=True)}
    assert written[2].conversion_id == ids["A"] and written[4].conversion_id == ids["B"]
    page = await store.list_rows("conversions", {}, None, None, 100, None)
    assert sorted(r["ordernumber"] for r in page.items) == ["A", "B", "C"]
    assert all(r["sub1"] == "s" and r["click_missing"] == 0 for r in page.items)
    ledger_rows = (await store.list_rows("postbacks", {}, None, None, 100, None)).items
    assert len(ledger_rows) == 6
    assert sum(r["outcome"] == "duplicate" for r in ledger_rows) == 3


async def test_dedupe_holds_across_batches(store: Store) -> None:
    adv, link = await setup(store)
    first = await store.write_postback(ledger("X"), conv(adv, link, "X"))
    again = await store.write_postback(ledger("X"), conv(adv, link, "X"))
    assert first.outcome is Outcome.ACCEPTED and again.outcome is Outcome.DUPLICATE
    assert again.conversion_id == first.conversion_id


async def test_a_duplicate_says_the_conversion_it_repeats_and_what_differs(store: Store) -> None:
    """A repeat of an order counted in an earlier batch (its conversion read back) or in
    the same batch (the one inserted beside it) is stored with why it was not counted:
    the stored conversion's id, and its amount, currency or RefID where the repeat's
    differ."""
    adv, link = await setup(store)
    x = (await store.write_postback(ledger("X"), conv(adv, link, "X"))).conversion_id
    written = [
        await store.write_postback(ledger("X"), conv(adv, link, "X")),
        await store.write_postback(ledger("X"), conv(adv, link, "X", "R2", amount=599)),
        *await asyncio.gather(
            store.write_postback(ledger("Y"), conv(adv, link, "Y")),
            store.write_postback(ledger("Y"), conv(adv, link, "Y", amount=600, currency="EUR")),
        ),
    ]
    assert [w.outcome for w in written] == [Outcome.DUPLICATE] * 2 + [
        Outcome.ACCEPTED,
        Outcome.DUPLICATE,
    ]
    y = written[2].conversion_id
    rows = {r["id"]: r for r in (await store.list_rows("postbacks", {}, None, None, 9, None)).items}
    stored = [rows[w.ledger_id] for w in written]
    assert [r["code"] for r in stored] == ["duplicate_ordernumber"] * 2 + [
        "",
        "duplicate_ordernumber",
    ]
    notes = [orjson.loads(r["errors"]) for r in stored]
    assert notes[0] == [
        {
            "field": "ordernumber",
            "code": "duplicate_ordernumber",
            "message": f"ordernumber 'X' was counted already, as conversion {x}",
            "differs": [],
        }
    ]
    assert notes[1][0]["message"] == (
        f"ordernumber 'X' was counted already, as conversion {x}; this one differs:"
        " stored orderamount 5.00 USD, this one 5.99 USD; stored RefID R1, this one R2"
    )
    assert notes[1][0]["differs"] == [
        {"field": "orderamount", "stored": "5.00", "sent": "5.99"},
        {"field": "refid", "stored": "R1", "sent": "R2"},
    ]
    assert notes[2] == []
    assert notes[3][0]["message"] == (
        f"ordernumber 'Y' was counted already, as conversion {y}; this one differs:"
        " stored orderamount 5.00 USD, this one 6.00 EUR"
    )


async def test_a_duplicate_of_an_earlier_batch_takes_no_conversion_id(store: Store) -> None:
    """Conversion ids follow one another: an id taken for a duplicate would be a gap the
    rollup job waits on for ten minutes (PostgreSQL drew one per row offered)."""
    adv, link = await setup(store)
    written = [await store.write_postback(ledger("X"), conv(adv, link, "X"))]
    written += await asyncio.gather(
        *(store.write_postback(ledger(o), conv(adv, link, o)) for o in ("X", "Y", "X"))
    )
    written.append(await store.write_postback(ledger("Z"), conv(adv, link, "Z")))
    assert [w.outcome for w in written] == [
        Outcome.ACCEPTED,
        Outcome.DUPLICATE,
        Outcome.ACCEPTED,
        Outcome.DUPLICATE,
        Outcome.ACCEPTED,
    ]
    x, y, z = written[0].conversion_id, written[2].conversion_id, written[4].conversion_id
    assert written[1].conversion_id == written[3].conversion_id == x
    assert (y, z) == (x + 1, x + 2)


async def test_same_ordernumber_for_another_advertiser_is_its_own_conversion(
    store: Store,
) -> None:
    adv, link = await setup(store)
    other = await store.create_advertiser("B", "tok2", False)
    a, b = await asyncio.gather(
        store.write_postback(ledger("SAME"), conv(adv, link, "SAME")),
        store.write_postback(ledger("SAME"), conv(other, link, "SAME")),
    )
    assert a.outcome is b.outcome is Outcome.ACCEPTED and a.conversion_id != b.conversion_id


async def test_test_orders_and_real_orders_are_deduplicated_apart(store: Store) -> None:
    """An integration test's postback may carry a real order number of the shop: the real
    postback of that order is a conversion of its own (and the reverse), while a test
    order repeated, or a real one, is a duplicate of its own kind; in one batch or in
    several."""
    adv, link = await setup(store)

    async def one(order: str, is_test: int) -> tuple[Outcome, int | None]:
        w = await store.write_postback(ledger(order), conv(adv, link, order, is_test=is_test))
        return w.outcome, w.conversion_id

    test_x = await one("X", 1)
    real_x = await one("X", 0)  # the real order after its number was used in a test
    real_y = await one("Y", 0)
    test_y = await one("Y", 1)  # a test with the number of an order counted
    assert [o for o, _ in (test_x, real_x, real_y, test_y)] == [Outcome.ACCEPTED] * 4
    assert len({i for _, i in (test_x, real_x, real_y, test_y)}) == 4
    again = [await one("X", 1), await one("X", 0), await one("Y", 0), await one("Y", 1)]
    assert again == [
        (Outcome.DUPLICATE, test_x[1]),
        (Outcome.DUPLICATE, real_x[1]),
        (Outcome.DUPLICATE, real_y[1]),
        (Outcome.DUPLICATE, test_y[1]),
    ]
    together = await asyncio.gather(
        *(
            store.write_postback(ledger(o), conv(adv, link, o, is_test=t))
            for o, t in (("Z", 1), ("Z", 0), ("Z", 1), ("Z", 0), ("X", 0), ("X", 1))
        )
    )
    assert [w.outcome for w in together] == [Outcome.ACCEPTED] * 2 + [Outcome.DUPLICATE] * 4
    z_test, z_real = together[0].conversion_id, together[1].conversion_id
    assert z_test != z_real
    assert [w.conversion_id for w in together[2:]] == [z_test, z_real, real_x[1], test_x[1]]
    rows = (await store.list_rows("conversions", {}, None, None, 100, None)).items
    kept = sorted((r["ordernumber"], r["is_test"]) for r in rows)
    assert kept == [("X", 0), ("X", 1), ("Y", 0), ("Y", 1), ("Z", 0), ("Z", 1)]


async def test_a_postgres_server_that_does_not_answer_gets_503_not_a_wait(store: Store) -> None:
    """A server that hangs rather than fails (here: a lock held on the tables the batch
    writes): its requests are answered unavailable after the write timeout, and once it
    answers again the writer goes on, on a new connection."""
    if store.engine != "postgres":
        pytest.skip("SQLite is in the process: it fails, it does not hang")
    import asyncpg

    from clickback.storage.postgres import TIMED_OUT, PostgresStore
    from tests.conftest import PG_URL

    assert isinstance(store, PostgresStore)
    adv, link = await setup(store)
    store.write_timeout = 0.5
    holder = await asyncpg.connect(PG_URL, server_settings={"search_path": store.schema_name or ""})
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute("LOCK TABLE clicks, conversions IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        answers = await asyncio.gather(
            store.write_click(click_row("HUNG", link)),
            store.write_postback(ledger("H"), conv(adv, link, "H")),
            return_exceptions=True,
        )
        waited = time.monotonic() - started
        assert all(isinstance(a, UnavailableError) for a in answers), answers
        assert all(a.message == TIMED_OUT for a in answers if isinstance(a, UnavailableError))
        assert waited < 5  # not held till the lock is let go
        await tx.rollback()
    finally:
        await holder.close()
    written = await store.write_postback(ledger("H"), conv(adv, link, "H"))
    assert written.outcome is Outcome.ACCEPTED  # nothing of the batch given up on stayed
    await store.write_click(click_row("AFTER", link))
    page = await store.list_rows("clicks", {}, None, None, 10, None)
    assert [r["refid"] for r in page.items] == ["AFTER"]


async def test_missing_click_row_is_flagged(store: Store) -> None:
    adv, link = await setup(store)
    await store.write_postback(ledger("M"), conv(adv, link, "M", refid="never-stored"))
    [row] = (await store.list_rows("conversions", {}, None, None, 10, None)).items
    assert row["click_missing"] == 1 and row["sub1"] == ""


async def test_a_failed_row_answers_unavailable_and_spares_its_batch(store: Store) -> None:
    adv, link = await setup(store)
    await store.write_click(click_row("OK1", link))
    await store._write("DROP TABLE postbacks")  # type: ignore[attr-defined]
    click, postback = await asyncio.gather(
        store.write_click(click_row("KEPT", link)),
        store.write_postback(ledger("F"), conv(adv, link, "F")),
        return_exceptions=True,
    )
    assert isinstance(postback, UnavailableError)  # never a false success
    assert click is None  # the click in the same batch was written all the same
    page = await store.list_rows("clicks", {}, None, None, 10, None)
    assert sorted(r["refid"] for r in page.items) == ["KEPT", "OK1"]
    # nothing of the failed postback was half-written
    assert not (await store.list_rows("conversions", {}, None, None, 10, None)).items
    # and the writer keeps going after a failure
    await store.write_click(click_row("OK2", link))
    assert (await store.list_rows("clicks", {"refid": "OK2"}, None, None, 1, None)).items


async def test_a_batch_whose_commit_fails_is_answered_unavailable_never_written(
    store: Store,
) -> None:
    """Every statement of the batch succeeds and the COMMIT itself is refused (SQLite: an
    authorizer that denies it; PostgreSQL: a deferred constraint trigger that raises at
    commit): the requests are answered only after the commit, so they are told
    unavailable, and nothing of them is stored."""
    adv, link = await setup(store)
    if isinstance(store, SqliteStore):

        def deny_commit(action: int, arg1: str | None, *_: object) -> int:
            refused = action == sqlite3.SQLITE_TRANSACTION and arg1 == "COMMIT"
            return sqlite3.SQLITE_DENY if refused else sqlite3.SQLITE_OK

        store.conn.set_authorizer(deny_commit)
    else:
        await store._write(  # type: ignore[attr-defined]
            "CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'refused at commit'; END $$"
        )
        await store._write(  # type: ignore[attr-defined]
            "CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON postbacks"
            " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_at_commit()"
        )
    answers = await asyncio.gather(
        store.write_click(click_row("C1", link)),
        store.write_postback(ledger("F"), conv(adv, link, "F")),
        return_exceptions=True,
    )
    if isinstance(store, SqliteStore):
        assert all(isinstance(a, UnavailableError) for a in answers), answers
        store.conn.set_authorizer(None)
    else:  # the trigger is on postbacks only: the click, retried alone, is stored
        assert answers[0] is None and isinstance(answers[1], UnavailableError), answers
        await store._write("DROP TRIGGER refuse_at_commit ON postbacks")  # type: ignore[attr-defined]
    assert not (await store.list_rows("conversions", {}, None, None, 10, None)).items
    assert not (await store.list_rows("postbacks", {}, None, None, 10, None)).items
    written = await store.write_postback(ledger("F"), conv(adv, link, "F"))
    assert written.outcome is Outcome.ACCEPTED  # the writer goes on; F was never stored
    assert len((await store.list_rows("postbacks", {}, None, None, 10, None)).items) == 1


async def test_a_click_that_cannot_be_stored_spares_the_clicks_of_its_batch(
    store: Store,
) -> None:
    """A batch of clicks alone (PostgreSQL: one COPY, no transaction around it) that
    fails on one row: that click answers unavailable, the others are stored."""
    _, link = await setup(store)
    await store.write_click(click_row("TAKEN", link))
    answers = await asyncio.gather(
        store.write_click(click_row("C1", link)),
        store.write_click(click_row("TAKEN", link)),  # its RefID is stored already
        store.write_click(click_row("C2", link)),
        return_exceptions=True,
    )
    assert answers[0] is None and answers[2] is None
    assert isinstance(answers[1], UnavailableError)
    page = await store.list_rows("clicks", {}, None, None, 10, None)
    assert sorted(r["refid"] for r in page.items) == ["C1", "C2", "TAKEN"]
    await store.write_click(click_row("C3", link))  # and the writer goes on
    assert (await store.list_rows("clicks", {"refid": "C3"}, None, None, 1, None)).items


async def test_async_clicks_are_committed_by_the_next_batch(store: Store) -> None:
    _, link = await setup(store)
    store.queue_click(click_row("Q1", link))
    await store.write_click(click_row("Q2", link))  # same or a later batch
    page = await store.list_rows("clicks", {}, None, None, 10, None)
    assert {r["refid"] for r in page.items} == {"Q1", "Q2"}


@pytest.mark.parametrize("n", [1, 700])
async def test_batches_larger_than_batch_max_are_split(store: Store, n: int) -> None:
    _, link = await setup(store)
    await asyncio.gather(*(store.write_click(click_row(f"B{i:04d}", link)) for i in range(n)))
    page = await store.list_rows("clicks", {}, None, None, 1000, None)
    assert len(page.items) == n


async def test_sqlite_wal_checkpoints_run_in_their_own_thread(tmp_path: Path) -> None:
    """The writer never checkpoints in a commit; the thread does, and truncates a WAL
    that grew past its limit; every row is there afterwards."""
    store = SqliteStore(str(tmp_path / "wal.db"))
    assert store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    assert store.checkpointer is not None
    store.checkpointer.stop()
    store.checkpointer = Checkpointer(store.path, every=0.05, truncate_pages=20)
    await store.migrate()
    _, link = await setup(store)
    for n in range(40):
        await asyncio.gather(
            *(store.write_click(click_row(f"R{n:03d}{i:03d}", link)) for i in range(50))
        )
    deadline = time.monotonic() + 10
    while store.checkpointer.truncates == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert store.checkpointer.truncates >= 1 and store.checkpointer.passes >= 1
    rows = await store._fetch("SELECT count(*) AS n FROM clicks")
    assert rows[0]["n"] == 2_000
    await store.close()
    assert not store.checkpointer._thread.is_alive()


async def test_sqlite_wal_starts_over_under_a_steady_write_load(tmp_path: Path) -> None:
    """Batches committed back to back leave a passive checkpoint always a little behind,
    and SQLite restarts the WAL only once every frame is copied: the checkpointer holds
    one commit back while it copies the last frames, so the WAL stays short without a
    TRUNCATE (here out of reach). Without the hold it grows with every batch: 32.1 MB,
    every frame of this work, never started over (measured, the same each time). With
    it 1.2-1.5 MB on an idle machine, and up to 8.7 MB seen on a busy one, where the
    checkpoint thread gets the CPU late; the bound is half the never-restarted WAL."""
    store = SqliteStore(str(tmp_path / "steady.db"))
    await store.migrate()
    _, link = await setup(store)
    assert store.checkpointer is not None
    store.checkpointer.stop()
    store.checkpointer = Checkpointer(
        store.path, every=0.02, truncate_pages=10**9, restart_pages=200, hold=store._hold_commits
    )
    wal = Path(store.path + "-wal")
    peak = 0
    for n in range(1_500):
        batch = (store.write_click(click_row(f"S{n:04d}{i:02d}", link)) for i in range(50))
        await asyncio.wait_for(asyncio.gather(*batch), 10)  # a held batch is let go
        peak = max(peak, wal.stat().st_size)
    assert store.checkpointer.restarts >= 1 and store.checkpointer.truncates == 0
    assert peak < 16_000_000, f"the WAL grew to {peak:,} bytes"
    rows = await store._fetch("SELECT count(*) AS n FROM clicks")
    assert rows[0]["n"] == 75_000
    await store.close()


@pytest.mark.parametrize("failure", [None, sqlite3.OperationalError("database or disk is full")])
async def test_a_batch_held_back_by_the_checkpointer_commits_when_let_go(
    tmp_path: Path, failure: Exception | None
) -> None:
    """Answered only once committed, after the hold; also when the checkpoint under the
    hold failed (the error goes on to the checkpointer, the deferred batch is written)."""
    store = SqliteStore(str(tmp_path / "held.db"))
    await store.migrate()
    _, link = await setup(store)
    hold = store._hold_commits()
    hold.__enter__()
    waiting = asyncio.ensure_future(store.write_click(click_row("HELD", link)))
    await asyncio.sleep(0.1)
    assert not waiting.done()  # not answered before its row is committed
    assert not hold.__exit__(type(failure) if failure else None, failure, None)
    await asyncio.wait_for(waiting, 5)
    assert (await store.list_rows("clicks", {"refid": "HELD"}, None, None, 1, None)).items
    await store.close()


async def test_a_replays_delivery_runs_its_retries_from_when_it_is_recorded(store: Store) -> None:
    """A replayed postback keeps its first arrival as `created_at`; the outbound postback
    it queues starts from when the conversion is recorded, so its 72 hours of retries
    run from the replay, not from days before (one failed attempt gave it up)."""
    adv, link = await setup(store)
    await store.write_click(click_row("R1", link, "s"))
    row = dataclasses.replace(conv(adv, link, "REPLAYED"), recorded_at=9_000, delivery="queued")
    written = await store.write_postback(ledger("REPLAYED"), row)
    assert written.outcome == Outcome.ACCEPTED
    page = await store.list_rows(
        "deliveries", {"conversion_id": written.conversion_id}, None, None, 10, None
    )
    [delivery] = page.items
    assert (delivery["created_at"], delivery["next_at"], delivery["updated_at"]) == (9_000,) * 3


async def test_a_write_after_the_store_closed_is_refused(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A write that comes after `close` (a request outliving the shutdown) is answered
    unavailable: on PostgreSQL it used to open a writer connection never closed. One
    that came just before is written by `close`, and nothing after fails (SQLite's flush
    scheduled for it ran on the closed connection, an error logged)."""
    adv, link = await setup(store)
    # SQLite queues it at once, its flush scheduled for the loop's next turn: `close` comes
    # first (on PostgreSQL the write is a coroutine: it would come after)
    last = store.write_click(click_row("LAST", link)) if isinstance(store, SqliteStore) else None
    await store.close()
    await asyncio.sleep(0.05)
    if last is not None:
        assert await last is None
        assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
    with pytest.raises(UnavailableError):
        await store.write_click(click_row("LATE", link))
    with pytest.raises(UnavailableError):
        await store.write_postback(ledger("L"), conv(adv, link, "L"))
    assert getattr(store, "_writer", None) is None or store._writer.is_closed()  # type: ignore[attr-defined]
