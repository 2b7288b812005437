"""How long a background job (rollups, fraud screening) rests between passes while it
catches up: long enough to take at most its share of the event loop that also answers
clicks and postbacks, unless it has fallen further behind than its freshness bound, or
no request is being answered (then resting would only delay the reports).

Resting keeps redirects fast while a job catches up on a burst; with no bound, a load
the core cannot both serve and fold would leave reports and fraud flags behind without
end. Past the bound a job stops resting until it is back within it: the redirects slow
down instead, and the bound holds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clickback.domain.rollup import RollupStore

# how old a click is before the background jobs take it, one process writing (SQLite): its
# batch committed by then; a store written by several may make them wait longer
USUAL_SETTLE_US = 2_000_000


def behind_us(now_us: int, batch: int, *passes: tuple[int, int]) -> int:
    """How far behind a job is after a pass that read, of each kind of row (in time
    order), so many rows, the newest made at such a time (`newest`): as old as the
    newest row of a kind that filled its batch, as more of that kind waits; 0 when none
    did."""
    return max((max(0, now_us - at) for n, at in passes if n >= batch), default=0)


def newest(rows: Sequence[Any], at: Any = "created_at", waited: int = 0) -> tuple[int, int]:
    """A pass's rows for `behind_us`: how many, and when the newest was made (`at`, its
    key or index in a row; 0 with no rows). `waited`: µs the job waits for these rows
    beyond its usual settle (as long as the store may still commit a click), not counted
    as being behind."""
    return len(rows), (rows[-1][at] + waited if rows else 0)


def rest(worked: float, share: float, behind: int, max_lag_us: int, busy: bool = True) -> float:
    """Seconds to rest after a pass that took `worked` seconds of the event loop, when
    the job is `behind` microseconds behind (`max_lag_us` 0: no bound) and requests are
    (`busy`) or are not being answered."""
    if not busy or share >= 1 or (max_lag_us and behind > max_lag_us):
        return 0.0
    return worked * (1 / share - 1)


# when each kind of pass last said that a database file is damaged (monotonic seconds)
_SAID_DAMAGED: dict[str, float] = {}
DAMAGED_EVERY = 60.0


def say_failed(log: logging.Logger, store: RollupStore, what: str, exc: BaseException) -> None:
    """A background job's pass that failed, in the log: with its traceback, but for the
    database out of reach (down, or its file gone), said in a line: every pass says it
    again until it is back; and a damaged file, said with what to do, once a minute
    (every pass fails the same way until the file is dealt with)."""
    if damage := store.damaged(exc):
        now = time.monotonic()
        if now - _SAID_DAMAGED.get(what, -DAMAGED_EVERY) >= DAMAGED_EVERY:
            _SAID_DAMAGED[what] = now
            log.error("%s failed, and fails until it is dealt with: %s", what, damage)
    elif store.unavailable(exc):
        log.warning("%s failed, the database out of reach (%s); retrying", what, exc)
    else:
        log.exception("%s failed; retrying", what)
