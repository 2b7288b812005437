"""Hot-path benchmark: how fast clickback answers a click and a postback, as a share of
a bare ASGI 302 (and of nginx) measured in the same run on the same machine.

    python bench/hotpath.py [--duration 6] [--runs 3] [--connections 64]
        [--skip-pg] [--grow N] [--out bench/results/hotpath.json]

Each server is pinned to one core (`taskset -c 1`) and loaded by `wrk -t1 -c64
--latency` pinned to the other (`taskset -c 0`), against 127.0.0.1 only. Per target:
one warm-up run and N measured runs; the table shows medians. Targets:

1. nginx `return 302` (the load generator's ceiling), 2. the bare ASGI 302 app on
granian (the 100 % baseline), and the same on granian's RSGI interface, which `clickback
serve` runs (shown beside it, not the 100 %), 3./4. clicks on SQLite with click
durability `sync` and `async`, 5. postbacks on SQLite (new orders, duplicates, bad
input; 10 k clicks stored), 6. clicks and postbacks on PostgreSQL, 7. clicks with 2
workers on one SQLite file (unpinned), then the bare ASGI app again: the 100 % is the
median of its runs at the start and at the end. `--grow N` adds N synthetic clicks to
the postback database and measures postbacks again.

Everything runs from a temp dir and is stopped and removed at the end, also on Ctrl-C.
See docs/performance.md for how to read the figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fixtures
import procs
import servers
import summary
from loadgen import (
    WrkRun,
    add_env_option,
    add_visitors_option,
    behind_proxy,
    env_settings,
    loop_stops,
    run_wrk,
)
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from summary import BARE, BARE_END, NGINX, RSS_GOAL_MB, Goal, Result

ROOT = Path(__file__).resolve().parent.parent
BARE_END_LABEL = "bare ASGI 302 again, at the end"
BARE_RSGI = "bare-rsgi"  # what the interface `clickback serve` runs is worth: not the 100 %
BARE_RSGI_LABEL = "bare RSGI 302 (granian, no db)"
SMALL_CLICKS = 10_000  # clicks stored for the small-data postback figure


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=6, help="seconds per measured run (6)")
    p.add_argument("--warmup", type=int, default=3, help="seconds of the warm-up run (3)")
    p.add_argument("--runs", type=int, default=3, help="measured runs per target (3)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    p.add_argument("--server-core", type=int, default=1, help="core the servers run on (1)")
    p.add_argument("--wrk-core", type=int, default=0, help="core wrk runs on (0)")
    p.add_argument("--skip-pg", action="store_true", help="no PostgreSQL targets")
    p.add_argument(
        "--server",
        choices=("granian", "native"),
        default=None,
        help="what `clickback serve --server` runs the clickback targets on (serve's default)",
    )
    p.add_argument(
        "--pg-url",
        default="postgresql://postgres@127.0.0.1:5432/clickback_bench",
        help="database dropped, created and dropped again by the run",
    )
    p.add_argument(
        "--pg-db-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for every session on the benchmark database (ALTER DATABASE SET), "
        "e.g. plan_cache_mode=force_custom_plan; repeatable",
    )
    add_env_option(
        p,
        "a setting for every clickback server (the targets' own settings win); "
        "repeatable. Other CLICKBACK_* variables of the calling shell are not passed on",
    )
    p.add_argument("--skip-workers2", action="store_true", help="no 2-worker SQLite variant")
    p.add_argument(
        "--grow",
        type=int,
        default=0,
        metavar="N",
        help="add N synthetic clicks to the postback database, then measure postbacks again",
    )
    p.add_argument("--refids", type=int, default=400, help="RefIDs made by real clicks (400)")
    p.add_argument(
        "--pool", type=int, default=1600, help="stored RefIDs also used by postbacks (1600)"
    )
    add_visitors_option(p)
    p.add_argument("--dup-pct", type=int, default=10, help="postbacks repeating one (10)")
    p.add_argument("--bad-pct", type=int, default=5, help="postbacks with bad input (5)")
    p.add_argument("--only", default="", help="comma-separated target keys to run (default: all)")
    p.add_argument(
        "--rev",
        default="",
        help="measure this git revision of src/ (exported to the temp dir) instead of the "
        f"working tree, e.g. HEAD or a tag ({servers.WORKTREE!r}: the working tree)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "hotpath.json")
    p.add_argument(
        "--max-background",
        type=float,
        default=25.0,
        help="redo a run when other processes used more than this %% of a core (25)",
    )
    p.add_argument("--retries", type=int, default=4, help="redone runs per target at most (4)")
    p.add_argument(
        "--settle", type=float, default=30.0, help="seconds to wait for an idle machine (30)"
    )
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs, databases)")
    return p.parse_args(argv)


@dataclass
class Bench:
    args: argparse.Namespace
    tmp: Path
    console: Console
    progress: Progress
    results: list[Result]
    seed: int

    def next_seed(self) -> int:
        """A number unique to each wrk run: postback order numbers are made from it."""
        self.seed += 1
        return self.seed

    def wanted(self, key: str) -> bool:
        only = {k.strip() for k in self.args.only.split(",") if k.strip()}
        return not only or key in only

    def say(self, text: str) -> None:
        self.progress.console.print(text)

    def measure(
        self,
        result: Result,
        service: procs.Service,
        port: int,
        script: str,
        script_args: Callable[[int], list[str]],
        *,
        pinned: bool = True,
        after_run: Callable[[WrkRun], None] | None = None,
        helpers: Callable[[], list[int]] | None = None,
    ) -> Result:
        """Warm-up plus measured runs of one target against a started server.

        Before each run the machine is let settle; a measured run during which other
        processes used more than --max-background % of a core is done again (at most
        --retries times per target), the disturbed one kept aside in the results.
        """
        a = self.args
        result.max_background = a.max_background

        def pids() -> list[int]:
            return service.tree() + (helpers() if helpers else [])

        planned = [a.warmup] + [a.duration] * a.runs
        task = self.progress.add_task(result.label, total=sum(planned))
        done = 0.0
        index = retries = 0
        try:
            while index < len(planned):
                seconds = planned[index]
                quiet = procs.settle(timeout=a.settle)
                log_at = service.log_path.stat().st_size
                run = run_wrk(
                    f"http://127.0.0.1:{port}",
                    script,
                    script_args(self.next_seed()),
                    duration=seconds,
                    connections=a.connections,
                    server_pids=pids,
                    wrk_core=a.wrk_core,
                    tick=lambda s, base=done: self.progress.update(task, completed=base + s),
                )
                run.extra["busy_before_pct"] = round(quiet, 1)
                done += seconds
                if after_run:
                    after_run(run)
                if service.name.startswith("clickback"):  # the run and its catch-up
                    run.extra["loop_stops"] = loop_stops(service.log_path, log_at)
                if index == 0:
                    result.warmup = run
                    index += 1
                    continue
                disturbed = run.background_cpu_pct > a.max_background
                if disturbed and retries < a.retries:
                    retries += 1
                    result.disturbed.append(run)
                    self.progress.update(task, total=sum(planned) + retries * a.duration)
                    self.say(
                        f"  [yellow]{result.label} run {index}: {run.rps:,.0f} req/s with "
                        f"{run.background_cpu_pct:.0f} % of a core used by other processes "
                        f"(niced {run.nice_pct:.0f} %, stolen by the hypervisor "
                        f"{run.steal_pct:.0f} %): done again[/yellow]"
                    )
                    continue
                result.runs.append(run)
                self.say(
                    f"  {result.label} run {index}/{a.runs}: {run.rps:,.0f} req/s, "
                    f"p50 {run.p50_ms:.2f} ms, p99 {run.p99_ms:.2f} ms; CPU % of a core: "
                    f"server {run.server_cpu_pct:.0f}, wrk {run.wrk_cpu_pct:.0f}, "
                    f"other {run.background_cpu_pct:.0f} (niced {run.nice_pct:.0f}, "
                    f"stolen {run.steal_pct:.0f})"
                    + (f"; non-2xx/3xx {run.non_2xx_3xx:,}" if run.non_2xx_3xx else "")
                )
                index += 1
        finally:
            self.progress.remove_task(task)
        workers = service.workers()
        result.worker_rss_mb = [x for x in map(procs.rss_mb, workers) if x is not None]
        if workers != [service.pid]:
            result.main_rss_mb = procs.rss_mb(service.pid)
        if not pinned:
            result.notes.append("server not pinned to a core")
        if len(result.counted()) < len(result.runs):
            result.notes.append("disturbed runs left out of the medians")
        elif any(r.background_cpu_pct > a.max_background for r in result.runs):
            result.notes.append("every run disturbed by other processes")
        return result

    def add(self, result: Result) -> Result:
        self.results.append(result)
        return result

    def skip(self, key: str, label: str, why: str) -> None:
        self.say(f"[yellow]skipping {label}: {why}[/yellow]")
        self.add(Result(key, label, skipped=why))

    def clickback(
        self,
        db_url: str,
        port: int,
        core: int | None,
        *,
        workers: int = 1,
        env: dict[str, str] | None = None,
    ) -> procs.Service:
        """`clickback serve` with the settings given by --env, then those of the target."""
        settings = behind_proxy(env_settings(self.args.env), self.args.visitors)
        settings.update(env or {})
        return servers.clickback(
            self.tmp, db_url, port, core, workers=workers, env=settings, server=self.args.server
        )

    def core(self, pinned: bool = True) -> int | None:
        return self.args.server_core if pinned else None

    def click_args(self, code: str) -> Callable[[int], list[str]]:
        return lambda seed: [code, str(seed), self.args.visitors]

    def postback_args(self, pool: Path) -> Callable[[int], list[str]]:
        a = self.args
        return lambda seed: [str(pool), str(seed), str(a.dup_pct), str(a.bad_pct)]


# -- targets --------------------------------------------------------------------------


def run_nginx(b: Bench) -> None:
    label = "nginx return 302 (1 worker)"
    if servers.nginx_binary() is None:
        b.skip(NGINX, label, "nginx is not installed: no % of nginx column")
        return
    port = servers.free_port()
    svc = servers.nginx(b.tmp, port, b.core())
    try:
        svc.wait_ready(port)
        b.add(b.measure(Result(NGINX, label), svc, port, "click.lua", b.click_args("x")))
    finally:
        svc.stop()


def run_bare(
    b: Bench,
    key: str = BARE,
    label: str = "bare ASGI 302 (granian, no db)",
    interface: str = "asgi",
) -> None:
    port = servers.free_port()
    svc = servers.bare_asgi(b.tmp, port, b.core(), interface)
    try:
        svc.wait_ready(port)
        b.add(b.measure(Result(key, label), svc, port, "click.lua", b.click_args("x")))
    finally:
        svc.stop()


def sqlite_db(b: Bench, template: str, name: str) -> str:
    """A copy of the template database (the backup API: WAL content included)."""
    target = b.tmp / f"{name}.db"
    source = fixtures.sqlite_path(template)
    for suffix in ("", "-reports"):  # the report tables' file beside it, where there is one
        if suffix and not Path(source + suffix).exists():
            continue
        with sqlite3.connect(source + suffix) as src, sqlite3.connect(f"{target}{suffix}") as dst:
            src.backup(dst)
    return f"sqlite:///{target}"


def count_clicks(db_url: str) -> Callable[[WrkRun], None]:
    """After each run: how many click rows the run stored (compare with its requests)."""
    state = {"before": fixtures.click_count(db_url)}

    def after(run: WrkRun) -> None:
        time.sleep(0.2)  # the writer's last batch (async durability commits after the 302)
        now = fixtures.click_count(db_url)
        run.extra["clicks_stored"] = now - state["before"]
        state["before"] = now

    return after


def record_ledger(db_url: str) -> Callable[[WrkRun], None]:
    def after(run: WrkRun) -> None:
        time.sleep(0.1)
        run.extra["ledger"] = fixtures.ledger_outcomes(db_url, run.started_us, run.ended_us + 1)

    return after


def watch_jobs(
    db_url: str, then: Callable[[WrkRun], None], wait: float = 120.0
) -> Callable[[WrkRun], None]:
    """After each run: how far behind the fraud screening and the report rollups were
    when wrk stopped (0 for a job that had handled every row; else from the newest row
    it had handled), then `then`, then how long after wrk stopped the rollups held every
    stored click and conversion (waiting at most `wait` seconds)."""

    def after(run: WrkRun) -> None:
        state = fixtures.jobs_state(db_url)
        run.extra["behind_s"] = {
            name: 0.0 if done else None if at is None else round((run.ended_us - at) / 1e6, 2)
            for name, (at, done) in state.items()
        }
        then(run)
        while time.time() < run.ended_us / 1e6 + wait:
            state = fixtures.jobs_state(db_url)
            if state["rollup clicks"][1] and state["rollup conversions"][1]:
                run.extra["caught_up_s"] = round(time.time() - run.ended_us / 1e6, 1)
                break
            time.sleep(0.25)

    return after


def run_sqlite_click(
    b: Bench,
    template: str,
    code: str,
    key: str,
    label: str,
    goal: Goal,
    *,
    durability: str = "sync",
    workers: int = 1,
    pinned: bool = True,
) -> None:
    db = sqlite_db(b, template, key)
    port = servers.free_port()
    svc = b.clickback(
        db, port, b.core(pinned), workers=workers, env={"CLICKBACK_CLICK_DURABILITY": durability}
    )
    try:
        svc.wait_ready(port, "/healthz")
        result = Result(key, label, goal=goal)
        b.measure(
            result,
            svc,
            port,
            "click.lua",
            b.click_args(code),
            pinned=pinned,
            after_run=watch_jobs(db, count_clicks(db)),
        )
        b.add(result)
    finally:
        svc.stop()


def run_sqlite_postback(b: Bench, template: str, code: str) -> None:
    a = b.args
    db = sqlite_db(b, template, "postback")
    port = servers.free_port()
    svc = b.clickback(db, port, b.core())
    goal = Goal(min_pct_bare=60, max_p99_ms=10, max_rss_mb=RSS_GOAL_MB)
    try:
        svc.wait_ready(port, "/healthz")
        real = fixtures.collect_refids(port, code, a.refids)
        # older synthetic clicks up to SMALL_CLICKS stored, inside the attribution window
        stored = fixtures.add_clicks(
            db,
            max(0, SMALL_CLICKS - fixtures.click_count(db)),
            fixtures.days_ago_ms(20),
            fixtures.days_ago_ms(10),
            sample=a.pool,
        )
        pool = fixtures.write_lines(b.tmp / "refids-small.txt", real + stored)
        clicks = fixtures.click_count(db)
        label = f"postback, SQLite ({clicks:,} clicks stored)"
        result = Result("sqlite-postback", label, goal=goal, extra={"clicks_stored": clicks})
        b.measure(
            result,
            svc,
            port,
            "postback.lua",
            b.postback_args(pool),
            after_run=watch_jobs(db, record_ledger(db)),
        )
        b.add(result)
    finally:
        svc.stop()
    if a.grow > 0 and b.wanted("sqlite-postback-grown"):
        run_grown_postback(b, db, real, clicks)


def run_grown_postback(b: Bench, db: str, real: list[str], small_clicks: int) -> None:
    a = b.args
    task = b.progress.add_task(f"adding {a.grow:,} synthetic clicks", total=a.grow)
    t0 = time.monotonic()
    try:
        stored = fixtures.add_clicks(
            db,
            a.grow,
            fixtures.days_ago_ms(10),
            fixtures.days_ago_ms(0.05),
            sample=a.pool,
            progress=lambda n: b.progress.advance(task, n),
        )
    finally:
        b.progress.remove_task(task)
    took = time.monotonic() - t0
    size = os.path.getsize(fixtures.sqlite_path(db)) / 2**20
    clicks = small_clicks + a.grow  # counting them again would read the whole table
    b.say(
        f"  added {a.grow:,} clicks in {took:.0f} s ({a.grow / took:,.0f} rows/s); {size:,.0f} MB"
    )
    pool = fixtures.write_lines(b.tmp / "refids-grown.txt", real + stored)
    port = servers.free_port()
    svc = b.clickback(db, port, b.core())
    try:
        svc.wait_ready(port, "/healthz", timeout=120)
        result = Result(
            "sqlite-postback-grown",
            f"postback, SQLite ({clicks:,} clicks stored)",
            extra={"clicks_stored": clicks, "db_mb": round(size), "insert_seconds": round(took)},
        )
        b.measure(
            result, svc, port, "postback.lua", b.postback_args(pool), after_run=record_ledger(db)
        )
        b.add(result)
    finally:
        svc.stop()


def run_pg(b: Bench) -> None:
    a = b.args
    keys = ("pg-click", "pg-postback")
    labels = ("click, PostgreSQL sync", "postback, PostgreSQL")
    goals = (
        Goal(min_pct_bare=40, max_rss_mb=RSS_GOAL_MB),
        Goal(min_pct_bare=25, max_rss_mb=RSS_GOAL_MB),
    )
    if not any(b.wanted(k) for k in keys):
        return
    try:
        settings = dict(x.split("=", 1) for x in a.pg_db_setting)
        fixtures.recreate_pg_database(a.pg_url, settings)
    except Exception as exc:
        for key, label in zip(keys, labels, strict=True):
            if b.wanted(key):
                b.skip(key, label, f"PostgreSQL not usable at {a.pg_url}: {exc}")
        return
    database = fixtures.pg_database(a.pg_url)

    def pg_helpers() -> list[int]:
        return procs.pg_pids(database)

    try:
        code = fixtures.create_link(a.pg_url)
        port = servers.free_port()
        svc = b.clickback(a.pg_url, port, b.core())
        try:
            svc.wait_ready(port, "/healthz")
            if b.wanted(keys[0]):
                result = Result(keys[0], labels[0], goal=goals[0])
                result.notes.append("PostgreSQL not pinned; its CPU counted as the server's")
                b.measure(
                    result,
                    svc,
                    port,
                    "click.lua",
                    b.click_args(code),
                    after_run=watch_jobs(a.pg_url, count_clicks(a.pg_url)),
                    helpers=pg_helpers,
                )
                b.add(result)
            if b.wanted(keys[1]):
                pool = fixtures.write_lines(
                    b.tmp / "refids-pg.txt", fixtures.collect_refids(port, code, a.refids)
                )
                clicks = fixtures.click_count(a.pg_url)
                result = Result(
                    keys[1],
                    f"{labels[1]} ({clicks:,} clicks stored)",
                    goal=goals[1],
                    extra={"clicks_stored": clicks},
                )
                result.notes.append("PostgreSQL not pinned; its CPU counted as the server's")
                b.measure(
                    result,
                    svc,
                    port,
                    "postback.lua",
                    b.postback_args(pool),
                    after_run=watch_jobs(a.pg_url, record_ledger(a.pg_url)),
                    helpers=pg_helpers,
                )
                b.add(result)
        finally:
            svc.stop()
    finally:
        if not a.keep_tmp:
            fixtures.drop_pg_database(a.pg_url)


def guarded(b: Bench, key: str, label: str, run: Callable[[], None]) -> None:
    """Run one target; if it fails (a server that does not start, wrk that cannot
    connect), say why, record it as skipped and go on with the others."""
    try:
        run()
    except Exception as exc:
        b.progress.console.print_exception(max_frames=4)
        b.skip(key, label, f"failed: {str(exc).splitlines()[0] if str(exc) else exc!r}")


def run_all(b: Bench) -> None:
    a = b.args
    template = f"sqlite:///{b.tmp / 'template.db'}"
    code = fixtures.create_link(template)
    rss = RSS_GOAL_MB

    def click(key: str, label: str, goal: Goal, **kw: Any) -> tuple[str, str, Callable[[], None]]:
        return key, label, lambda: run_sqlite_click(b, template, code, key, label, goal, **kw)

    plan = [
        (NGINX, "nginx return 302", lambda: run_nginx(b)),
        (BARE, "bare ASGI 302", lambda: run_bare(b)),
        (BARE_RSGI, "bare RSGI 302", lambda: run_bare(b, BARE_RSGI, BARE_RSGI_LABEL, "rsgi")),
        click("sqlite-click", "click, SQLite sync", Goal(85, 10, rss)),
        click("sqlite-click-async", "click, SQLite async", Goal(95, None, rss), durability="async"),
        ("sqlite-postback", "postback, SQLite", lambda: run_sqlite_postback(b, template, code)),
        ("pg-click", "PostgreSQL targets", lambda: run_pg(b)),
        click(
            "sqlite-click-2w",
            "click, SQLite sync, 2 workers, unpinned",
            Goal(None, None, rss),
            workers=2,
            pinned=False,
        ),
        (BARE_END, "bare ASGI 302 again", lambda: run_bare(b, BARE_END, BARE_END_LABEL)),
    ]
    skipped = {"pg-click"} if a.skip_pg else set()
    if a.skip_workers2:
        skipped.add("sqlite-click-2w")
    for key, label, run in plan:
        wanted = b.wanted(key) or (key == "sqlite-postback" and a.grow and b.wanted(key + "-grown"))
        wanted = wanted or (key == "pg-click" and b.wanted("pg-postback"))
        if wanted and key not in skipped:
            guarded(b, key, label, run)


# -- output ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=170)
    missing = [t for t in ("wrk", "taskset") if shutil.which(t) is None]
    if missing:
        console.print(f"[red]missing: {', '.join(missing)}[/red]")
        return 2

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # also when started with SIGINT ignored (a background job of a script): stop cleanly
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    tmp = Path(tempfile.mkdtemp(prefix="clickback-bench-"))
    started = dt.datetime.now(dt.UTC)
    try:
        rev_sha = servers.use_revision(args.rev, tmp) if args.rev else ""
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    facts = summary.machine_facts(None if args.skip_pg else args.pg_url)
    code = summary.source_state(rev_sha)
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f} %"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    bench = Bench(args, tmp, console, progress, [], seed=int(time.time()))
    console.print(
        f"clickback hot-path benchmark: {args.runs} x {args.duration} s per target "
        f"(+{args.warmup} s warm-up), wrk -c{args.connections} on core {args.wrk_core}, "
        f"servers on core {args.server_core}; clicks from "
        f"{'a new address each (X-Forwarded-For)' if args.visitors == 'many' else '127.0.0.1'}; "
        f"measuring {code['source']} ({code['commit'][:12]}); temp dir {tmp}"
    )
    try:
        with progress:
            run_all(bench)
    except KeyboardInterrupt:
        console.print("[red]interrupted: stopping servers[/red]")
        return 130
    finally:
        procs.stop_all()
        if args.keep_tmp:
            console.print(f"temp dir kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    rows = summary.summarize(bench.results)
    title = (
        f"hot paths, medians of {args.runs} x {args.duration} s, wrk -t1 -c{args.connections} "
        f"({facts['cores']} x {facts['cpu']}); clickback: serve --server "
        f"{args.server or '(its default)'}"
    )
    summary.print_table(console, rows, title)
    base = summary.baseline_rps(bench.results)
    if base:
        console.print(
            f"% bare: of {base:,.0f} req/s, the median of the bare ASGI runs at the start and "
            "at the end. µs/req: server CPU time per request (with PostgreSQL's processes "
            "for the PostgreSQL targets)."
        )
    summary.print_details(console, rows)
    growth = summary.growth_check(rows)
    if growth:
        console.print(
            f"data growth: postback p99 {growth['grown_p99_ms']:.2f} ms with "
            f"{growth['grown_clicks']:,} clicks vs {growth['small_p99_ms']:.2f} ms with "
            f"{growth['small_clicks']:,}: x{growth['p99_ratio']} "
            f"({'met' if growth['met'] else 'missed'}, limit x{summary.GROWTH_LIMIT})"
        )
    document = {
        "started": started.isoformat(timespec="seconds"),
        "seconds": round((dt.datetime.now(dt.UTC) - started).total_seconds()),
        "command": [Path(sys.executable).name, *sys.argv],
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "code": code,
        "machine": facts,
        "baseline_rps": base,
        "targets": rows,
        "growth": growth,
    }
    summary.write_json(args.out, document)
    console.print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
