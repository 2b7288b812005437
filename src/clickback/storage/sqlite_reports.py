"""Where SQLite's report tables live: the reports file beside the database (see
`sqlite.reports_path`), put in place by the migration, and made again from the raw rows
when it is missing or does not belong with the database."""

from __future__ import annotations

import logging
import sqlite3

from clickback.storage import schema

log = logging.getLogger("clickback.storage")

_REPORT_DDL = (
    "SELECT type, name, sql FROM main.sqlite_master WHERE tbl_name LIKE 'report\\_%' "
    "ESCAPE '\\' AND sql IS NOT NULL ORDER BY type = 'index'"
)


def place_reports(conn: sqlite3.Connection) -> None:
    """Puts the report tables in the reports file (in the migration's transaction):
    those that migrations made in the database are moved, rows and indexes with them (a
    table already there, from a move cut short, is filled again); if the reports file
    has none (it was lost, or the database was copied without it), they are made afresh
    and the rollup job rebuilds them from the raw rows, which it reads from the start."""
    made = conn.execute(_REPORT_DDL).fetchall()
    source = "main"
    if not made:
        if conn.execute(
            "SELECT 1 FROM reports.sqlite_master WHERE name = 'report_state'"
        ).fetchone():
            if not _reports_ahead(conn):
                return  # in place
            log.warning(
                "the reports file has rolled up conversions this database does not hold (a"
                " reports file, or its -wal, of a later copy beside a database restored from"
                " a backup): made afresh, rolled up again from the raw rows"
            )
            for (name,) in conn.execute(
                "SELECT name FROM reports.sqlite_master WHERE type = 'table'"
            ).fetchall():
                conn.execute(f"DROP TABLE reports.{name}")
        log.warning("no report tables: made afresh, rolled up again from the raw rows")
        from clickback.storage.sqlite import with_functions

        fresh = with_functions(sqlite3.connect(":memory:"))  # what the migrations make
        for version, _title, _sql in schema.MIGRATIONS:
            for statement in schema.statements("sqlite", version):
                fresh.execute(statement)
        made = fresh.execute(_REPORT_DDL).fetchall()
        rows = {
            n: fresh.execute(f"SELECT * FROM {n}").fetchall() for k, n, _ in made if k == "table"
        }
        fresh.close()
        source = ""
    there = {r[0] for r in conn.execute("SELECT name FROM reports.sqlite_master")}
    for kind, name, sql in made:
        if name not in there:
            conn.execute(sql.replace(f"{kind.upper()} {name}", f"{kind.upper()} reports.{name}", 1))
        if kind != "table":
            continue
        conn.execute(f"DELETE FROM reports.{name}")
        if source:
            conn.execute(f"INSERT INTO reports.{name} SELECT * FROM main.{name}")
            conn.execute(f"DROP TABLE main.{name}")
        elif rows[name]:
            marks = ", ".join("?" * len(rows[name][0]))
            conn.executemany(f"INSERT INTO reports.{name} VALUES ({marks})", rows[name])


def _reports_ahead(conn: sqlite3.Connection) -> bool:
    """Whether the reports file's rollups are past what the database holds: clicks,
    conversions or status changes after its last (none is ever deleted, and the rollup's
    marks are the last it read, so a reports file of this database's own history is
    never ahead of it). Such rollups count clicks and money the database has not."""
    row = conn.execute(
        "SELECT conversions_after > (SELECT coalesce(max(id), 0) FROM main.conversions)"
        " OR events_after > (SELECT coalesce(max(id), 0) FROM main.conversion_events)"
        " OR clicks_after > (SELECT coalesce(max(refid), '') FROM main.clicks)"
        " FROM reports.report_state WHERE name = 'rollup'"
    ).fetchone()
    return bool(row and row[0])
