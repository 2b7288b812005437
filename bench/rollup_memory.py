"""What the rollup holds in memory when its passes see a varying number of new clicks, as
on a server whose traffic comes and goes (under a saturating load every pass reads a
full batch, and the lengths of what it looks up hardly vary).

Each run makes a fresh SQLite database and repeats, `--passes` times: a random number of
clicks (1 to `--most`, varied sub-IDs, each from another public address, as in
`bench/deferred_cost.py`) sent through the real tracker, then the rollup caught up. It
prints SQLite's own count of the memory it holds (`sqlite3_memory_used`) and the
process's RSS every 50 passes. Several source trees can be compared; each run is a
process of its own:

    python bench/rollup_memory.py --rev HEAD~1 --rev worktree
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from deferred_cost import UA, PastClock
from fixtures import create_link
from servers import add_revs_option, source_trees


def sqlite_memory_used() -> int:
    import _sqlite3

    lib = ctypes.CDLL(_sqlite3.__file__)
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    return int(lib.sqlite3_memory_used())


def rss_mb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmRSS"))


async def child(passes: int, most: int, seed: int) -> None:
    from clickback.domain.rollup import RollupJob
    from clickback.domain.tracker import open_tracker
    from clickback.storage.sqlite import SqliteStore

    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="clickback-rollup-memory-") as tmp:
        path = Path(tmp) / "bench.db"
        create_link(f"sqlite:///{path}")
        store = SqliteStore(str(path))
        link = await store.get_row("links", 1)
        assert link is not None
        tracker = await open_tracker(store)
        tracker.clock = PastClock()
        await tracker.catalog.reload()
        rollup = RollupJob(store, settle=0, coalesce=0.0, after_screening=False)

        async def click() -> None:
            query = f"sub1=fb&sub2=cr{rng.randrange(10_000):04d}&sub3={rng.randrange(2**31):08x}"
            first = rng.randrange(11, 223)
            first += first >= 127
            ip = f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            assert await tracker.click(link["code"], query, ip, UA, "") is not None

        for n in range(1, passes + 1):
            await asyncio.gather(*(click() for _ in range(rng.randrange(1, most + 1))))
            await rollup.catch_up(max_ticks=1000)
            if n % 50 == 0 or n == passes:
                print(
                    f"  pass {n}: SQLite holds {sqlite_memory_used() / 1e6:.1f} MB, "
                    f"RSS {rss_mb()} MB",
                    flush=True,
                )
        await store.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_revs_option(p)
    p.add_argument("--passes", type=int, default=300)
    p.add_argument("--most", type=int, default=1000, help="most clicks before a pass (1000)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        asyncio.run(child(args.passes, args.most, 1))
        return
    with tempfile.TemporaryDirectory(prefix="clickback-rollup-memory-") as tmp:
        for rev, src in source_trees(args.rev, Path(tmp)).items():
            print(f"{rev}:", flush=True)
            cmd = [sys.executable, __file__, "--child"]
            cmd += ["--passes", str(args.passes), "--most", str(args.most)]
            subprocess.run(cmd, env=os.environ | {"PYTHONPATH": src}, check=True)


if __name__ == "__main__":
    main()
