"""Data for the hot-path benchmark: a tracking link, RefIDs, synthetic clicks, counts.

- `create_link` sets up an advertiser, offer, affiliate and link with the `clickback`
  command, as a user would, and returns the link's code;
- `collect_refids` follows the link for real and keeps the RefIDs of the redirects;
- `add_clicks` bulk-inserts synthetic click rows straight into a SQLite database
  (valid signed RefIDs, time-ordered), for the data-growth check;
- `ledger_outcomes` and `click_count` read what the server stored during a run;
- `recreate_pg_database` gives each benchmark run a fresh PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg
import httpx
from procs import run_quiet
from servers import BIN, LANDING

_LINK = re.compile(r"link \d+ created: \S*/c/(\S+)")
_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)


def _cli(db_url: str, *args: str) -> str:
    return run_quiet([str(BIN / "clickback"), *args, "--db", db_url])


def create_link(db_url: str) -> str:
    """An advertiser, a CPS offer landing on `LANDING`, an affiliate and a link: its code."""
    _cli(db_url, "advertiser", "create", "Bench Shop")
    _cli(
        db_url,
        "offer",
        "create",
        "--advertiser",
        "1",
        "--name",
        "Bench offer",
        "--url",
        LANDING,
        "--payout-type",
        "cps",
        "--payout-percent",
        "8",
        "--currency",
        "USD",
    )
    _cli(db_url, "affiliate", "create", "Bench Publisher")
    out = _cli(db_url, "link", "create", "--offer", "1", "--affiliate", "1")
    found = _LINK.search(out)
    if not found:
        raise RuntimeError(f"no link code in `clickback link create` output: {out!r}")
    return found.group(1)


def collect_refids(port: int, code: str, count: int) -> list[str]:
    """Follow the tracking link `count` times; the RefIDs of the 302s' Locations."""
    refids = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=False) as client:
        for i in range(count):
            r = client.get(
                f"/c/{code}",
                params={"sub1": "collect", "sub2": f"v{i % 17}", "sub3": str(i)},
                headers={"user-agent": _UA},
            )
            if r.status_code != 302:
                raise RuntimeError(f"tracking link answered {r.status_code}: {r.text[:200]}")
            refids.append(parse_qs(urlsplit(r.headers["location"]).query)["refid"][0])
    return refids


def sqlite_path(db_url: str) -> str:
    return db_url.removeprefix("sqlite:///")


def sqlite_connect(db_url: str, **kwargs: Any) -> sqlite3.Connection:
    """The database with its report tables' file attached, as the server opens it (a
    revision that keeps them in the database finds them there: unqualified names look in
    the database first)."""
    path = sqlite_path(db_url)
    conn = sqlite3.connect(path, **kwargs)
    conn.execute("ATTACH DATABASE ? AS reports", (f"{path}-reports",))
    return conn


def click_count(db_url: str) -> int:
    if db_url.startswith("sqlite:"):
        with sqlite_connect(db_url) as conn:
            return int(conn.execute("SELECT count(*) FROM clicks").fetchone()[0])
    return int(asyncio.run(_pg_value(db_url, "SELECT count(*) FROM clicks")))


def jobs_state(db_url: str) -> dict[str, tuple[int | None, bool]]:
    """Per job and kind of row (fraud screening of clicks, report rollups of clicks and
    of conversions): when the newest row it has handled was made (microseconds; None
    before its first) and whether it has handled every stored row."""
    sql = (
        "SELECT (SELECT c.created_at FROM jobs j JOIN clicks c ON c.refid = j.watermark "
        "WHERE j.name = 'screening'), "
        "coalesce((SELECT watermark FROM jobs WHERE name = 'screening') "
        ">= (SELECT max(refid) FROM clicks), true), "
        "(SELECT c.created_at FROM report_state r JOIN clicks c ON c.refid = r.clicks_after "
        "WHERE r.name = 'rollup'), "
        "coalesce((SELECT clicks_after FROM report_state WHERE name = 'rollup') "
        ">= (SELECT max(refid) FROM clicks), true), "
        "(SELECT c.created_at FROM report_state r JOIN conversions c "
        "ON c.id = r.conversions_after WHERE r.name = 'rollup'), "
        "(SELECT conversions_after FROM report_state WHERE name = 'rollup') "
        ">= (SELECT coalesce(max(id), 0) FROM conversions)"
    )
    if db_url.startswith("sqlite:"):
        with sqlite_connect(db_url) as conn:
            row = conn.execute(sql).fetchone()
    else:
        row = asyncio.run(_pg_rows(db_url, sql))[0]
    return {
        "screening": (row[0], bool(row[1])),
        "rollup clicks": (row[2], bool(row[3])),
        "rollup conversions": (row[4], bool(row[5])),
    }


