"""Clicks under sustained load: does the click rate hold once the deferred work (fraud
screening, report rollups) has to keep up on the same core?

    python bench/sustained.py [--runs 8] [--seconds 5] [--rev HEAD]
        [--visitors many|one] [--durability sync|async] [--out F.json]
        [--env CLICKBACK_NAME=VALUE ...]

`bench/hotpath.py` measures short runs and lets the jobs catch up between them, so part
of a run's deferred work is done after wrk stopped (it reports how far behind they were
and when they caught up). Here one `clickback serve` on a fresh SQLite database, pinned
to core 1, takes wrk runs back to back with no pause (the same click script, wrk on
core 0), and after each run the jobs' lag is read: a rate that falls run after run, or
a lag that grows, is a rate the core cannot sustain. The first run holds the server's
first requests (its p99 is start-up's). A bare ASGI 302 run before and after gives the
ratio, as in the hot-path benchmark.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import fixtures
import procs
import servers
from loadgen import add_env_option, add_visitors_option, behind_proxy, env_settings, run_wrk


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=8, help="back-to-back wrk runs (8)")
    p.add_argument("--seconds", type=int, default=5, help="seconds per run (5)")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--durability", choices=("sync", "async"), default="sync")
    p.add_argument("--rev", default="", help="measure this git revision of src/")
    add_visitors_option(p)
    p.add_argument("--out", type=Path, help="a JSON file of the figures")
    add_env_option(p, "a setting for the clickback server (repeatable; the durability wins)")
    return p.parse_args(argv)


def bare_rps(tmp: Path, args: argparse.Namespace) -> float:
    port = servers.free_port()
    svc = servers.bare_asgi(tmp, port, 1)
    try:
        svc.wait_ready(port)
        script_args = ["x", str(int(time.time())), args.visitors]
        run = run_wrk(f"http://127.0.0.1:{port}", "click.lua", script_args,
                      duration=args.seconds, connections=args.connections)  # fmt: skip
        return run.rps
    finally:
        svc.stop()


def measure(args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    """The bare 302, the back-to-back click runs, the bare 302 again; the figures."""
    if args.rev:
        print(f"measuring revision {servers.use_revision(args.rev, tmp)[:12] or args.rev}")
    bare = [bare_rps(tmp, args)]
    print(f"bare ASGI 302: {bare[0]:,.0f} req/s")
    db = f"sqlite:///{tmp / 'sustained.db'}"
    code = fixtures.create_link(db)
    port = servers.free_port()
    settings = env_settings(args.env)
    settings["CLICKBACK_CLICK_DURABILITY"] = args.durability
    settings = behind_proxy(settings, args.visitors)
    svc = servers.clickback(tmp, db, port, 1, env=settings)
    svc.wait_ready(port, "/healthz")
    runs = []
    for i in range(args.runs):
        script_args = [code, str(int(time.time()) + i), args.visitors]
        run = run_wrk(f"http://127.0.0.1:{port}", "click.lua", script_args,
                      duration=args.seconds, connections=args.connections,
                      server_pids=svc.tree)  # fmt: skip
        state = fixtures.jobs_state(db)
        lag = {
            name: 0.0 if done else None if at is None else round((run.ended_us - at) / 1e6, 1)
            for name, (at, done) in state.items()
            if name != "rollup conversions"
        }
        runs.append({"rps": round(run.rps), "p99_ms": run.p99_ms, "behind_s": lag,
                     "rss_mb": procs.rss_mb(svc.workers()[0]),
                     "other_cpu_pct": round(run.background_cpu_pct)})  # fmt: skip
        shown = ", ".join(f"{k} {'-' if v is None else v} s" for k, v in lag.items())
        print(
            f"run {i + 1}/{args.runs}: {run.rps:,.0f} req/s, p99 {run.p99_ms:.1f} ms; "
            f"behind when it stopped: {shown}; other CPU {run.background_cpu_pct:.0f} %",
            flush=True,
        )
    svc.stop()
    bare.append(bare_rps(tmp, args))
    base = statistics.median(bare)
    first, rest = runs[0]["rps"], [r["rps"] for r in runs[1:]]
    tail = statistics.median(rest[len(rest) // 2 :] or [first])
    print(
        f"bare ASGI 302 at the end: {bare[1]:,.0f} req/s. Clicks: first run "
        f"{first:,} req/s ({100 * first / base:.0f} % of bare), the later half of "
        f"the runs {tail:,.0f} req/s ({100 * tail / base:.0f} %), median"
    )
    return {"args": {k: str(v) for k, v in vars(args).items()},
            "bare_rps": [round(x) for x in bare], "runs": runs, "sustained_rps": tail,
            "sustained_pct_bare": round(100 * tail / base, 1)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="clickback-sustained-"))
    try:
        figures = measure(args, tmp)
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.out:
        args.out.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
