"""`clickback backup`: a SQLite database copied while a server writes to it under load is
whole (every click answered and postback accepted before it began), checked, its report
file of the same moment, and usable as a database; PostgreSQL is pointed to pg_dump."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import orjson
import pytest

from clickback.storage import sqlite_backup
from clickback.storage.sqlite import connect
from tests.cli.conftest import CLICKBACK, Server, cli
from tests.cli.test_kill9 import demo_load, load, stored
from tests.conftest import PG_URL


def _backup(dest: Path, db: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLICKBACK, "backup", str(dest), "--db", db], capture_output=True, text=True, timeout=120
    )


def test_a_backup_under_load_holds_what_was_answered_and_its_reports_agree(
    sqlite_db: str, tmp_path: Path
) -> None:
    server = Server(sqlite_db, tmp_path)
    dest = tmp_path / "copy.db"
    clicks: list[str] = []
    accepted: list[str] = []
    stop = threading.Event()
    loader: threading.Thread | None = None
    try:
        server.start("--demo")
        loader = demo_load(server, stop, clicks, accepted)
        clicked_before, accepted_before = list(clicks), list(accepted)
        out = _backup(dest, sqlite_db)  # while the load goes on
        during = len(accepted) - len(accepted_before)
    finally:
        stop.set()
        if loader is not None:
            loader.join(30)
        server.stop()
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(accepted_before) >= 200 and during > 0, "the load did not go on during the copy"
    # (a long path may be folded anywhere)
    assert f"{dest}-reports" in "".join(out.stdout.split()) and "checked" in out.stdout

    url = f"sqlite:///{dest}"
    kept_clicks, orders = stored(url)
    assert set(clicked_before) <= kept_clicks, "a click answered before the backup is missing"
    assert set(accepted_before) <= set(orders), "a conversion accepted before it is missing"
    assert len(orders) == len(set(orders))
    for path in (dest, Path(f"{dest}-reports")):
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    # the copy's reports are of the same moment as its rows: folding in what they had not
    # yet makes them add up to its rows exactly, never more
    _reports_reach(url, len(kept_clicks), len(orders))


def _reports_reach(url: str, clicks: int, conversions: int) -> None:
    """`clickback rollup` on the copy until its reports count its rows (the newest
    settle a few seconds first), never more than them."""
    deadline = time.monotonic() + 20
    while True:
        cli("rollup", db=url)
        totals = orjson.loads(cli("report", "--format", "json", db=url))["totals"]
        seen = (totals["clicks"], totals["conversions"])
        assert seen[0] <= clicks and seen[1] <= conversions, seen
        if seen == (clicks, conversions) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert seen == (clicks, conversions)


def test_a_backup_refuses_to_overwrite_and_says_what_postgresql_uses(
    sqlite_db: str, tmp_path: Path
) -> None:
    cli("migrate", db=sqlite_db)
    dest = tmp_path / "copy.db"
    assert _backup(dest, sqlite_db).returncode == 0
    before = dest.read_bytes()
    again = _backup(dest, sqlite_db)
    assert again.returncode == 2 and "exists" in again.stdout, again.stdout + again.stderr
    assert dest.read_bytes() == before
    missing = _backup(tmp_path / "other.db", f"sqlite:///{tmp_path / 'none.db'}")
    assert missing.returncode == 2 and "no database at" in missing.stdout
    assert not (tmp_path / "none.db").exists() and not (tmp_path / "other.db").exists()
    pg = _backup(tmp_path / "pg.db", PG_URL)
    text = " ".join(pg.stdout.split())
    assert pg.returncode == 2 and "pg_dump --format=custom" in text, text
    # a database in a schema of its own: the command names it (pg_dump knows no ?schema=)
    pg = _backup(tmp_path / "pg.db", f"{PG_URL}?schema=shop_one")
    text = " ".join(pg.stdout.split())
    assert "--schema shop_one postgresql://" in text and "?schema" not in text, text
    assert "Traceback" not in pg.stdout + pg.stderr


def test_a_file_that_is_no_database_is_named_by_backup_and_every_command(
    sqlite_db: str, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database, " * 400)
    got = _backup(tmp_path / "copy.db", f"sqlite:///{junk}")
    text = "".join(got.stdout.split())  # a long path may be folded anywhere
    assert got.returncode == 2 and f"{junk}isnotaSQLitedatabase" in text, got.stdout
    assert "Traceback" not in got.stdout + got.stderr
    listed = cli("offer", "list", db=f"sqlite:///{junk}", exit_code=2, columns=300)
    assert f"{junk} is not a SQLite database that can be read: file is not a database" in listed
    cli("migrate", db=sqlite_db)  # a whole database whose report file is junk
    reports = Path(sqlite_db.removeprefix("sqlite:///") + "-reports")
    reports.write_bytes(b"junk " * 1000)
    got = _backup(tmp_path / "copy2.db", sqlite_db)
    text = "".join(got.stdout.split())
    assert got.returncode == 2 and f"{reports}isnotaSQLitedatabase" in text, got.stdout
    assert not list(tmp_path.glob("copy*")), list(tmp_path.glob("copy*"))
    listed = cli("offer", "list", db=sqlite_db, exit_code=2, columns=300)
    assert f"{reports} is not a SQLite database" in listed, listed
    assert "it holds only the reports, made again from the database's rows: move it" in listed


def test_the_report_file_is_never_copied_later_than_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row and its rollup committed together between the two files' snapshots: the
    copy holds the row without its rollup (folded again later), never the rollup
    without its row."""
    src = str(tmp_path / "live.db")
    live = connect(src)
    for statement in (
        "PRAGMA journal_mode = WAL",
        "PRAGMA reports.journal_mode = WAL",
        "CREATE TABLE main.rows (id INTEGER PRIMARY KEY)",
        "CREATE TABLE reports.folded (n INTEGER)",
        "INSERT INTO reports.folded VALUES (0)",
    ):
        live.execute(statement)
    writer = connect(src)
    reads: list[str] = []

    opened = sqlite_backup.source

    def traced(path: str) -> sqlite3.Connection:
        conn = opened(path)

        def between(sql: str) -> None:
            if "sqlite_master" in sql:
                reads.append(sql)
            if len(reads) == 2 and "sqlite_master" in sql:  # the first file's taken
                writer.execute("BEGIN IMMEDIATE")
                writer.execute("INSERT INTO rows VALUES (1)")
                writer.execute("UPDATE reports.folded SET n = n + 1")
                writer.execute("COMMIT")

        conn.set_trace_callback(between)
        return conn

    monkeypatch.setattr(sqlite_backup, "source", traced)
    sqlite_backup.backup_files(src, str(tmp_path / "copy.db"))
    copy = connect(str(tmp_path / "copy.db"))
    rows = copy.execute("SELECT count(*) FROM rows").fetchone()[0]
    folded = copy.execute("SELECT n FROM reports.folded").fetchone()[0]
    assert (rows, folded) == (1, 0), reads
    for conn in (live, writer, copy):
        conn.close()


