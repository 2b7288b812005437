"""What PostgreSQL's click spreading statement (the rollup's apply of clicks over the
report levels, `storage.reports.pg_spread_sql`) costs a key, as built and as it would
with another way to send its keys or another collation, without HTTP or the rollup job.

Two databases (`<name>_a`, `<name>_b`, dropped and created, dropped at the end) get the
schema; then batches of click keys (an hour's, varied sub-IDs and countries: every key a
new row at the full level, as with a new visitor a click) are applied to each in turn,
alternated, each batch in a transaction of its own, as the rollup applies them. Printed:
the wall clock a key of the statement, medians over the batches after the first two.

    python bench/pg_spread.py --compare arrays      # jsonb (built) against typed arrays
    python bench/pg_spread.py --compare collation   # the server's default collation against C
    python bench/pg_spread.py --compare icu         # ICU's en-US against C

`arrays`: the keys as one `jsonb` parameter read by `jsonb_array_elements` (as built)
against one typed array a column read by `unnest` (as the group commit sends clicks).
`collation`: both send jsonb; database B is created with `LC_COLLATE 'C'`, so that the
report tables' text keys compare as bytes; A with the server's default (C.UTF-8 here).
`icu`: the same with A in ICU's `en-US`, a collation many servers are set up with.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from clickback.domain.rollup_delta import CLICK_FIELDS
from clickback.storage import reports
from clickback.storage.postgres import PostgresStore

COUNTRIES = ["US", "DE", "FR", "GB", "BR", "IN", "JP", "CA", "AU", "ES"]
COUNTRIES += [f"X{i}" for i in range(200)]  # a key's country: spread as by many visitors
HOUR = 500_000
C = " TEMPLATE template0 LC_COLLATE 'C'"
ICU = " TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
LOCALES = {  # how each side's database is created, beyond the server's defaults
    "arrays": {"a": "", "b": ""},
    "collation": {"a": "", "b": C},
    "icu": {"a": ICU, "b": C},
}


def click_keys(n: int, hour: int, rnd: random.Random) -> list[tuple[object, ...]]:
    """`n` click keys of one hour with their sums, in `CLICK_FIELDS` + sums order."""
    return [
        (
            hour,
            1,
            f"s{rnd.randrange(2048)}",
            f"t{rnd.randrange(50)}",
            f"u{rnd.randrange(9)}",
            "",
            "",
            rnd.choice(COUNTRIES),
            "desktop",
            "Windows",
            "Chrome",
            "",
            1,
            1,
            1,
            1,
            1,
            0,
        )
        for _ in range(n)
    ]


def arrays_sql() -> str:
    """The spreading statement with its keys as one typed array a column."""
    names = (*CLICK_FIELDS, *reports.CLICK_SUMS)
    typed = ", ".join(
        f"${i + 1}::{'text' if n in reports.TEXT_FIELDS else 'bigint'}[]"
        for i, n in enumerate(names)
    )
    built = reports.PG_SPREAD["clicks"].replace("?", "$1")
    jsonb = reports.pg_rows(names).replace("?", "$1")
    return built.replace(jsonb, f"SELECT * FROM unnest({typed}) AS r({', '.join(names)})")


async def run(url: str, compare: str, batches: int, keys: int) -> None:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = await asyncpg.connect(urlunsplit((*parts[:2], "/postgres", parts.query, "")))
    dbs = {"a": f"{name}_a", "b": f"{name}_b"}
    conns: dict[str, asyncpg.Connection] = {}
    try:
        for side, db in dbs.items():
            await admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            await admin.execute(f"CREATE DATABASE {db}{LOCALES[compare][side]}")
            db_url = urlunsplit((*parts[:2], f"/{db}", parts.query, ""))
            store = PostgresStore(db_url)
            await store.open()
            await store.migrate()
            await store.close()
            conns[side] = await asyncpg.connect(db_url)
        built = reports.PG_SPREAD["clicks"].replace("?", "$1")
        other = arrays_sql() if compare == "arrays" else built
        rnd = random.Random(1)
        took: dict[str, list[float]] = {"a": [], "b": []}
        for i in range(batches):
            batch = click_keys(keys, HOUR + i // 4, rnd)
            for side in ("a", "b") if i % 2 == 0 else ("b", "a"):
                conn = conns[side]
                if side == "b" and compare == "arrays":
                    args: list[object] = [list(column) for column in zip(*batch, strict=True)]
                    sql = other
                else:
                    args, sql = [reports.pg_param(batch)], built
                started = time.perf_counter()
                async with conn.transaction():
                    await conn.execute(sql, *args)
                took[side].append((time.perf_counter() - started) / keys * 1e6)
        labels = {
            "arrays": ("jsonb", "typed arrays"),
            "collation": ("default", "C"),
            "icu": ("ICU en-US", "C"),
        }[compare]
        for side, label in zip(("a", "b"), labels, strict=True):
            runs = took[side][2:]
            shown = ", ".join(f"{x:.1f}" for x in runs)
            print(f"{label:>13}: median {statistics.median(runs):.1f} µs a key ({shown})")
        for table in ("report_clicks_7", "report_clicks_6", "report_clicks_d1"):
            a, b = [
                sorted(map(tuple, await conns[s].fetch(f"SELECT * FROM {table}"))) for s in "ab"
            ]
            same = a == b
            print(f"{table}: {len(a)} rows, the same in both: {same}")
    finally:
        for conn in conns.values():
            await conn.close()
        for db in dbs.values():
            await admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", choices=("arrays", "collation", "icu"), default="arrays")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/clickback_spread")
    parser.add_argument("--batches", type=int, default=16)
    parser.add_argument("--keys", type=int, default=5000, help="keys a batch")
    args = parser.parse_args()
    asyncio.run(run(args.pg, args.compare, args.batches, args.keys))


if __name__ == "__main__":
    main()
