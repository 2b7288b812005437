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

from collections.abc import Sequence
from typing import Any


def behind_us(now_us: int, batch: int, *passes: Sequence[dict[str, Any]]) -> int:
    """How far behind a job is after a pass that read these rows (each kind in time
    order, with `created_at`): as old as the newest row of a kind that filled its
    batch, as more of that kind waits; 0 when none did."""
    newest = [rows[-1]["created_at"] for rows in passes if len(rows) >= batch]
    return max((max(0, now_us - at) for at in newest), default=0)


def rest(worked: float, share: float, behind: int, max_lag_us: int, busy: bool = True) -> float:
    """Seconds to rest after a pass that took `worked` seconds of the event loop, when
    the job is `behind` microseconds behind (`max_lag_us` 0: no bound) and requests are
    (`busy`) or are not being answered."""
    if not busy or share >= 1 or (max_lag_us and behind > max_lag_us):
        return 0.0
    return worked * (1 / share - 1)