def test_a_backup_killed_mid_copy_leaves_nothing_under_its_name(
    sqlite_db: str, tmp_path: Path
) -> None:
    """Killed (SIGKILL) while it copies, a backup leaves no file under the backup's names
    (only its `.partial-PID` files), so a later run to the same name goes ahead."""
    cli("migrate", db=sqlite_db)
    with sqlite3.connect(sqlite_db.removeprefix("sqlite:///")) as conn:  # a copy of ~1 s
        conn.execute("CREATE TABLE pad (b BLOB)")
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 24000)"
            " INSERT INTO pad SELECT randomblob(8000) FROM n"
        )
    dest = tmp_path / "copy.db"
    proc = subprocess.Popen([CLICKBACK, "backup", str(dest), "--db", sqlite_db])
    try:
        deadline = time.monotonic() + 60
        while not (dest.exists() or list(tmp_path.glob("copy.db*.partial-*"))):
            assert proc.poll() is None and time.monotonic() < deadline, "no copy begun"
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, "the copy ended before it was killed"
    assert not dest.exists() and not Path(f"{dest}-reports").exists()
    assert list(tmp_path.glob("copy.db*.partial-*"))
    again = _backup(dest, sqlite_db)
    assert again.returncode == 0, again.stdout + again.stderr
    with sqlite3.connect(dest) as conn:
        assert conn.execute("SELECT count(*) FROM pad").fetchone()[0] == 24000