def ledger_outcomes(db_url: str, since_us: int, until_us: int) -> dict[str, int]:
    """Postbacks the server recorded between two times, by outcome."""
    sql = (
        "SELECT outcome, count(*) FROM postbacks WHERE received_at >= {a} AND received_at < {b} "
        "GROUP BY outcome"
    )
    if db_url.startswith("sqlite:"):
        with sqlite_connect(db_url) as conn:
            rows = conn.execute(sql.format(a="?", b="?"), (since_us, until_us)).fetchall()
    else:
        rows = asyncio.run(_pg_rows(db_url, sql.format(a="$1", b="$2"), since_us, until_us))
    return {str(k): int(v) for k, v in sorted(rows)}


async def _pg_rows(db_url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(db_url)
    try:
        return [tuple(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


async def _pg_value(db_url: str, sql: str) -> Any:
    rows = await _pg_rows(db_url, sql)
    return rows[0][0]


def pg_version(db_url: str) -> str:
    return str(asyncio.run(_pg_value(db_url, "SHOW server_version")))


def pg_database(db_url: str) -> str:
    """The database a PostgreSQL URL names."""
    return urlsplit(db_url).path.lstrip("/")


def recreate_pg_database(db_url: str, settings: dict[str, str] | None = None) -> None:
    """Drop and create the database named in `db_url` (connecting to `postgres`), with
    database-level `settings` (ALTER DATABASE ... SET) for every session on it."""
    parts = urlsplit(db_url)
    name = pg_database(db_url)
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise ValueError(f"refusing to recreate database {name!r}: use a plain lower-case name")
    admin_url = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))

    async def go() -> None:
        conn = await asyncpg.connect(admin_url, timeout=5)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await conn.execute(f"CREATE DATABASE {name}")
            for key, value in (settings or {}).items():
                if not re.fullmatch(r"[a-z_.]+", key):
                    raise ValueError(f"not a setting name: {key!r}")
                quoted = value.replace("'", "''")
                await conn.execute(f"ALTER DATABASE {name} SET {key} = '{quoted}'")
        finally:
            await conn.close()

    asyncio.run(go())


def drop_pg_database(db_url: str) -> None:
    parts = urlsplit(db_url)
    name = pg_database(db_url)
    admin_url = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))

    async def go() -> None:
        conn = await asyncpg.connect(admin_url, timeout=5)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await conn.close()

    asyncio.run(go())


def add_clicks(
    db_url: str,
    count: int,
    first_ms: int,
    last_ms: int,
    *,
    sample: int = 0,
    chunk: int = 200_000,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """Insert `count` synthetic clicks on link 1, created evenly from `first_ms` to
    `last_ms`, straight into a SQLite database (no server may be writing to it).

    Their RefIDs are signed with the database's own key, so postbacks on them are
    accepted. Returns `sample` of those RefIDs, spread evenly over the rows.
    """
    # imported here: with --rev, the measured revision's code is put on sys.path first
    from clickback.domain.ports import CLICK_COLUMNS
    from clickback.domain.refid import RefIdCodec

    conn = sqlite_connect(db_url, isolation_level=None)
    try:
        secret = conn.execute("SELECT value FROM meta WHERE key = 'refid_secret'").fetchone()
        if secret is None:
            raise RuntimeError("no refid_secret in the database: start the server on it first")
        link = conn.execute("SELECT id, offer_id, affiliate_id FROM links WHERE id = 1").fetchone()
        issue = RefIdCodec([secret[0]]).issue
        link_id, offer_id, affiliate_id = link
        # a bulk load of throw-away data: durability traded for speed
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -262144")
        marks = ", ".join("?" * len(CLICK_COLUMNS))
        sql = f"INSERT INTO clicks ({', '.join(CLICK_COLUMNS)}) VALUES ({marks})"
        span = max(1, last_ms - first_ms)
        every = max(1, count // sample) if sample else 0
        picked: list[str] = []
        sources = ("fb", "google", "tiktok", "native", "email", "push feed")
        done = 0
        while done < count:
            n = min(chunk, count - done)
            rows = []
            for i in range(done, done + n):
                ms = first_ms + i * span // count
                refid = issue(link_id, ms)
                if every and i % every == 0 and len(picked) < sample:
                    picked.append(refid)
                rows.append(
                    (
                        refid,
                        link_id,
                        offer_id,
                        affiliate_id,
                        sources[i % 6],
                        f"cr{i % 9973:04d}",
                        f"{i * 2654435761 % 2**32:08x}",
                        "spring_sale",
                        "",
                        f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
                        _UA,
                        "https://news.example.net/2024/05/article-about-things",
                        ms * 1000 + i % 1000,
                        0,
                    )
                )
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, rows)
            conn.execute("COMMIT")
            done += n
            if progress:
                progress(n)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    # written without syncing: put it on disk now, or the server's first fsync would
    # (for minutes, with gigabytes written) and its start would seem to hang
    fd = os.open(sqlite_path(db_url), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return picked


def days_ago_ms(days: float) -> int:
    return int((time.time() - days * 86_400) * 1000)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines))
    return path
