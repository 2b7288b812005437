"""Replaying stored postbacks: re-run the decision once its cause is fixed.

A replay is a new ledger row (`replay_of` = the original) with the decision taken
now, judged as of the original arrival time (the attribution window). It cannot count
an order twice: the conversion's (advertiser, ordernumber) is unique, so replaying an
accepted postback, or replaying twice, answers `duplicate`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from clickback.domain.ports import Store
from clickback.domain.tracker import PostbackAnswer, Tracker
from clickback.errors import NotFoundError


async def replay_row(tracker: Tracker, row: Mapping[str, Any]) -> PostbackAnswer:
    return await tracker.postback(
        row["method"],
        row["ip"],
        orjson.loads(row["params"]),
        received_at=row["received_at"],
        replay_of=row["id"],
    )


async def replay(store: Store, tracker: Tracker, ledger_id: int) -> PostbackAnswer:
    row = await store.get_row("postbacks", ledger_id)
    if row is None:
        raise NotFoundError(f"postback {ledger_id} does not exist")
    return await replay_row(tracker, row)


async def replay_matching(
    store: Store,
    tracker: Tracker,
    filters: Mapping[str, Any],
    since: int | None,
    until: int | None,
    progress: Callable[[int], None] | None = None,
) -> list[tuple[int, PostbackAnswer]]:
    """Replays every original (not itself a replay) ledger row matching the filters."""
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await store.list_rows("postbacks", filters, since, until, 1000, cursor)
        rows += [r for r in page.items if r["replay_of"] is None]
        cursor = page.next_cursor
        if cursor is None:
            break
    done: list[tuple[int, PostbackAnswer]] = []
    for row in reversed(rows):  # oldest first, as they arrived
        done.append((row["id"], await replay_row(tracker, row)))
        if progress is not None:
            progress(len(done))
    return done
