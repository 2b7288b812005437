"""The fraud screens' time windows: exact counts within the window past the limit, and
memory that holds the window's events only (no count per visitor), however many
visitors passed through it."""

from __future__ import annotations

import random

from clickback.domain.fraud import (
    ClickScreen,
    ConversionScreen,
    Networks,
    SlidingCounts,
    Thresholds,
    counts_for_caps,
)

S = 1_000_000  # µs
LIMITS = Thresholds(min_seconds=10.0, flood_clicks=3, ip_conversions=2)


def click_screen() -> ClickScreen:
    return ClickScreen(lambda ua: False, Networks(), LIMITS)


def test_counts_are_per_key_and_keep_an_event_exactly_one_window_old() -> None:
    counts = SlidingCounts(60 * S, limit=0)  # every count past the limit: all exact
    assert [counts.add("a", t * S) for t in (0, 10, 20)] == [1, 2, 3]
    assert counts.add("b", 30 * S) == 1
    assert counts.add("a", 60 * S) == 4  # the event at 0 is exactly a window old: kept
    assert counts.add("a", 60 * S + 1) == 4  # ... and gone a microsecond later
    assert counts.add("a", 90 * S + 1) == 3  # 60, 60+1, 90+1 (the one at 20 and 10 left)
    assert counts.exact_keys() == 1  # "b" left with its only event
    assert len(counts) == 3


def test_keys_sharing_a_counter_are_told_apart_past_the_limit() -> None:
    # two counters for many keys: the heavy key's counter is shared with light ones
    counts = SlidingCounts(60 * S, limit=3, slots=2)
    heavy = [counts.add("heavy", t * S) for t in range(6)]
    assert heavy[3:] == [4, 5, 6]  # past the limit: its own count, exactly
    assert all(n <= 3 for n in heavy[:3])
    light = [counts.add(f"light-{i}", 10 * S + i) for i in range(20)]
    assert all(n <= 3 for n in light)  # each seen once: never past the limit
    assert counts.add("heavy", 20 * S) == 7
    # a minute on, its first six events have left: counted on exactly (20 s and this)
    assert counts.add("heavy", 65 * S + 1) == 2
    for t in range(4):
        counts.add("light-0", (70 + t) * S)
    assert counts.add("light-0", 74 * S) == 5  # 70, 71, 72, 73, 74: exact past 3


def test_many_visitors_leave_no_count_each() -> None:
    counts = SlidingCounts(60 * S, limit=20)
    assert all(counts.add((f"v{i}", 1), i) <= 20 for i in range(100_000))
    assert (len(counts), counts.exact_keys()) == (100_000, 0)


def test_click_flood_is_more_than_the_limit_within_a_minute_per_ip_and_link() -> None:
    screen = click_screen()
    flagged = [screen.flags("1.2.3.4", 7, "ua", t * S) for t in range(5)]
    assert flagged == [[], [], [], ["click_flood"], ["click_flood"]]
    assert screen.flags("1.2.3.4", 8, "ua", 5 * S) == []  # another link
    assert screen.flags("1.2.3.5", 7, "ua", 5 * S) == []  # another address
    # a minute after the third click, two of the five are left in the window: 3 with this
    assert screen.flags("1.2.3.4", 7, "ua", 62 * S + 500_000) == []
    assert screen.flags("1.2.3.4", 7, "ua", 62 * S + 600_000) == ["click_flood"]


def test_click_screen_forgets_visitors_as_their_minute_ends_without_a_sweep() -> None:
    screen = click_screen()
    for i in range(10_000):  # every click from another address, within ten seconds
        assert screen.flags(f"10.{i >> 8 & 255}.{i & 255}.1", 1, "ua", i * 1000) == []
    assert (len(screen.recent), screen.recent.exact_keys()) == (10_000, 0)
    screen.flags("192.0.2.1", 1, "ua", 71 * S)  # no call to forget_before
    assert len(screen.recent) == 1
    # the left events' room was given back: counting goes on from the event kept
    assert screen.recent.add(("192.0.2.1", 1), 72 * S) == 2
    screen.forget_before(200 * S)
    assert len(screen.recent) == 0


def test_ip_conversions_counts_a_day_and_forgets_addresses_that_do_not_come_back() -> None:
    screen = ConversionScreen(lambda ip: "", LIMITS)

    def flags(ip: str, at_us: int) -> list[str]:
        conversion = {"created_at": at_us, "clicked_at": at_us - 3600 * S, "geo": ""}
        return screen.flags(conversion, {"flags": "", "ip": ip})

    day = 86_400 * S
    assert [flags("198.51.100.7", h * 3600 * S) for h in range(3)] == [
        [],
        [],
        ["ip_conversions"],
    ]
    for i in range(1_000):
        assert flags(f"10.0.{i >> 8}.{i & 255}", 3 * 3600 * S + i) == []
    assert (len(screen.by_ip), screen.by_ip.exact_keys()) == (1_003, 1)
    # a day after the first three: only this one is held; the address starts afresh
    assert flags("198.51.100.7", 3 * 3600 * S + day + 1_000) == []
    assert (len(screen.by_ip), screen.by_ip.exact_keys()) == (1, 0)


