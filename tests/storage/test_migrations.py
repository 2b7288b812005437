"""Migrations: several nodes starting at once on one PostgreSQL database migrate it once,
in order; a database with rows keeps them through a migration that rebuilds a table."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import unicodedata
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

from clickback.domain.models import Outcome
from clickback.domain.ports import Store
from clickback.storage import schema
from clickback.storage.postgres import PostgresStore
from clickback.storage.sqlite import SqliteStore, with_functions
from tests.conftest import PG_URL
from tests.storage.test_group_commit import conv, ledger


async def test_nodes_starting_together_migrate_once() -> None:
    name = "m_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(PG_URL)
    await admin.execute(f"CREATE SCHEMA {name}")
    stores = [PostgresStore(f"{PG_URL}?schema={name}") for _ in range(4)]
    try:
        versions = await asyncio.gather(*(s.migrate() for s in stores))
        assert versions == [schema.LATEST] * 4
        applied = await admin.fetch(f"SELECT version FROM {name}.schema_migrations ORDER BY 1")
        assert [r[0] for r in applied] == [v for v, _, _ in schema.MIGRATIONS]
    finally:
        await admin.execute(f"DROP SCHEMA {name} CASCADE")
        await admin.close()


OLD = 18  # the last version whose conversions were unique by (advertiser, ordernumber)
_ROWS = [
    "INSERT INTO advertisers (id, name, postback_token, created_at, updated_at)"
    " VALUES (1, 'A', 'tok', 0, 0)",
    "INSERT INTO offers (id, advertiser_id, name, destination_url, payout_type, currency,"
    " created_at, updated_at) VALUES (1, 1, 'O', 'https://x.example/', 'cpa', 'USD', 0, 0)",
    "INSERT INTO affiliates (id, name, created_at, updated_at) VALUES (1, 'F', 0, 0)",
    "INSERT INTO links (id, code, offer_id, affiliate_id, created_at, updated_at)"
    " VALUES (1, 'code1', 1, 1, 0, 0)",
    *(
        "INSERT INTO conversions (id, refid, offer_id, affiliate_id, advertiser_id, link_id,"
        " sub1, sub2, sub3, sub4, sub5, ordernumber, orderamount, currency, commission,"
        " commission_currency, coupon, geo, commissionid, status, is_test, click_missing,"
        f" created_at, clicked_at, flags, screened) VALUES ({i}, 'R{i}', 1, 1, 1, 1, 's', '',"
        f" '', '', '', '{order}', 500, 'USD', 100, 'USD', '', '', '', 'pending', {test}, 0,"
        f" {2_000 + i}, 1000, 'x', 1)"
        for i, order, test in ((1, "X", 0), (2, "T", 1))
    ),
    "INSERT INTO conversion_events (conversion_id, from_status, to_status, reason, actor,"
    " created_at) VALUES (1, 'approved', 'pending', 'checked', 'api', 3000)",
    # conversion 1 was made by a replay (a ledger row replaying another)
    "INSERT INTO postbacks (received_at, method, ip, params, refid, ordernumber, outcome,"
    " http_status, errors, conversion_id, replay_of) VALUES (2001, 'GET', '', '{}', 'R1',"
    " 'X', 'accepted', 200, '[]', 1, 7)",
]


async def _old_store(
    engine: str,
    tmp_path: Path,
    name: str,
    version: int = OLD,
    rows: list[str] = _ROWS,
    pg_url: str = PG_URL,
) -> Store:
    """A store on a database as `version` left it, with `rows` (by default a conversion
    with a history row, which refers to it), not opened on the new version yet; on
    PostgreSQL in schema `name` of the database at `pg_url`."""
    last = version
    if engine == "sqlite":
        path = str(tmp_path / "old.db")
        old = with_functions(sqlite3.connect(path, isolation_level=None))
        old.execute("PRAGMA foreign_keys = ON")
        old.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,"
            " applied_at BIGINT NOT NULL)"
        )
        for version in range(1, last + 1):
            for statement in schema.statements("sqlite", version):
                old.execute(statement)
            old.execute("INSERT INTO schema_migrations VALUES (?, 0)", (version,))
        for statement in rows:
            old.execute(statement)
        old.close()
        return SqliteStore(path)
    conn = await asyncpg.connect(pg_url, server_settings={"search_path": name})
    try:
        await conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,"
            " applied_at BIGINT NOT NULL)"
        )
        for version in range(1, last + 1):
            for statement in schema.statements("postgres", version):
                await conn.execute(statement)
            await conn.execute("INSERT INTO schema_migrations VALUES ($1, 0)", version)
        for statement in rows:
            await conn.execute(statement)
        await conn.execute("SELECT setval(pg_get_serial_sequence('conversions', 'id'), 2)")
    finally:
        await conn.close()
    store = PostgresStore(f"{pg_url}?schema={name}")
    await store.open()
    return store


@asynccontextmanager
async def _migrated(
    engine: str, tmp_path: Path, version: int = OLD, rows: list[str] = _ROWS
) -> AsyncIterator[Store]:
    """A store on a database as `version` left it with `rows`, migrated to the latest
    version; its schema dropped after (PostgreSQL)."""
    name = "m_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(PG_URL)
    await admin.execute(f"CREATE SCHEMA {name}")
    store = await _old_store(engine, tmp_path, name, version, rows)
    try:
        assert await store.migrate() == schema.LATEST
        yield store
    finally:
        await store.close()
        await admin.execute(f"DROP SCHEMA {name} CASCADE")
        await admin.close()


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
async def test_a_database_with_conversions_dedupes_test_and_real_orders_apart_once_migrated(
    engine: str, tmp_path: Path
) -> None:
    name = "m_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(PG_URL)
    await admin.execute(f"CREATE SCHEMA {name}")
    store = await _old_store(engine, tmp_path, name)
    try:
        before = time.time_ns() // 1000 - 1_000_000
        assert await store.migrate() == schema.LATEST
        kept = (await store.list_rows("conversions", {}, None, None, 9, None)).items
        assert [(r["id"], r["ordernumber"], r["is_test"], r["sub1"]) for r in kept] == [
            (2, "T", 1, "s"),
            (1, "X", 0, "s"),
        ]
        # when each was recorded: as it arrived, but a replayed one still pending, whose
        # time of recording was not kept, has its validation period from the migration
        assert kept[0]["recorded_at"] == 2_002
        assert before <= kept[1]["recorded_at"] <= time.time_ns() // 1000
        got, history = await store.conversion_with_history(1)
        assert got is not None and [e["reason"] for e in history] == ["checked"]
        written = [
            await store.write_postback(ledger(o), conv(1, 1, o, is_test=t))
            for o, t in (("X", 1), ("X", 0), ("T", 1), ("T", 0), ("X", 1))
        ]
        assert [(w.outcome, w.conversion_id) for w in written] == [
            (Outcome.ACCEPTED, 3),  # a test order with the number of a real one: its own
            (Outcome.DUPLICATE, 1),
            (Outcome.DUPLICATE, 2),
            (Outcome.ACCEPTED, 4),  # the real order after a test that used its number
            (Outcome.DUPLICATE, 3),
        ]
    finally:
        await store.close()
        await admin.execute(f"DROP SCHEMA {name} CASCADE")
        await admin.close()


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
async def test_what_belongs_to_an_archived_row_is_archived_once_migrated(
    engine: str, tmp_path: Path
) -> None:
    """Archived before archiving took what belongs to a row with it: advertiser 1's offer
    and that offer's link, and affiliate 2's link, are archived by the migration, at
    their owner's time; advertiser 3's offer and its link with affiliate 1 are not. Offer
    4, archived itself: its link archived before keeps its time, and its link with
    affiliate 2 takes the offer's (the earlier)."""
    rows = [
        *_ROWS[:4],
        "UPDATE advertisers SET archived_at = 7000 WHERE id = 1",
        "INSERT INTO affiliates (id, name, created_at, updated_at, archived_at)"
        " VALUES (2, 'G', 0, 0, 8000)",
        "INSERT INTO advertisers (id, name, postback_token, created_at, updated_at)"
        " VALUES (3, 'B', 'tok3', 0, 0)",
        "INSERT INTO offers (id, advertiser_id, name, destination_url, payout_type, currency,"
        " created_at, updated_at) VALUES (3, 3, 'P', 'https://y.example/', 'cpa', 'USD', 0, 0)",
        *(
            "INSERT INTO links (id, code, offer_id, affiliate_id, created_at, updated_at)"
            f" VALUES ({i}, 'code{i}', 3, {aff}, 0, 0)"
            for i, aff in ((2, 2), (3, 1))
        ),
        "INSERT INTO offers (id, advertiser_id, name, destination_url, payout_type, currency,"
        " created_at, updated_at, archived_at)"
        " VALUES (4, 3, 'Q', 'https://z.example/', 'cpa', 'USD', 0, 0, 6000)",
        *(
            "INSERT INTO links (id, code, offer_id, affiliate_id, created_at, updated_at,"
            f" archived_at) VALUES ({i}, 'code{i}', 4, {aff}, 0, 0, {at})"
            for i, aff, at in ((4, 1, 5000), (5, 2, "NULL"))
        ),
    ]
    async with _migrated(engine, tmp_path, 22, rows) as store:
        seen = {
            table: [
                (r["id"], r["archived_at"])
                for r in (await store.list_rows(table, {}, None, None, 9, None)).items
            ]
            for table in ("offers", "links")
        }
        assert seen == {
            "offers": [(4, 6000), (3, None), (1, 7000)],
            "links": [(5, 6000), (4, 5000), (3, None), (2, 8000), (1, 7000)],
        }


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
async def test_order_numbers_stored_decomposed_are_composed_once_migrated(
    engine: str, tmp_path: Path
) -> None:
    """Postbacks compare order numbers composed (NFC) since migration 26: one stored
    decomposed (`u` and a combining diaeresis) is composed by it, so its retry is a
    duplicate; an order stored in both forms (counted twice before) keeps both."""
    alone, twice = "Mu\u0308ller-1", "Mu\u0308ller-2"
    conversion = (
        "INSERT INTO conversions (id, refid, offer_id, affiliate_id, advertiser_id, link_id,"
        " sub1, sub2, sub3, sub4, sub5, ordernumber, orderamount, currency, commission,"
        " commission_currency, coupon, geo, commissionid, status, is_test, click_missing,"
        " created_at, clicked_at, flags, screened, recorded_at) VALUES ({id}, 'R{id}', 1, 1, 1,"
        " 1, '', '', '', '', '', '{order}', 500, 'USD', 100, 'USD', '', '', '', 'approved', 0,"
        " 0, 2000, 1000, '', 1, 2000)"
    )
    rows = [
        *_ROWS[:4],
        *(
            conversion.format(id=i, order=order)
            for i, order in ((1, alone), (2, twice), (3, unicodedata.normalize("NFC", twice)))
        ),
    ]
    async with _migrated(engine, tmp_path, 25, rows) as store:
        kept = (await store.list_rows("conversions", {}, None, None, 9, None)).items
        assert sorted((r["id"], r["ordernumber"]) for r in kept) == [
            (1, "M\u00fcller-1"),
            (2, twice),  # both forms were counted: each stays
            (3, "M\u00fcller-2"),
        ]
        written = await store.write_postback(ledger("M\u00fcller-1"), conv(1, 1, "M\u00fcller-1"))
        assert (written.outcome, written.conversion_id) == (Outcome.DUPLICATE, 1)


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
async def test_conversions_from_before_revenue_terms_take_their_offers_once_migrated(
    engine: str, tmp_path: Path
) -> None:
    """Migration 27: a conversion recorded before conversions kept their revenue terms
    takes its offer's of the upgrade (what the rollups valued it at), so that a change
    of terms later moves none of them (in a report file made again, or by a late rate)."""
    offer = (
        "INSERT INTO offers (id, advertiser_id, name, destination_url, payout_type, currency,"
        " created_at, updated_at, revenue_type, revenue_amount, revenue_percent)"
        " VALUES ({id}, 1, 'O{id}', 'https://x.example/', 'cpa', 'USD', 0, 0, '{kind}',"
        " '{amount}', '{percent}')"
    )
    conversion = (
        "INSERT INTO conversions (id, refid, offer_id, affiliate_id, advertiser_id, link_id,"
        " sub1, sub2, sub3, sub4, sub5, ordernumber, orderamount, currency, commission,"
        " commission_currency, coupon, geo, commissionid, status, is_test, click_missing,"
        " created_at, clicked_at, flags, screened, recorded_at) VALUES ({id}, 'R{id}', {id},"
        " 1, 1, 1, '', '', '', '', '', 'O-{id}', 500, 'USD', 100, 'USD', '', '', '', 'approved',"
        " 0, 0, 2000, 1000, '', 1, 2000)"
    )
    rows = [
        *_ROWS[:4],  # offer 1: no revenue terms
        offer.format(id=2, kind="cpa", amount="7.25", percent="0"),
        offer.format(id=3, kind="cps", amount="0", percent="12.5"),
        *(conversion.format(id=i) for i in (1, 2, 3)),
    ]
    async with _migrated(engine, tmp_path, 24, rows) as store:
        kept = (await store.list_rows("conversions", {}, None, None, 9, None)).items
        assert sorted((r["id"], r["revenue_terms"]) for r in kept) == [
            (1, ""),
            (2, "cpa:7.25"),
            (3, "cps:12.5"),
        ]


async def test_a_postgresql_database_not_in_utf8_migrates() -> None:
    """Migration 26 composes order numbers with normalize(), which only a UTF8 database
    has: on another encoding (which holds no characters that compose) it does nothing,
    and a database with conversions reaches the latest version."""
    name = "m_latin1_" + uuid.uuid4().hex[:8]
    admin = await asyncpg.connect(PG_URL)
    await admin.execute(
        f"CREATE DATABASE {name} ENCODING 'LATIN1' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'"
    )
    url = PG_URL.rsplit("/", 1)[0] + f"/{name}"
    store: Store | None = None
    try:
        latin1 = await asyncpg.connect(url)
        await latin1.execute("CREATE SCHEMA old")
        await latin1.close()
        store = await _old_store("postgres", Path("."), "old", 25, _ROWS, url)
        assert await store.migrate() == schema.LATEST
        kept = (await store.list_rows("conversions", {}, None, None, 9, None)).items
        assert sorted(r["ordernumber"] for r in kept) == ["T", "X"]
    finally:
        if store is not None:
            await store.close()
        await admin.execute(f"DROP DATABASE {name}")
        await admin.close()
