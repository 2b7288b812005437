"""How long the SQLite group-commit writer stalls for WAL checkpoints.

Writes click rows through `SqliteStore` in batches of 64, back to back, for a few
seconds per variant, and prints each batch's commit latency (p50, p99, p99.9, max), the
WAL file's peak size and what the checkpointer did. No HTTP: only the writer and the
checkpointer's thread, pinned to one core like the servers of `bench/hotpath.py`.

Variants, alternated (A B A B …) so that a machine that drifts moves both alike:

- `truncate`: the checkpointer without the hold (passive passes, TRUNCATE past 65,536
  pages), as before the WAL restarts;
- `restart`: as shipped: past `restart_pages` the checkpointer holds one commit back
  while it copies the last frames, and the WAL starts over.

    python bench/wal_stall.py                 # 2 x 2 x 20 s
    python bench/wal_stall.py --seconds 10 --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fixtures import create_link

from clickback.storage.sqlite import SqliteStore
from clickback.storage.sqlite_file import Checkpointer

BATCH = 64


async def run(variant: str, seconds: float, tmp: Path, restart_pages: int) -> dict[str, float]:
    path = tmp / f"{variant}-{time.monotonic_ns()}.db"
    create_link(f"sqlite:///{path}")  # migrates; the link's id is 1
    link = 1
    store = SqliteStore(str(path))
    assert store.checkpointer is not None
    if variant == "truncate":
        store.checkpointer.stop()
        store.checkpointer = Checkpointer(str(path))
    elif restart_pages:
        store.checkpointer.stop()
        store.checkpointer = Checkpointer(
            str(path), restart_pages=restart_pages, hold=store._hold_commits
        )
    wal = Path(f"{path}-wal")
    latencies: list[float] = []
    peak = n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.perf_counter()
        rows = (
            (f"R{n:08d}{i:02d}", link, 1, 1, f"s{i}", "", "", "", "", "127.0.0.1", "ua", "", 1, 0)
            for i in range(BATCH)
        )
        await asyncio.gather(*(store.write_click(r) for r in rows))
        latencies.append(time.perf_counter() - start)
        n += 1
        if n % 50 == 0:
            peak = max(peak, wal.stat().st_size)
    checkpointer = store.checkpointer
    assert checkpointer is not None
    await store.close()
    for f in tmp.glob(f"{path.name}*"):
        f.unlink()
    latencies.sort()

    def q(share: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * share))] * 1e3

    return {
        "rows/s": n * BATCH / seconds,
        "p50 ms": q(0.5),
        "p99 ms": q(0.99),
        "p99.9 ms": q(0.999),
        "max ms": latencies[-1] * 1e3,
        "over 20 ms": sum(x > 0.02 for x in latencies),
        "WAL peak MB": peak / 1e6,
        "truncates": checkpointer.truncates,
        "restarts": checkpointer.restarts,
        "longest hold ms": checkpointer.held_s * 1e3,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--core", type=int, default=1, help="pin to this core (-1: no pinning)")
    ap.add_argument(
        "--restart-pages", type=int, default=0, help="the restart threshold (0: as shipped)"
    )
    args = ap.parse_args()
    if args.core >= 0:
        os.sched_setaffinity(0, {args.core})
    results: dict[str, list[dict[str, float]]] = {"truncate": [], "restart": []}
    with tempfile.TemporaryDirectory(prefix="clickback-walstall-") as d:
        for r in range(args.rounds):
            for variant in results:
                got = asyncio.run(run(variant, args.seconds, Path(d), args.restart_pages))
                results[variant].append(got)
                shown = ", ".join(f"{k} {v:,.1f}" for k, v in got.items())
                print(f"round {r + 1} {variant}: {shown}", flush=True)
    print(f"\nmedians of {args.rounds} x {args.seconds:g} s, batches of {BATCH} clicks:")
    for variant, runs in results.items():
        shown = ", ".join(f"{k} {statistics.median(x[k] for x in runs):,.1f}" for k in runs[0])
        print(f"  {variant}: {shown}")


if __name__ == "__main__":
    main()
