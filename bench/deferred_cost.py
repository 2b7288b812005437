"""What the deferred work of a click and a conversion costs: the fraud screening and the
report rollups, without HTTP, as CPU time per row.

Each run makes a fresh SQLite database, sends clicks and then postbacks through the real
tracker (in-process, group-committed as when serving; the clicks have varied sub-IDs
and each comes from another public address, as in `bench/lua/click.lua`, so that their
countries vary as in served traffic), then times, one job at a time and each until it has caught
up: the screening of the clicks, their rollup, the screening of the conversions, their
rollup. The process is pinned to one core, so the threads these jobs use (the report
file's writer, SQLite's readers) are counted on it, as when serving; the CPU time is the
process's, all threads.

Several source trees can be compared in one invocation, alternated (A B A B ...), so that
a machine that drifts moves both alike; each run is a process of its own:

    python bench/deferred_cost.py                          # the working tree
    python bench/deferred_cost.py --rev HEAD --rev worktree --rounds 5
    python bench/deferred_cost.py --pg postgresql://postgres@127.0.0.1:5432/clickback_deferred

With `--pg` the runs use that PostgreSQL database instead (dropped and created for each
run, dropped at the end); the CPU of PostgreSQL's processes for it is then added to the
process's (`all threads`), and `--statements` times every statement the store sends
(reads too) by the wall clock, from its sending to its answer (on one connection that
nothing else uses meanwhile, about the time PostgreSQL spent on it).

It prints the medians per tree: µs of CPU per row, per job and kind of row, of all the
process's threads and of the event loop's thread alone (what holds up requests), and the
wall-clock µs per row (how fast a job catches up when nothing else runs).
`--statements` adds, per job, the SQL statements the SQLite store ran in its guarded
write transactions (the report file's rollup writes, the screening's), each with the
CPU time of the thread that ran it, per row of the job (what each statement costs a click
or a conversion).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fixtures import create_link, drop_pg_database, pg_database, recreate_pg_database
from procs import cpu_seconds, pg_pids
from servers import add_revs_option, source_trees

PHASES = ("screen clicks", "rollup clicks", "screen conversions", "rollup conversions")
UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
SOURCES = ("fb", "google", "tiktok", "native", "email", "push feed")


class StatementTimes:
    """The CPU time of each statement the SQLite store runs through `sqlite_guarded` (the
    report file's writes, the screening's), by the thread that ran it, per job."""

    def __init__(self) -> None:
        self.ns: collections.Counter[tuple[str, str]] = collections.Counter()
        self.job = ""

    def install_pg(self) -> None:
        """Wraps asyncpg's statement calls: each timed by the wall clock."""
        from asyncpg.connection import Connection

        times = self
        for name in ("execute", "executemany", "fetch", "fetchrow", "fetchval"):
            plain = getattr(Connection, name)

            async def timed(conn: Any, sql: str, *args: Any, _plain: Any = plain, **kw: Any) -> Any:
                started = time.perf_counter_ns()
                try:
                    return await _plain(conn, sql, *args, **kw)
                finally:
                    times.add(sql, time.perf_counter_ns() - started)

            setattr(Connection, name, timed)

    def install(self) -> bool:
        """Wraps the store's guarded writes; False for a revision that has none."""
        from clickback.storage import primitives
        from clickback.storage import sqlite as sqlite_store

        plain = getattr(sqlite_store, "sqlite_guarded", None)
        if plain is None:
            return False
        times = self

        class Timed:
            def __init__(self, conn: Any):
                self._conn = conn

            def __getattr__(self, name: str) -> Any:
                return getattr(self._conn, name)

            def execute(self, sql: str, *args: Any) -> Any:
                return times.timed(sql, self._conn.execute, sql, *args)

            def executemany(self, sql: str, rows: Any) -> Any:
                return times.timed(sql, self._conn.executemany, sql, rows)

        def guarded(conn: Any, guard: Any, steps: Any) -> Any:
            return plain(Timed(conn), guard, steps)

        sqlite_store.sqlite_guarded = guarded  # type: ignore[attr-defined]
        primitives.sqlite_guarded = guarded  # type: ignore[attr-defined]
        return True

    def timed(self, sql: str, call: Any, *args: Any) -> Any:
        started = time.thread_time_ns()
        try:
            return call(*args)
        finally:
            self.add(sql, time.thread_time_ns() - started)

    def add(self, sql: str, ns: int) -> None:
        self.ns[(self.job, " ".join(sql.split())[:72])] += ns

    def per_row(self, rows: dict[str, int]) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = collections.defaultdict(dict)
        for (job, name), ns in self.ns.items():
            if job in rows:  # statements outside the timed jobs (set-up) are not shown
                out[job][name] = ns / 1000 / rows[job]
        return out


