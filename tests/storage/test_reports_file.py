"""SQLite keeps the report tables in a file of their own beside the database, so that
the rollup job's transactions (written from a thread) never hold back the group-commit
writer's clicks and postbacks; databases made before are moved over with their rows."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from clickback.storage import schema
from clickback.storage.sqlite import (
    REPORTS_PAGE_SIZE,
    SqliteStore,
    connect,
    reports_path,
    with_functions,
)
from tests.storage.test_group_commit import click_row, setup


def tables(path: str) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()


async def test_a_rollup_transaction_does_not_hold_back_the_writer(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "c.db"))
    await store.migrate()
    try:
        _adv, link = await setup(store)
        rollup = connect(store.path)  # another process's rollup job, mid-apply
        rollup.execute("BEGIN")
        rollup.execute("UPDATE report_state SET updated_at = 1 WHERE name = 'rollup'")
        rollup.execute("INSERT INTO report_gaps (kind, id, noted_at) VALUES ('event', 1, 1)")
        started = time.monotonic()
        await store.write_click(click_row("R1", link))  # commits now, not after the apply
        waited = time.monotonic() - started
        rollup.execute("COMMIT")
        rollup.close()
        rows = await store._fetch("SELECT refid FROM clicks")
        assert [r["refid"] for r in rows] == ["R1"]
        assert waited < 5  # the busy timeout is 10 s: a shared lock would wait it out
        gaps = await store.rollup_gaps(10)
        assert [(g["kind"], g["id"]) for g in gaps] == [("event", 1)]
    finally:
        await store.close()
    assert "report_state" in tables(reports_path(store.path))
    assert not {t for t in tables(store.path) if t.startswith("report_")}


async def test_a_database_with_report_tables_inside_is_moved_with_its_rows(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "old.db")
    # as releases before this one made it
    old = with_functions(sqlite3.connect(path, isolation_level=None))
    old.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)"
    )
    for version, _title, _sql in schema.MIGRATIONS:
        for statement in schema.statements("sqlite", version):
            old.execute(statement)
        old.execute("INSERT INTO schema_migrations VALUES (?, 0)", (version,))
    old.execute("INSERT INTO report_gaps (kind, id, noted_at) VALUES ('conversion', 7, 1)")
    old.execute("UPDATE report_state SET clicks_after = 'R9' WHERE name = 'rollup'")
    old.close()
    moved = [t for t in tables(path) if t.startswith("report_")]
    assert len(moved) > 20

    store = SqliteStore(path)
    await store.migrate()
    try:
        assert [(g["kind"], g["id"]) for g in await store.rollup_gaps(10)] == [("conversion", 7)]
        claim = await store.rollup_claim("me", 10, 5)
        assert claim is not None and claim.clicks_after == "R9"
        indexes = await store._fetch(
            "SELECT name FROM reports.sqlite_master WHERE name = 'report_facts_unvalued'"
        )
        assert indexes  # indexes moved with their tables
    finally:
        await store.close()
    assert set(moved) <= tables(reports_path(path))
    assert not {t for t in tables(path) if t.startswith("report_")}


async def test_a_lost_reports_file_is_made_again_and_rolled_up_from_raw_rows(
    tmp_path: Path,
) -> None:
    from datetime import datetime

    from clickback.domain import admin
    from clickback.domain.reports import run_report
    from clickback.domain.reportspec import build_spec
    from clickback.domain.rollup import RollupJob
    from clickback.domain.timefmt import from_datetime, iso
    from tests.reports_world import build_world

    path = str(tmp_path / "c.db")
    params = {"tz": ["UTC"], "from": ["2026-03-20"], "to": ["2026-04-10"], "group_by": ["link"]}
    store = SqliteStore(path)
    await store.migrate()
    world = await build_world(store, 5)
    await world.clicks(40, datetime.fromisoformat("2026-03-27T00:00:00+00:00"), 24)
    await world.postbacks(0.5)
    await RollupJob(store, settle=0).catch_up()
    asked = from_datetime(datetime.fromisoformat("2026-04-20T00:00:00+00:00"))
    before = await run_report(store, build_spec(params, 0), "USD", now_us=asked)
    # the offers' revenue terms change later: the conversions recorded before keep theirs
    for offer_id in {link["offer_id"] for link in world.links}:
        await admin.update_offer(store, offer_id, {"revenue_type": "cpa", "revenue_amount": "99"})
    await store.close()
    assert before["totals"]["clicks"] > 0 and before["totals"]["revenue"] not in (None, "0.00")
    for suffix in ("", "-wal", "-shm"):  # copied or restored without it
        Path(reports_path(path) + suffix).unlink(missing_ok=True)

    store = SqliteStore(path)
    await store.migrate()
    try:
        empty = await run_report(store, build_spec(params, 0), "USD", now_us=asked)
        assert empty["totals"]["clicks"] == 0
        # and says so: nothing stored is in it yet
        assert empty["complete_until"] == iso(min(at for _, at in world.refids))
        assert [n for n in empty["notes"] if "not in this report yet" in n]
        await RollupJob(store, settle=0).catch_up()
        assert await run_report(store, build_spec(params, 0), "USD", now_us=asked) == before
    finally:
        await store.close()


async def test_a_new_report_file_has_large_pages_and_an_old_one_keeps_its_own(
    tmp_path: Path,
) -> None:
    new = SqliteStore(str(tmp_path / "new.db"))
    await new.migrate()
    await new.close()
    old_path = tmp_path / "old.db"
    made_before = sqlite3.connect(reports_path(str(old_path)))
    made_before.execute("PRAGMA page_size = 4096")
    made_before.execute("PRAGMA journal_mode = WAL")
    made_before.execute("CREATE TABLE kept (x INTEGER)")
    made_before.close()
    old = SqliteStore(str(old_path))
    await old.migrate()
    await old.close()

    def page_size(path: str) -> int:
        conn = sqlite3.connect(reports_path(path))
        try:
            return int(conn.execute("PRAGMA page_size").fetchone()[0])
        finally:
            conn.close()

    assert page_size(str(tmp_path / "new.db")) == REPORTS_PAGE_SIZE == 16_384
    assert page_size(str(old_path)) == 4096
    assert {"kept", "report_clicks_7", "report_state"} <= tables(reports_path(str(old_path)))


@pytest.mark.parametrize("later_sales", [0.0, 1.0], ids=["clicks only", "clicks and sales"])
async def test_a_reports_file_ahead_of_its_database_is_made_again(
    tmp_path: Path, later_sales: float
) -> None:
    """A database restored from a backup beside the reports file of its later life (or
    that file's -wal, left by a crash): the reports counted conversions the database does
    not hold, and showed that money with no word. They are made again from the rows."""
    import shutil
    from datetime import datetime

    from clickback.domain.reports import run_report
    from clickback.domain.reportspec import build_spec
    from clickback.domain.rollup import RollupJob
    from clickback.domain.timefmt import from_datetime
    from clickback.domain.tracker import open_tracker
    from tests.reports_world import build_world

    path = str(tmp_path / "c.db")
    params = {"tz": ["UTC"], "from": ["2026-03-20"], "to": ["2026-04-10"], "group_by": ["link"]}
    asked = from_datetime(datetime.fromisoformat("2026-04-20T00:00:00+00:00"))
    store = SqliteStore(path)
    await store.migrate()
    world = await build_world(store, 5)
    await world.clicks(30, datetime.fromisoformat("2026-03-27T00:00:00+00:00"), 24)
    await world.postbacks(0.5)
    job = RollupJob(store, settle=0)
    await job.catch_up()
    await store.rollup_release(job.owner)  # for the job of its later life
    backed_up = await run_report(store, build_spec(params, 0), "USD", now_us=asked)
    await store.close()
    shutil.copy(path, tmp_path / "backup.db")  # closed: no -wal left
    store = SqliteStore(path)  # its later life: more sales, rolled up
    await store.migrate()
    world.store, world.tracker = store, await open_tracker(store, ("test-secret",))
    world.tracker.clock = world.clock
    await world.clicks(30, datetime.fromisoformat("2026-03-28T00:00:00+00:00"), 24)
    await world.postbacks(later_sales)
    await RollupJob(store, settle=0).catch_up()
    later = await run_report(store, build_spec(params, 0), "USD", now_us=asked)
    assert later["totals"]["clicks"] > backed_up["totals"]["clicks"] > 0
    assert (later["totals"]["conversions"] > backed_up["totals"]["conversions"]) == bool(
        later_sales
    )
    await store.close()
    shutil.copy(tmp_path / "backup.db", path)  # restored, the later reports file beside it

    store = SqliteStore(path)
    await store.migrate()
    try:
        await RollupJob(store, settle=0).catch_up()
        assert await run_report(store, build_spec(params, 0), "USD", now_us=asked) == backed_up
    finally:
        await store.close()
