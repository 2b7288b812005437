"""How long a background job (rollups, fraud screening) rests between passes while it
catches up: long enough to take at most its share of the event loop that also answers
clicks and postbacks, unless it has fallen further behind than its freshness bound.

Resting keeps redirects fast while a job catches up on a burst; with no bound, a load
the core cannot both serve and fold would leave reports and fraud flags behind without
end. Past the bound a job stops resting until it is back within it: the redirects slow
down instead, and the bound holds.
"""

from __future__ import annotations

from clickback.domain.refid import created_ms


def behind_us(mark: str, now_us: int) -> int:
    """How far behind a job is whose newest handled click is `mark` (a RefID; '' for
    none yet, which is not behind)."""
    return max(0, now_us - created_ms(mark) * 1000) if mark else 0


def rest(worked: float, share: float, behind: int, max_lag_us: int) -> float:
    """Seconds to rest after a pass that took `worked` seconds of the event loop, when
    the job is `behind` microseconds behind (`max_lag_us` 0: no bound)."""
    if share >= 1 or (max_lag_us and behind > max_lag_us):
        return 0.0
    return worked * (1 / share - 1)