def test_a_rolled_back_pass_leaves_the_counts_as_they_were_before_it() -> None:
    """Counts past a rolled-back pass (its events forgotten, those it pushed out of the
    window counted again) are those of a counter that never saw the pass, exactly past
    the limit; a committed pass is kept."""
    rng = random.Random(7)
    for _ in range(200):
        limit = rng.randrange(0, 4)
        kept = SlidingCounts(10 * S, limit, slots=4)  # few counters: shared, checked
        clean = SlidingCounts(10 * S, limit, slots=4)
        at = 0
        for _ in range(rng.randrange(3)):  # passes, each kept or rolled back
            before = [(rng.choice("abcde"), at := at + rng.randrange(3 * S)) for _ in range(8)]
            for key, t in before:
                assert (kept.add(key, t) > limit) == (clean.add(key, t) > limit)
            kept.begin()
            for _ in range(rng.randrange(12)):
                kept.add(rng.choice("abcde"), at + rng.randrange(20 * S))
            kept.rollback()
        after = [(rng.choice("abcde"), at := at + rng.randrange(3 * S)) for _ in range(20)]
        got = [kept.add(key, t) for key, t in after]
        want = [clean.add(key, t) for key, t in after]
        assert [n if n > limit else 0 for n in got] == [n if n > limit else 0 for n in want]
        assert len(kept) == len(clean)
    counts = SlidingCounts(60 * S, limit=0)
    counts.begin()
    counts.add("a", 0)
    counts.commit()
    counts.rollback()  # nothing begun: nothing undone
    assert counts.add("a", S) == 2


def test_daily_caps_count_per_offer_affiliate_and_utc_day_roll_back_and_forget_old_days() -> None:
    screen = ConversionScreen(lambda ip: "", LIMITS)
    day = 86_400 * S
    first = 20_000 * day  # a UTC midnight

    def conversion(
        offer: int, at: int, cap: int | None = 2, affiliate: int = 7, own: int | None = None
    ) -> dict[str, object]:
        return {
            "offer_id": offer,
            "affiliate_id": affiliate,
            "created_at": at,
            "daily_cap": cap,
            "affiliate_daily_cap": own,
            "is_test": 0,
        }

    assert counts_for_caps(False, "approved", [""]) and counts_for_caps(False, "pending", [])
    assert not counts_for_caps(True, "approved", [])  # an integration test's
    assert not counts_for_caps(False, "rejected", [])
    assert not counts_for_caps(False, "pending", ["over_cap"])  # past a cap itself
    screen.count_capped(1, 7, first + 5, True)
    screen.count_capped(1, 8, first + 6, True)
    screen.count_capped(1, 8, first + 6, False)
    screen.count_capped(2, 7, first + 7, True)
    assert screen.over_cap(conversion(1, first + 8)) == "the offer's daily cap of 2 was reached"
    assert not screen.over_cap(conversion(1, first + 8, cap=3))
    assert not screen.over_cap(conversion(1, first + 8, cap=None))
    assert not screen.over_cap(conversion(2, first + 8))
    assert not screen.over_cap(conversion(1, first + day))  # the next UTC day
    # affiliate 7's own cap of 1 on offer 1: reached; affiliate 9's: not
    assert screen.over_cap(conversion(1, first + 8, cap=None, own=1)) == (
        "affiliate 7's daily cap of 1 on the offer was reached"
    )
    assert not screen.over_cap(conversion(1, first + 8, cap=None, affiliate=9, own=1))
    screen.begin()
    screen.count_capped(2, 7, first + 9, True)
    screen.count_capped(2, 7, first + 2 * day, True)
    # a day before yesterday (a late replay) is neither capped nor counted
    assert not screen.over_cap(conversion(1, first + 10))
    screen.count_capped(1, 7, first + 10, True)
    screen.rollback()
    assert not screen.over_cap(conversion(2, first + 10))  # the pass's count undone
    assert screen.over_cap(conversion(1, first + 10))  # and the first day is current again
    screen.begin()
    screen.count_capped(2, 7, first + 2 * day, True)
    screen.commit()
    screen.begin()  # the days before yesterday are dropped
    assert screen.capped == {(2, 0, 20_002): 1, (2, 7, 20_002): 1}
