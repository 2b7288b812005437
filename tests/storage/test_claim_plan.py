"""A sender's claim of due deliveries reads the oldest in order, by the index of those
queued or held, not every one due sorted (20-40 ms a claim behind a backlog of 20,000,
on the event loop with SQLite): the plan of the statement a claim runs."""

from __future__ import annotations

import time
from pathlib import Path

from clickback.storage.sqlite import SqliteStore


async def test_a_claim_reads_due_deliveries_by_the_index(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "claim.db"))
    await store.migrate()
    ran: list[str] = []
    store.conn.set_trace_callback(ran.append)
    now = time.time_ns() // 1000
    try:
        for in_flight, share in (({}, 0), ({7: 3, 9: 16}, 16)):
            ran.clear()
            assert await store.claim_deliveries(now, now + 1, 64, in_flight, share) == []
            [claim] = [s for s in ran if s.lstrip().startswith("UPDATE deliveries")]
            plan = [row[-1] for row in store.conn.execute(f"EXPLAIN QUERY PLAN {claim}")]
            assert any("deliveries_due_or_held" in step for step in plan), plan
            assert not any("SCAN d" in step for step in plan), plan
    finally:
        store.conn.set_trace_callback(None)
        await store.close()
