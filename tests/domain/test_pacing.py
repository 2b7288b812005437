from clickback.domain import pacing
from clickback.domain.refid import RefIdCodec, floor


def test_behind_is_read_from_the_marks_refid() -> None:
    refid = RefIdCodec(["k"]).issue(7, 1_700_000_000_123)
    assert pacing.behind_us(refid, 1_700_000_002_123_000) == 2_000_000
    assert pacing.behind_us(floor(1_700_000_000_000), 1_700_000_000_500_000) == 500_000
    assert pacing.behind_us("", 1_700_000_000_000_000) == 0  # nothing handled yet
    assert pacing.behind_us(refid, 1_000) == 0  # a clock behind the mark: not behind


def test_rest_takes_the_share_within_the_bound_only() -> None:
    assert pacing.rest(0.01, 0.25, 1_000_000, 5_000_000) == 0.03  # within: 3x the work
    assert pacing.rest(0.01, 0.25, 6_000_000, 5_000_000) == 0.0  # past the bound
    assert pacing.rest(0.01, 0.25, 60_000_000, 0) == 0.03  # no bound
    assert pacing.rest(0.01, 1.0, 0, 5_000_000) == 0.0  # the whole loop
