"""The background jobs' freshness bound: while catching up they rest between passes
(so redirects keep their share of the event loop), but not once they are further
behind than `max_lag`, nor when no request is being answered: then they work through
the backlog at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clickback.domain.ports import Store
from clickback.domain.rollup import RollupJob
from tests.reports_world import build_world


@pytest.mark.parametrize(
    ("age_s", "max_lag", "busy", "rests"),
    [
        (150, 5.0, True, False),  # minutes behind, bound 5 s: no rest until caught up
        (150, 0.0, True, True),  # no bound: rests whatever the backlog
        (4, 60.0, True, True),  # within the bound, requests being answered: rests
        (4, 60.0, False, False),  # within the bound, nothing to make way for: no rest
    ],
)
async def test_jobs_rest_only_within_their_freshness_bound_and_for_requests(
    store: Store, age_s: int, max_lag: float, busy: bool, rests: bool
) -> None:
    world = await build_world(store, 11)
    start = datetime.now(UTC) - timedelta(seconds=age_s)
    await world.clicks(60, start, 1 / 3600)  # a second's worth of clicks, `age_s` old
    newest = max(refid for refid, _ in world.refids)

    screener = world._screener()
    screener.batch, screener.share, screener.max_lag_us = 10, 0.5, int(max_lag * 1e6)
    screener.busy = lambda: busy
    clicks, _ = await screener.catch_up()
    assert clicks == 60 and screener.clicks_mark == newest
    assert (screener.rested > 0) is rests

    job = RollupJob(
        store, settle=0, batch=10, max_lag=max_lag, busy=lambda: busy, after_screening=True
    )
    await job.catch_up(share=0.5)
    assert job.clicks_mark == newest
    assert (job.rested > 0) is rests
