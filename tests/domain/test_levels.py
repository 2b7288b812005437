"""Rollup levels: each report reads the smallest level that has its columns."""

from __future__ import annotations

import pytest

from clickback.domain.levels import (
    ALWAYS,
    BLANK_ID,
    DAILY,
    LEVELS,
    daily_level_for,
    level_for,
    masks,
    segments,
    spread,
)
from clickback.domain.rollup_delta import CLICK_FIELDS, Delta


def test_the_smallest_level_with_every_column_is_chosen() -> None:
    assert level_for([]) == 0
    assert level_for(["offer_id", "link_id"]) == 0
    assert level_for(["country"]) == 1
    assert level_for(["device", "browser"]) == 2
    assert level_for(["country", "os"]) == 3
    assert level_for(["advertiser_id", "country"]) == 4
    assert level_for(["affiliate_id", "device"]) == 5
    assert level_for(["sub3"]) == 6
    assert level_for(["sub1", "country"]) == len(LEVELS) - 1


def test_a_click_is_summed_at_every_level_with_the_other_columns_blank() -> None:
    delta = Delta()
    key = (100, 7, "a", "", "", "", "", "DE", "mobile", "iOS", "Safari", "bot", 3, 4, 5)
    assert len(key) == len(CLICK_FIELDS)
    delta.clicks[key] = [2, 1, 0]
    delta.clicks[(100, 8, "b", "", "", "", "", "DE", "mobile", "iOS", "Safari", "", 3, 9, 5)] = [
        1,
        1,
        0,
    ]
    rows = {r[0]: [] for r in delta.click_rows()}
    for r in delta.click_rows():
        rows[r[0]].append(r)
    # fraud flags are kept at every level: the two clicks stay apart by them
    assert rows[1] == [
        (1, 100, 0, "", "", "", "", "", "DE", "", "", "", "bot", 0, 0, 0, 2, 1, 0),
        (1, 100, 0, "", "", "", "", "", "DE", "", "", "", "", 0, 0, 0, 1, 1, 0),
    ]
    assert len(rows[0]) == 2 and rows[0][0][1:4] == (100, 7, "")
    assert len(rows[7]) == 2


def test_a_report_on_one_sub_id_reads_whole_utc_days_from_a_daily_level() -> None:
    assert daily_level_for(["offer_id", "sub1"]) == "d1"
    assert daily_level_for(["link_id", "sub3", "advertiser_id"]) == "d3"
    assert daily_level_for(["offer_id"]) == "d0" and daily_level_for([]) == "d0"
    assert daily_level_for(["country"]) is None
    assert daily_level_for(["sub1", "sub2"]) is None
    assert daily_level_for(["sub1", "country"]) is None
    day = 24 * 20_000
    # from 10:00 on one day to 07:00 three days later: two whole days in between
    assert segments(["offer_id", "sub1"], day + 10, day + 72 + 7, True) == [
        ("6", day + 10, day + 24),
        ("d1", day + 24, day + 72),
        ("6", day + 72, day + 79),
    ]
    assert segments(["sub2"], day, day + 48, True) == [("d2", day, day + 48)]
    assert segments(["sub2"], day, day + 48, False) == [("6", day, day + 48)]  # Berlin days
    assert segments(["sub2"], day + 1, day + 30, True) == [("6", day + 1, day + 30)]
    assert segments(["offer_id"], day, day + 48, True) == [("d0", day, day + 48)]
    assert segments(["country"], day, day + 48, True) == [("1", day, day + 48)]


def test_a_range_that_ends_now_reads_todays_daily_row() -> None:
    day = 24 * 20_000
    now = day + 72 + 13  # 13:xx UTC, three days on; a range up to now ends at 14:00
    assert segments(["sub1"], day, now + 1, True, now) == [("d1", day, day + 96)]
    # from mid-day: hourly up to midnight, then daily through today
    assert segments(["sub1"], day + 10, now + 1, True, now) == [
        ("6", day + 10, day + 24),
        ("d1", day + 24, day + 96),
    ]
    # a range ending earlier today (even at the start of this hour), or in an earlier
    # day, is not extended
    assert segments(["sub1"], day, now, True, now)[-1] == ("6", day + 72, now)
    assert segments(["sub1"], day, now - 2, True, now)[-1] == ("6", day + 72, now - 2)
    assert segments(["sub1"], day, day + 50, True, now)[-1] == ("6", day + 48, day + 50)
    # a range that begins today, up to now: the hourly level alone
    assert segments(["sub1"], day + 80, now + 1, True, now) == [("6", day + 80, now + 1)]


def test_spreading_keeps_each_levels_columns_and_blanks_the_rest() -> None:
    # written out the slow way, from the level definitions, for hourly and daily masks
    key = (100, 7, "a", "b", "c", "d", "e", "DE", "mobile", "iOS", "Safari", "bot", 3, 4, 5)
    for daily, kept in ((False, dict(enumerate(LEVELS))), (True, DAILY)):
        expected = [
            (
                number,
                *(
                    value if name in columns or name in ALWAYS else (0 if name in BLANK_ID else "")
                    for name, value in zip(CLICK_FIELDS, key, strict=True)
                ),
            )
            for number, columns in kept.items()
        ]
        got = spread(key, masks(CLICK_FIELDS, daily=daily))
        assert got == expected
        assert [type(v) for row in got for v in row] == [type(v) for row in expected for v in row]
    with pytest.raises(ValueError):  # a key of the wrong shape is refused, not misread
        spread(key[:-1], masks(CLICK_FIELDS))
    with pytest.raises(ValueError):
        Delta(clicks={key[:-1]: [1, 1, 0]}).click_rows()
