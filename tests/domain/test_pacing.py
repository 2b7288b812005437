from clickback.domain import pacing


def test_behind_is_the_age_of_the_newest_row_of_a_full_batch() -> None:
    now = 100_000_000
    clicks = [{"created_at": now - 9_000_000}, {"created_at": now - 8_000_000}]
    conversions = [{"created_at": now - 3_000_000}]

    def behind(batch: int, *passes: list[dict[str, int]]) -> int:
        return pacing.behind_us(now, batch, *map(pacing.newest, passes))

    assert behind(2, clicks, conversions) == 8_000_000  # clicks wait
    assert behind(1, clicks, conversions) == 8_000_000  # the older backlog
    assert behind(3, clicks, conversions) == 0  # all caught up
    assert behind(1, [], conversions) == 3_000_000
    # an old click read when clicks did not fill their batch is not a backlog
    assert behind(2, clicks[:1], [{"created_at": now}] * 2) == 0
    assert behind(1, [{"created_at": now + 5}]) == 0  # a clock behind


def test_newest_reads_rows_as_dicts_or_tuples() -> None:
    assert pacing.newest([]) == (0, 0)
    assert pacing.newest([{"created_at": 5}, {"created_at": 7}]) == (2, 7)
    assert pacing.newest([("a", 5), ("b", 7)], 1) == (2, 7)


def test_rest_takes_the_share_within_the_bound_only() -> None:
    assert pacing.rest(0.01, 0.25, 1_000_000, 5_000_000) == 0.03  # within: 3x the work
    assert pacing.rest(0.01, 0.25, 6_000_000, 5_000_000) == 0.0  # past the bound
    assert pacing.rest(0.01, 0.25, 60_000_000, 0) == 0.03  # no bound
    assert pacing.rest(0.01, 1.0, 0, 5_000_000) == 0.0  # the whole loop
    assert pacing.rest(0.01, 0.25, 1_000_000, 5_000_000, busy=False) == 0.0  # nobody waits
