"""Report parameters: ranges in a timezone, local periods over UTC hours, refusals."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from clickback.domain.reportspec import HOUR_US, build_spec
from clickback.domain.timefmt import from_datetime, iso
from clickback.errors import InputError


def spec(**params: str):  # type: ignore[no-untyped-def]
    return build_spec({k: [v] for k, v in params.items()}, 0)


def test_a_local_date_range_is_whole_local_days_across_dst() -> None:
    s = spec(tz="Europe/Berlin", **{"from": "2026-03-29", "to": "2026-03-29"}, group_by="day")
    assert iso(s.start_hour * HOUR_US) == "2026-03-28T23:00:00Z"
    assert iso(s.end_hour * HOUR_US) == "2026-03-29T22:00:00Z"  # a 23-hour day
    assert s.time is not None and s.time.offsets == ((s.start_hour, 1), (s.start_hour + 2, 2))
    autumn = spec(tz="Europe/Berlin", **{"from": "2026-10-25", "to": "2026-10-25"})
    assert autumn.end_hour - autumn.start_hour == 25


def test_labels_of_periods() -> None:
    s = spec(tz="Europe/Berlin", **{"from": "2026-10-25", "to": "2026-10-25"}, group_by="hour")
    assert s.time is not None
    labels = [s.time.label(h) for h in range(s.start_hour, s.end_hour)]
    assert labels[:4] == [
        "2026-10-25T00:00+02:00",
        "2026-10-25T01:00+02:00",
        "2026-10-25T02:00+02:00",
        "2026-10-25T02:00+01:00",
    ]
    week = spec(group_by="week", **{"from": "2026-03-01", "to": "2026-03-31"})
    assert (
        week.time is not None and week.time.label((20516 + 3) // 7) == "2026-03-02"
    )  # a Wednesday
    month = spec(group_by="month", tz="Asia/Tokyo", **{"from": "2026-01-15", "to": "2026-03-02"})
    assert month.time is not None and len(month.time.month_starts) == 2
    assert [month.time.label(i) for i in range(3)] == ["2026-01", "2026-02", "2026-03"]


def test_half_hour_zones_are_said_to_be_rounded() -> None:
    s = spec(tz="Asia/Kolkata", **{"from": "2026-01-01", "to": "2026-01-01"})
    assert s.notes and iso(s.start_hour * HOUR_US) == "2025-12-31T19:00:00Z"
    assert not spec(tz="America/New_York", **{"from": "2026-01-01", "to": "2026-12-31"}).notes


def test_filters_and_defaults() -> None:
    s = build_spec({"offer": ["1,2", "3"], "country": ["DE"]}, 1_000 * HOUR_US)
    assert s.filters == {"offer_id": (1, 2, 3), "country": ("DE",)}
    assert (s.end_hour - s.start_hour, s.by, s.tz, s.group_by) == (
        168,
        "conversion",
        "UTC",
        ("day",),
    )
    with pytest.raises(InputError):
        spec(tz="Europe/Berlin", **{"from": "9999-12-31", "to": "9999-12-31"})


def test_an_empty_filter_is_the_blank_value() -> None:
    now = 1_000 * HOUR_US
    given = {"sub1": [""], "sub2": ["a", " "], "country": [","], "device": ["bot"]}
    assert build_spec(given, now).filters == {
        "sub1": ("",),
        "sub2": ("a", ""),
        "country": ("",),
        "device": ("bot",),
    }
    assert build_spec({"flag": [""]}, now).filters == {"flags": ("none",)}
    with pytest.raises(InputError) as refused:
        build_spec({"offer": [""]}, now)
    assert refused.value.code == "invalid_filter"


def test_every_local_period_of_a_range_in_order() -> None:
    s = spec(tz="Europe/Berlin", group_by="day", **{"from": "2026-03-28", "to": "2026-03-30"})
    assert s.time is not None
    days = [s.time.label(b) for b in s.time.buckets(s.start_hour, s.end_hour)]
    assert days == ["2026-03-28", "2026-03-29", "2026-03-30"]
    m = spec(tz="UTC", group_by="month", **{"from": "2026-01-01", "to": "2026-03-31"})
    assert m.time is not None
    assert [m.time.label(b) for b in m.time.buckets(m.start_hour, m.end_hour)] == [
        "2026-01",
        "2026-02",
        "2026-03",
    ]


def test_every_iso_date_form_is_a_whole_day() -> None:
    dashed = spec(**{"from": "2026-03-28", "to": "2026-03-28"})
    assert (dashed.start_hour, dashed.end_hour) == (
        spec(**{"from": "20260328", "to": "20260328"}).start_hour,
        spec(**{"from": "20260328", "to": "20260328"}).end_hour,
    )
    assert dashed.end_hour - dashed.start_hour == 24
    week_day = spec(**{"from": "2026-W13-6", "to": "2026-W13-6"})  # Saturday 2026-03-28
    assert (week_day.start_hour, week_day.end_hour) == (dashed.start_hour, dashed.end_hour)
    timed = spec(**{"from": "2026-03-28T06:00", "to": "2026-03-28T18:00"})
    assert timed.end_hour - timed.start_hour == 12


def test_single_parameters_given_twice_are_refused() -> None:
    for name, values in {"sort": ["clicks", "-clicks"], "tz": ["UTC", "Europe/Berlin"]}.items():
        with pytest.raises(InputError) as refused:
            build_spec({name: values, "group_by": ["day"]}, 1_000 * HOUR_US, ["clicks"])
        assert refused.value.field == name


def test_a_times_offset_whose_plus_arrived_as_a_space_is_read_as_plus() -> None:
    """`from=2026-03-01T10:00:00+01:00` typed into a URL unencoded decodes to a space
    before `01:00`: the same moment as the encoded form, not a 400."""
    spaced = spec(tz="UTC", **{"from": "2026-03-01T10:00:00 01:00", "to": "2026-03-02"})
    assert iso(spaced.start_hour * HOUR_US) == "2026-03-01T09:00:00Z"
    encoded = spec(tz="UTC", **{"from": "2026-03-01T10:00:00+01:00", "to": "2026-03-02"})
    assert spaced.start_hour == encoded.start_hour


def test_a_limit_too_long_for_int_is_refused_not_a_crash() -> None:
    for limit in ("9" * 5000, "0" * 5000 + "5", "10001"):
        with pytest.raises(InputError) as refused:
            build_spec({"limit": [limit]}, 1_000 * HOUR_US)
        assert refused.value.code == "invalid_limit"
    assert build_spec({"limit": ["00050"]}, 1_000 * HOUR_US).limit == 50


def test_times_off_the_hour_widen_the_range_to_whole_hours_and_say_so() -> None:
    """Reports add up hourly rollups: `from` goes back to its hour and `to` on to the end
    of its hour, so the report covers what was asked, and its notes say so. They went
    up, both: `from=<this hour>:01` was refused and `from=14:30` dropped half an hour."""
    now = from_datetime(datetime(2026, 3, 1, 14, 40, tzinfo=UTC))
    this_hour = build_spec({"from": ["2026-03-01T14:01"]}, now)
    assert (iso(this_hour.start_hour * HOUR_US), iso(this_hour.end_hour * HOUR_US)) == (
        "2026-03-01T14:00:00Z",
        "2026-03-01T15:00:00Z",
    )
    [note] = this_hour.notes
    assert "whole" in note and "`from` back to 2026-03-01T14:00:00Z" in note
    s = spec(**{"from": "2026-03-01T14:30", "to": "2026-03-01T15:01"})
    assert (iso(s.start_hour * HOUR_US), iso(s.end_hour * HOUR_US)) == (
        "2026-03-01T14:00:00Z",
        "2026-03-01T16:00:00Z",
    )
    [note] = s.notes
    assert "`from` back to 2026-03-01T14:00:00Z" in note and "`to` on to 2026-03-01T16:00" in note
    berlin = spec(tz="Europe/Berlin", **{"from": "2026-03-01T15:30", "to": "2026-03-01T15:45"})
    assert (berlin.start_hour, berlin.end_hour - berlin.start_hour) == (s.start_hour, 1)
    assert not spec(**{"from": "2026-03-01T14:00", "to": "2026-03-01T16:00"}).notes
    with pytest.raises(InputError) as refused:  # empty: from after to, in one hour
        spec(**{"from": "2026-03-01T14:30", "to": "2026-03-01T14:10"})
    assert refused.value.code == "invalid_range"


def test_a_range_within_an_hour_of_a_half_hour_zone_is_that_hour() -> None:
    """In Asia/Kolkata bounds go up to whole UTC hours (each hour counts in the local
    period it starts in); a range that leaves no hour so is given the hour it lies in."""
    s = spec(tz="Asia/Kolkata", **{"from": "2026-03-01T10:05", "to": "2026-03-01T10:20"})
    assert (iso(s.start_hour * HOUR_US), s.end_hour - s.start_hour) == ("2026-03-01T04:00:00Z", 1)
    assert s.notes


def test_country_and_device_filters_refuse_values_no_row_can_hold() -> None:
    now = 1_000 * HOUR_US
    given = {"country": ["us,de", ""], "device": ["mobile", ""]}
    assert build_spec(given, now).filters == {
        "country": ("US", "DE", ""),
        "device": ("mobile", ""),
    }
    for name, typo in (("country", "XX"), ("country", "USA"), ("device", "phone")):
        with pytest.raises(InputError) as refused:
            build_spec({name: ["DE", typo]}, now)
        assert (refused.value.code, refused.value.field) == ("invalid_filter", name)
        assert typo in refused.value.message
    # open-ended dimensions still take any value
    assert build_spec({"os": ["Plan 9"]}, now).filters == {"os": ("Plan 9",)}