class PastClock:
    """The tracker's clock: an hour ago, a millisecond more each call (the screening
    takes clicks once two seconds old)."""

    def __init__(self) -> None:
        self.now = time.time_ns() // 1000 - 3_600_000_000

    def now_us(self) -> int:
        self.now += 1000
        return self.now


async def child(
    clicks: int, conversions: int, seed: int, statements: bool = False, pg: str = ""
) -> dict[str, Any]:
    from clickback.domain import fraud
    from clickback.domain.rollup import RollupJob, shared_enricher
    from clickback.domain.screener import Screener
    from clickback.domain.tracker import open_tracker
    from clickback.storage.postgres import PostgresStore
    from clickback.storage.sqlite import SqliteStore

    rng = random.Random(seed)
    times = StatementTimes()
    if statements and pg:
        times.install_pg()
    elif statements and not times.install():
        print("this revision has no sqlite_guarded: no statement times", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="clickback-deferred-") as tmp:
        path = Path(tmp) / "bench.db"
        store: Any
        if pg:
            create_link(pg)  # migrates; with the `clickback` command
            store = await PostgresStore(pg).open()
            database = pg_database(pg)
        else:
            create_link(f"sqlite:///{path}")
            store = SqliteStore(str(path))

        def helpers_cpu() -> float:  # PostgreSQL's processes for the database
            return sum(cpu_seconds(pid) for pid in pg_pids(database)) if pg else 0.0

        link_id = 1
        link = await store.get_row("links", link_id)
        assert link is not None
        tracker = await open_tracker(store)
        tracker.clock = PastClock()
        await tracker.catalog.reload()

        async def click(i: int) -> str:
            query = (
                f"sub1={rng.choice(SOURCES).replace(' ', '%20')}&sub2=cr{rng.randrange(10_000):04d}"
                f"&sub3={rng.randrange(2**31):08x}&sub4=spring_sale"
            )
            first = rng.randrange(11, 223)  # a public-looking address, as click.lua sends
            first += first >= 127
            ip = f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            location = await tracker.click(link["code"], query, ip, UA, "")
            assert location is not None
            return location.rsplit("refid=", 1)[1].split("&", 1)[0]

        refids: list[str] = []
        for start in range(0, clicks, 256):  # concurrent, so batched like served clicks
            refids += await asyncio.gather(
                *(click(i) for i in range(start, min(clicks, start + 256)))
            )

        enricher = shared_enricher()
        limits = fraud.Thresholds(10.0, 20, 5)
        screener = Screener(
            store,
            fraud.ClickScreen(lambda ua: enricher.agent(ua).bot, fraud.Networks([]), limits),
            fraud.ConversionScreen(enricher.country, limits),
            tracker.catalog.delivery_state,
            batch=250,
        )
        rollup = RollupJob(store, settle=0, batch=250, coalesce=1.0, after_screening=True)
        out: dict[str, Any] = {}
        rows_of: dict[str, int] = {}

        async def timed(name: str, rows: int, work: object) -> None:
            times.job, rows_of[name] = name, rows
            cpu, main, helpers = time.process_time(), time.thread_time(), helpers_cpu()
            wall = time.perf_counter()
            await work  # type: ignore[misc]
            helpers = helpers_cpu() - helpers
            cpu = time.process_time() - cpu + helpers
            out[name] = cpu / rows * 1e6
            out[f"{name} db"] = helpers / rows * 1e6
            out[f"{name} loop"] = (time.thread_time() - main) / rows * 1e6
            out[f"{name} wall"] = (time.perf_counter() - wall) / rows * 1e6
            times.job = ""

        async def screen(kind: int) -> None:
            while (await screener.run_once())[kind]:
                pass

        # in the order of serving: a click is screened, then rolled up with its flags
        await timed("screen clicks", clicks, screen(0))
        await timed("rollup clicks", clicks, rollup.catch_up(max_ticks=100_000))

        async def postback(i: int, refid: str) -> None:
            params = {"refid": refid, "orderamount": f"{rng.randrange(100, 50_000) / 100:.2f}"}
            params |= {"ordernumber": f"B-{i}", "currency": "USD", "geo": "US"}
            answer = await tracker.postback("GET", "127.0.0.1", params)
            assert answer.body.get("status") == "accepted", answer.body

        chosen = rng.sample(refids, conversions)
        for start in range(0, conversions, 256):
            part = chosen[start : start + 256]
            await asyncio.gather(*(postback(start + i, r) for i, r in enumerate(part)))

        await timed("screen conversions", conversions, screen(1))
        await timed("rollup conversions", conversions, rollup.catch_up(max_ticks=100_000))
        await store.close()
        if statements:
            out["statements"] = times.per_row(rows_of)
        return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_revs_option(p)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clicks", type=int, default=20_000)
    p.add_argument("--conversions", type=int, default=10_000)
    p.add_argument("--core", type=int, default=1, help="the core the runs are pinned to (1)")
    p.add_argument(
        "--statements", action="store_true", help="also time each write statement, per job"
    )
    p.add_argument("--top", type=int, default=12, help="statements shown per job (12)")
    p.add_argument("--pg", default="", help="run on this PostgreSQL database (dropped and created)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        if args.pg:
            recreate_pg_database(args.pg)
        try:
            run = child(args.clicks, args.conversions, 7, args.statements, args.pg)
            print(json.dumps(asyncio.run(run)))
        finally:
            if args.pg:
                drop_pg_database(args.pg)
        return
    with tempfile.TemporaryDirectory(prefix="clickback-deferred-") as tmp:
        trees = source_trees(args.rev, Path(tmp))
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
        for rnd in range(args.rounds):
            for name, src in trees.items():
                env = os.environ | {"PYTHONPATH": src}
                cmd = ["taskset", "-c", str(args.core), sys.executable, __file__, "--child"]
                cmd += ["--clicks", str(args.clicks), "--conversions", str(args.conversions)]
                cmd += ["--statements"] if args.statements else []
                cmd += ["--pg", args.pg] if args.pg else []
                got = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
                if got.returncode:
                    sys.exit(f"{name}: the run failed:\n{got.stderr[-3000:]}")
                run = json.loads(got.stdout.strip().splitlines()[-1])
                results[name].append(run)
                shown = ", ".join(
                    f"{k} {run[k]:.1f} ({run[f'{k} loop']:.1f}, {run.get(f'{k} db', 0):.1f}, "
                    f"{run.get(f'{k} wall', 0):.0f})"
                    for k in PHASES
                )
                print(
                    f"round {rnd + 1}, {name}: µs CPU a row (event loop's, PostgreSQL's, wall):"
                    f" {shown}",
                    flush=True,
                )
    print(
        f"\nmedians of {args.rounds} runs, µs a row: CPU of all threads / of the event loop / "
        "wall clock"
    )
    print(f"{'':24}" + "".join(f"{name[:22]:>26}" for name in results))
    for phase in PHASES:
        cells = []
        for runs in results.values():
            cpu = statistics.median(r[phase] for r in runs)
            loop = statistics.median(r[f"{phase} loop"] for r in runs)
            wall = statistics.median(r.get(f"{phase} wall", 0.0) for r in runs)
            cells.append(f"{cpu:.1f} / {loop:.1f} / {wall:.0f}")
        print(f"{phase:24}" + "".join(f"{c:>26}" for c in cells))
    if args.statements:
        print_statements(results, args.top, bool(args.pg))


def print_statements(results: dict[str, list[dict[str, Any]]], top: int, pg: bool) -> None:
    """Per tree and job, the statements that took the most time, medians over the runs."""
    what = "statements, wall clock" if pg else "write statements, CPU"
    for name, runs in results.items():
        for phase in PHASES:
            spent: dict[str, list[float]] = collections.defaultdict(list)
            for run in runs:
                for sql, us in run.get("statements", {}).get(phase, {}).items():
                    spent[sql].append(us)
            if not spent:
                continue
            ranked = sorted(
                (
                    (statistics.median(v + [0.0] * (len(runs) - len(v))), sql)
                    for sql, v in spent.items()
                ),
                reverse=True,
            )
            total = sum(us for us, _ in ranked)
            print(f"\n{name}, {phase}: µs a row in the store's {what} ({total:.1f} in all)")
            for us, sql in ranked[:top]:
                print(f"  {us:7.2f}  {sql}")


if __name__ == "__main__":
    main()