def test_a_backup_leaves_the_database_as_it_was(sqlite_db: str, tmp_path: Path) -> None:
    """The live files are only read: a database in rollback mode (no WAL) with no report
    file keeps its mode and gets no report file; the copy is its database alone, and the
    reports a server makes for it anew add up to its rows."""
    path = sqlite_db.removeprefix("sqlite:///")
    server = Server(sqlite_db, tmp_path)
    try:
        server.start("--demo")
        code = re.search(r"/c/([^?\s]+)", server.log.read_text())
        assert code
        stop = threading.Event()
        threading.Timer(1.0, stop.set).start()
        asyncio.run(load(server.base, code.group(1), stop, [], []))
    finally:
        server.stop()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode = DELETE")
    Path(f"{path}-reports").unlink()
    dest = tmp_path / "copy.db"
    out = _backup(dest, sqlite_db)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no report file" in out.stdout and not Path(f"{dest}-reports").exists()
    assert not Path(f"{path}-reports").exists()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    url = f"sqlite:///{dest}"
    kept_clicks, orders = stored(url)
    assert kept_clicks and orders
    _reports_reach(url, len(kept_clicks), len(orders))


def test_a_backup_to_a_file_system_without_hard_links_is_renamed_into_place(
    sqlite_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the destination cannot hard-link (FAT, some network mounts: EPERM), the
    checked copy is renamed to its name instead, once the name is seen free."""
    cli("migrate", db=sqlite_db)

    def no_links(src: str, dst: str) -> None:
        raise PermissionError(1, "Operation not permitted", src)

    monkeypatch.setattr(sqlite_backup.os, "link", no_links)
    dest = tmp_path / "fat" / "copy.db"
    dest.parent.mkdir()
    made = sqlite_backup.backup_files(sqlite_db.removeprefix("sqlite:///"), str(dest))
    assert [Path(p) for p, _ in made] == [dest, Path(f"{dest}-reports")]
    assert sorted(p.name for p in dest.parent.iterdir()) == ["copy.db", "copy.db-reports"]
    with sqlite3.connect(dest) as conn:
        assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"


def test_a_database_in_a_directory_that_is_not_there_is_named_with_the_fix(
    tmp_path: Path,
) -> None:
    # `sqlite:///var/db/x.db` is relative: SQLite said only "unable to open database file"
    out = subprocess.run(
        [CLICKBACK, "offer", "list", "--db", "sqlite:///nowhere/x.db"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "400"},
    )
    said = " ".join(out.stdout.split())
    assert out.returncode == 2, said
    assert f"cannot open the SQLite database {tmp_path}/nowhere/x.db" in said, said
    assert f"the directory {tmp_path}/nowhere does not exist" in said, said
    assert f"relative to the working directory, {tmp_path};" in said, said
    assert "four slashes: sqlite:////nowhere/x.db for /nowhere/x.db" in said, said
    absolute = cli("offer", "list", db=f"sqlite:///{tmp_path}/gone/x.db", exit_code=2, columns=400)
    assert f"the directory {tmp_path}/gone does not exist" in absolute, absolute
    assert "four slashes" not in absolute, absolute
    (tmp_path / "folder.db").mkdir()
    folder = cli("offer", "list", db=f"sqlite:///{tmp_path}/folder.db", exit_code=2, columns=400)
    assert "that is a directory, not a file" in folder, folder


def test_a_damaged_reports_file_is_said_once_a_minute_with_what_to_do(
    sqlite_db: str, tmp_path: Path
) -> None:
    """Pages of the reports file damaged: every rollup pass failed, each with a
    traceback, and nothing said what to do. Now one line says which file and how to
    have it made again; done so, the reports hold every click."""
    import httpx

    server = Server(sqlite_db, tmp_path)
    reports = Path(sqlite_db.removeprefix("sqlite:///") + "-reports")
    server.start("--demo")
    server.stop()
    with sqlite3.connect(reports) as conn:
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        [root] = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'report_clicks_7'"
        ).fetchone()
    with reports.open("r+b") as f:  # the table's root page, garbled
        f.seek((root - 1) * size)
        f.write(b"\xff" * 64)
    server.start()
    try:
        [link] = re.findall(r"Tracking link: (\S+)", server.log.read_text())[-1:]
        for i in range(5):
            r = httpx.get(f"{link}&sub2=s{i}", follow_redirects=False, timeout=10)
            assert r.status_code == 302, r.text
        said = "rollup tick failed, and fails until it is dealt with"
        deadline = time.monotonic() + 20
        while said not in server.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)  # passes go on failing, once a second
        log = server.log.read_text()
    finally:
        server.stop()
    text = " ".join(log.split())
    assert text.count(said) == 1, log[-3000:]
    assert f"it is the reports file {reports}" in text and "move that file away" in text
    assert "Traceback" not in log, log[-3000:]
    for suffix in ("", "-wal", "-shm"):  # as it says
        moved = Path(f"{reports}{suffix}")
        if moved.exists():
            moved.rename(tmp_path / f"damaged{suffix}")
    _reports_reach(sqlite_db, 5, 0)
