"""Where a hot path's time goes: one clickback target under wrk load, profiled.

    python bench/hotspots.py click|click-async|postback [--seconds 6]
        [--rev HEAD] [--env CLICKBACK_NAME=VALUE] [--visitors many|one]
        [--pg postgresql://postgres@127.0.0.1:5432/clickback_profile]
        [--out bench/results/profile]

Starts `clickback serve` on a fresh SQLite database (or, with `--pg`, a PostgreSQL
database it drops and creates; clicks only) pinned to core 1, loads it with the same
wrk scripts as bench/hotpath.py, and profiles the worker process twice, in separate
runs so the two tools do not disturb each other:

- `perf record` (if installed): the share of CPU samples per shared object (the Python
  interpreter, granian's Rust core, SQLite, libc, OpenSSL, the kernel) and per thread;
- `py-spy record` (if installed: `pip install py-spy`), Python frames only, without
  pausing the process: the share of the Python thread's samples per function,
  inclusive (the function and what it calls) and self.

Raw profiles are kept in --out; the summary is printed.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fixtures
import procs
import servers
from loadgen import add_env_option, add_visitors_option, behind_proxy, env_settings, run_wrk

ROOT = Path(__file__).resolve().parent.parent
_FRAME = re.compile(r"^(.*?) \((.*?)(?::\d+)?\)$")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("target", choices=("click", "click-async", "postback"))
    p.add_argument("--seconds", type=int, default=6, help="profiled seconds per tool (6)")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--rev", default="", help="profile this git revision of src/")
    add_env_option(p, "a setting for the clickback server; repeatable")
    add_visitors_option(p)
    p.add_argument("--server", choices=("granian", "native"), default=None)
    p.add_argument("--top", type=int, default=25, help="functions listed (25)")
    p.add_argument(
        "--pg",
        default="",
        help="profile on this PostgreSQL database (dropped and created; click targets only);"
        " the server CPU then counts PostgreSQL's processes for it",
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "profile")
    return p.parse_args(argv)


def perf_summary(data: Path) -> str:
    lines = []
    for key in ("dso", "comm"):
        argv = ["perf", "report", "-i", str(data), "--no-children", "--stdio", "--sort", key]
        argv += ["-g", "none", "--percent-limit", "0.5"]
        out = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        lines.append(f"perf: CPU samples by {'shared object' if key == 'dso' else 'thread'}")
        lines += [f"  {x.strip()}" for x in out.splitlines() if x.strip() and x[0] != "#"]
    return "\n".join(lines)


def pyspy_summary(raw: Path, top: int) -> str:
    """Inclusive and self shares of the Python thread's samples, by function."""
    total = 0
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not frames[0].endswith("MainThread") or len(frames) < 2:
            continue  # granian's Rust threads have no Python frames
        n = int(count)
        total += n
        names = []
        for f in frames[1:]:
            m = _FRAME.match(f)
            names.append(f"{m.group(1)} ({m.group(2)})" if m else f)
        # drop the start-up frames the event loop runs under (the CLI, granian's worker
        # spawn): time in that last frame itself is the loop's native code
        starts = [i for i, name in enumerate(names) if "granian/server/" in name]
        if starts:
            names = names[starts[-1] :]
            names[0] = "(event loop and granian, native)"
        own[names[-1]] += n
        for name in set(names[1:]):
            inclusive[name] += n
    if not total:
        return "py-spy: no samples of the Python thread"
    shown = inclusive.most_common(top)
    lines = [f"py-spy: share of the Python thread's {total:,} samples, inclusive"]
    lines += [f"  {100 * v / total:5.1f} %  {k}" for k, v in shown]
    lines.append("py-spy: self (where the thread was when sampled)")
    lines += [f"  {100 * v / total:5.1f} %  {k}" for k, v in own.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    tmp = Path(tempfile.mkdtemp(prefix="clickback-profile-"))
    try:
        if args.rev:
            print(f"profiling revision {servers.use_revision(args.rev, tmp)[:12] or args.rev}")
        db = f"sqlite:///{tmp / 'profile.db'}"
        helpers = None
        if args.pg:
            if args.target == "postback":
                raise SystemExit("--pg profiles the click targets only")
            fixtures.recreate_pg_database(args.pg)
            db = args.pg
            database = fixtures.pg_database(args.pg)

            def helpers() -> list[int]:
                return [*svc.tree(), *procs.pg_pids(database)]

        code = fixtures.create_link(db)
        port = servers.free_port()
        durability = "async" if args.target == "click-async" else "sync"
        settings = env_settings(args.env)
        settings["CLICKBACK_CLICK_DURABILITY"] = durability
        behind_proxy(settings, args.visitors)
        svc = servers.clickback(tmp, db, port, 1, env=settings, server=args.server)
        svc.wait_ready(port, "/healthz")
        seed = int(time.time())
        if args.target == "postback":
            real = fixtures.collect_refids(port, code, 400)
            stored = fixtures.add_clicks(
                db, 9_600, fixtures.days_ago_ms(20), fixtures.days_ago_ms(10), sample=1600
            )
            pool = fixtures.write_lines(tmp / "refids.txt", real + stored)
            script = "postback.lua"

            def script_args(n: int) -> list[str]:
                return [str(pool), str(seed + n), "10", "5"]
        else:
            script = "click.lua"

            def script_args(n: int) -> list[str]:
                return [code, str(seed + n), args.visitors]

        url = f"http://127.0.0.1:{port}"
        worker = svc.workers()[0]

        def load(n: int) -> None:
            run = run_wrk(
                url,
                script,
                script_args(n),
                duration=args.seconds + 2,
                connections=args.connections,
                server_pids=helpers or svc.tree,
            )
            print(
                f"{args.target}: {run.rps:,.0f} req/s, p99 {run.p99_ms:.2f} ms, server CPU "
                f"{run.server_cpu_pct:.0f} % ({10_000 * run.server_cpu_pct / run.rps:.1f} "
                "µs a request)"
            )

        load(0)  # warm-up, and the figure without a profiler attached
        reports = []
        if shutil.which("perf"):
            data = args.out / f"{args.target}.perf.data"
            argv = ["perf", "record", "-F", "499", "-g", "-o", str(data), "-p", str(worker)]
            argv += ["--", "sleep", str(args.seconds)]
            perf = subprocess.Popen(
                argv,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            load(1)
            perf.wait()
            reports.append(perf_summary(data))
        else:
            reports.append("perf: not installed")
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if Path(spy).exists():
            raw = args.out / f"{args.target}.py-spy.txt"
            argv = [spy, "record", "-r", "250", "-d", str(args.seconds), "-f", "raw"]
            argv += ["-o", str(raw), "--pid", str(worker), "--nonblocking", "--threads"]
            recorder = subprocess.Popen(
                argv,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            load(2)
            recorder.wait()
            reports.append(pyspy_summary(raw, args.top))
        else:
            reports.append("py-spy: not installed (pip install py-spy)")
        print("\n\n".join(reports))
        print(f"raw profiles in {args.out}")
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
        if args.pg:
            fixtures.drop_pg_database(args.pg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
