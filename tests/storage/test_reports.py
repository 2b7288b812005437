"""Reports read from the rollups equal reports recomputed from the raw clicks and
conversions: seeded random traffic through the real hot paths on both engines, across
the 2026 DST changes, in several timezones, with status changes and late exchange rates
arriving between runs of the rollup job."""

from __future__ import annotations

from typing import Any

import pytest

from clickback.domain import admin, rollup
from clickback.domain.fraud import fraud_flags
from clickback.domain.ports import Store
from clickback.domain.reports import METRICS, run_report
from clickback.domain.reportspec import build_spec
from clickback.domain.rollup import RollupJob
from clickback.domain.rollup_delta import Delta, Mark
from clickback.domain.timefmt import from_datetime
from clickback.storage import schema
from tests.reports_world import World, build_world, expected, got, raw, value_yen

SPRING = "2026-03-27T00:00:00+00:00"
AUTUMN = "2026-10-23T00:00:00+00:00"

SPRING_BY_LINK = {"tz": "UTC", "from": "2026-03-20", "to": "2026-04-10", "group_by": "link"}


async def spring_clicks(store: Store, clicks: int = 60) -> World:
    """A world (seed 4) with `clicks` clicks over the day from SPRING: a backlog for the
    tests of what the rollup holds."""
    from datetime import datetime

    world = await build_world(store, 4)
    await world.clicks(clicks, datetime.fromisoformat(SPRING), 24)
    return world


CASES: list[dict[str, str]] = [
    {"tz": "Europe/Berlin", "from": "2026-03-27", "to": "2026-03-31", "group_by": "day"},
    {"tz": "Europe/Berlin", "from": "2026-03-28", "to": "2026-03-30", "group_by": "hour"},
    {"tz": "Europe/Berlin", "from": "2026-10-23", "to": "2026-10-27", "group_by": "day,offer"},
    {"tz": "Europe/Berlin", "from": "2026-10-24", "to": "2026-10-26", "group_by": "hour"},
    {
        "tz": "Europe/Berlin",
        "from": "2026-03-27",
        "to": "2026-10-30",
        "group_by": "month,country",
        "by": "click",
    },
    {"tz": "America/New_York", "from": "2026-03-25", "to": "2026-11-01", "group_by": "week"},
    {
        "tz": "UTC",
        "from": "2026-03-20",
        "to": "2026-11-01",
        "group_by": "advertiser,affiliate,link,device,os,browser",
    },
    {"tz": "Asia/Tokyo", "from": "2026-03-27", "to": "2026-03-31", "group_by": "sub1,sub2,day"},
    {"tz": "UTC", "from": "2026-03-27T10:00", "to": "2026-03-29T07:00", "group_by": "offer"},
    # off the hour: widened to the whole hours around the range (10:00 to 08:00)
    {"tz": "UTC", "from": "2026-03-27T10:20", "to": "2026-03-29T07:05", "group_by": "hour"},
    {
        "tz": "Europe/Berlin",
        "from": "2026-03-20",
        "to": "2026-11-01",
        "group_by": "country,device",
        "offer": "2",
        "by": "click",
    },
    {"tz": "UTC", "from": "2026-03-20", "to": "2026-11-01", "group_by": "device,browser"},
    {"tz": "UTC", "from": "2026-03-20", "to": "2026-11-01", "group_by": "country,os"},
    {"tz": "UTC", "from": "2026-03-20", "to": "2026-11-01", "group_by": "offer,country"},
    {"tz": "UTC", "from": "2026-03-20", "to": "2026-11-01", "group_by": "week", "country": "GB"},
    {"tz": "UTC", "from": "2026-03-20", "to": "2026-11-01", "group_by": "sub1", "device": "bot"},
    {"tz": "Asia/Kolkata", "from": "2026-03-27", "to": "2026-03-31", "group_by": "day"},
    {"tz": "Asia/Kolkata", "from": "2026-03-28", "to": "2026-03-29", "group_by": "hour"},
    {"tz": "Australia/Adelaide", "from": "2026-03-26", "to": "2026-04-06", "group_by": "day"},
    # one sub-ID: whole UTC days from the daily level, the hours at either end hourly
    {"tz": "UTC", "from": "2026-03-27T10:00", "to": "2026-10-25T07:00", "group_by": "offer,sub1"},
    {"tz": "UTC", "from": "2026-03-20", "to": "2026-11-01", "group_by": "week,sub2"},
    {"tz": "UTC", "from": "2026-03-20", "to": "2026-11-01", "group_by": "month,affiliate,sub1"},
    {"tz": "Europe/Berlin", "from": "2026-03-27", "to": "2026-10-30", "group_by": "link,sub2"},
    {"tz": "Europe/Berlin", "from": "2026-03-27", "to": "2026-03-31", "group_by": "day,sub1"},
    {"tz": "UTC", "from": "2026-03-26", "to": "2026-10-30", "group_by": "day", "sub1": "a"},
    # an empty filter: the rows whose value is blank
    {"tz": "UTC", "from": "2026-03-26", "to": "2026-10-30", "group_by": "day", "sub1": ""},
    {"tz": "UTC", "from": "2026-03-20", "to": "2026-11-01", "group_by": "offer", "country": ""},
    {"tz": "UTC", "from": "2026-03-20", "to": "2026-11-01", "group_by": "day", "flag": ""},
    {"tz": "UTC", "from": "2026-03-20", "to": "2026-11-01", "group_by": "flag"},
    {"tz": "UTC", "from": "2026-03-20", "to": "2026-11-01", "group_by": "offer", "flag": "bot"},
    {"tz": "UTC", "from": "2026-03-20", "to": "2026-11-01", "group_by": "day", "flag": "none"},
    {"tz": "UTC", "from": "2026-03-20", "to": "2026-11-01", "group_by": "country", "flag": "any"},
    {
        "tz": "Europe/Berlin",
        "from": "2026-03-20",
        "to": "2026-11-01",
        "group_by": "flag,device",
        "flag": "datacenter_ip",
        "by": "click",
    },
]


async def check(store: Store, case: dict[str, str], now_us: int = 0) -> None:
    params = {k: [v] for k, v in case.items()}
    spec = build_spec(params, now_us, METRICS)
    report = await run_report(store, spec, "USD")
    offers = {o["id"]: o for o in await raw(store, "offers")}
    whole = {"whole": "0" if case["tz"] in ("Asia/Kolkata", "Australia/Adelaide") else "1"}
    rows, totals = expected(
        await raw(store, "clicks"), await raw(store, "conversions"), offers, case | whole
    )
    assert got(report) == rows, case
    assert report["totals"] == totals, case
    zone = [n for n in report["notes"] if "not a whole number of hours" in n]
    assert bool(zone) == (whole["whole"] == "0")
    waiting = [n for n in report["notes"] if "wait for an exchange rate" in n]
    assert waiting == (
        [
            f"{totals['missing_rate']} conversion(s) wait for an exchange rate into USD: "
            "counted in conversions, left out of the money until a rate dated on or before"
            " their UTC day is imported"
        ]
        if totals["missing_rate"]
        else []
    ), case


async def check_limits(store: Store) -> None:
    """A report cut to its first rows holds the same rows, in the same order, as the whole
    report, and the same totals; by default the most clicked groups first."""
    newest_first = {"group_by": ["day"], "sort": ["-day"]}
    for extra in ({}, {"sort": ["-commission"]}, {"group_by": ["day,sub1"]}, newest_first):
        params = {"from": ["2026-03-20"], "to": ["2026-11-01"], "group_by": ["link,sub1"]}
        params |= extra
        whole = await run_report(store, build_spec(params, 0, METRICS), "USD")
        cut = await run_report(store, build_spec(params | {"limit": ["3"]}, 0, METRICS), "USD")
        assert whole["total_rows"] == cut["total_rows"] > 3
        assert cut["rows"] == whole["rows"][:3] and cut["totals"] == whole["totals"]
        if not extra:
            clicks = [r["clicks"] for r in whole["rows"]]
            assert clicks == sorted(clicks, reverse=True)
        if extra is newest_first:
            days = [r["day"] for r in whole["rows"]]
            assert days == sorted(days, reverse=True)


@pytest.mark.parametrize(("seed", "batch", "coalesce"), [(7, 97, 0.0), (7, 7, 3600.0)])
async def test_reports_equal_a_recomputation_from_raw_rows(
    store: Store, seed: int, batch: int, coalesce: float
) -> None:
    from datetime import datetime

    world = await build_world(store, seed)
    # small batches: many ticks, many watermarks; clicks wait for the fraud screening;
    # with `coalesce` what a backlog's passes fold (clicks, conversions, status changes,
    # late values) is held and applied together
    job = RollupJob(store, settle=0, batch=batch, after_screening=True, coalesce=coalesce)
    await world.clicks(120, datetime.fromisoformat(SPRING), 4 * 24)
    await world.postbacks(0.4)
    await job.catch_up()  # conversions now, without their flags; clicks wait
    spring = {"from": ["2026-03-20"], "to": ["2026-04-10"]}
    assert (await run_report(store, build_spec(spring, 0), "USD"))["totals"]["clicks"] == 0
    await world.screen()  # flags clicks and conversions already rolled up
    await job.catch_up()
    await world.decide(0.3)  # status changes after their conversions were rolled up
    await world.clicks(120, datetime.fromisoformat(AUTUMN), 4 * 24)
    await world.postbacks(0.2)
    await world.decide(0.3)
    await world.screen()
    await job.catch_up()
    flagged = [c for c in await raw(store, "conversions") if fraud_flags(c["flags"])]
    assert flagged and len(flagged) < len(world.conversions)  # some, not all
    for case in CASES:
        await check(store, case)
    # migration 9 fills the daily links level from the hourly one: the same sums
    write = store._write  # type: ignore[attr-defined]
    for kind in ("clicks", "conversions"):
        await write(f"DELETE FROM report_{kind}_d0")
    for statement in schema.statements(store.engine, 9)[-2:]:
        await write(statement)
    for case in CASES[:9]:
        await check(store, case)
    await check_limits(store)
    # a range up to now (after every row here) reads today's daily row whole
    now = from_datetime(datetime.fromisoformat("2026-11-01T12:30:00+00:00"))
    up_to_now = {"tz": "UTC", "from": "2026-10-20T05:00", "to": "2026-11-01T13:00"}
    await check(store, up_to_now | {"group_by": "offer,sub1"}, now)
    await check(store, up_to_now | {"group_by": "day,sub2", "by": "click"}, now)
    by_offer = await run_report(
        store,
        build_spec({"from": ["2026-03-20"], "to": ["2026-11-01"], "group_by": ["offer"]}, 0),
        "USD",
    )
    revenue = {r["offer_name"]: r["revenue"] for r in by_offer["rows"]}
    assert (
        revenue["Offer 2"] is None and revenue["Offer 0"] and revenue["Offer 1"]
    )  # none, cpa, cps
    await value_yen(store)  # conversions in JPY get their base values late
    await world.decide(0.3)
    await job.catch_up()
    unvalued = [c for c in await raw(store, "conversions") if c["base_amount"] is None]
    assert not unvalued
    for case in CASES:
        await check(store, case)


async def test_held_clicks_are_applied_once_together_and_read_again_after_a_crash(
    store: Store,
) -> None:
    world = await spring_clicks(store)
    case = SPRING_BY_LINK
    spec = build_spec({k: [v] for k, v in case.items()}, 0)
    first = RollupJob(store, settle=0, batch=10, coalesce=3600)
    for _ in range(3):  # full passes of a backlog: held, the watermark stays
        assert await first.tick() == (10, True)
    assert first.clicks_mark == "" and (await run_report(store, spec, "USD"))["rows"] == []
    await store.rollup_release(first.owner)  # the process dies with 30 clicks held

    job = RollupJob(store, settle=0, batch=10, coalesce=3600)
    applies: list[int] = []
    apply = store.rollup_apply

    async def counted(owner: str, old: Mark, new: Mark, delta: Delta) -> bool:
        applies.append(sum(row[-3] for row in delta.click_rows() if row[0] == 0))
        return await apply(owner, old, new, delta)

    store.rollup_apply = counted  # type: ignore[method-assign]
    assert await job.catch_up() == 60
    counted_clicks = len([c for c in await raw(store, "clicks") if not c["is_test"]])
    assert applies == [counted_clicks]  # six passes, one write of their clicks
    report = await run_report(store, spec, "USD")
    assert report["totals"]["clicks"] == counted_clicks > 40  # test clicks left out
    await check(store, case)  # unique visitors too: a visitor held is not new again
    assert job.clicks_mark == max(refid for refid, _ in world.refids)


async def test_held_passes_are_dropped_when_another_process_applied_meanwhile(
    store: Store,
) -> None:
    from datetime import datetime

    await spring_clicks(store)
    case = SPRING_BY_LINK
    now = [from_datetime(datetime.fromisoformat("2026-11-01T12:00:00+00:00"))]
    job = RollupJob(store, settle=0, batch=10, coalesce=3600, clock=lambda: now[0])
    assert await job.tick() == (10, True) and job._held is not None  # held
    first = job._held.mark.clicks_after
    # its lease lapses; another process takes the job and applies what moves no watermark
    # (a gap it found, a late value: what held passes may hold too)
    now[0] += job.lease_us + 1
    mark = await store.rollup_claim("other", now[0], job.lease_us)
    assert mark is not None and mark.clicks_after == ""
    assert await store.rollup_apply("other", mark, mark, Delta(gaps_drop=[("conversion", 0)]))
    await store.rollup_release("other")
    now[0] += 1000
    assert await job.tick() == (10, True)
    # what it held was dropped, and the same clicks read again from the stored watermark
    assert job._held is not None and job._held.mark.clicks_after == first
    assert await job.catch_up() > 0
    await check(store, case)


def keys_applied(store: Store, what: str = "clicks") -> list[int]:
    """The click keys (or `what` else a Delta holds: "facts", one a conversion) of each
    rollup apply on `store` from now on, as they are made."""
    applied: list[int] = []
    apply = store.rollup_apply

    async def counted(owner: str, old: Mark, new: Mark, delta: Delta) -> bool:
        applied.append(len(getattr(delta, what)))
        return await apply(owner, old, new, delta)

    store.rollup_apply = counted  # type: ignore[method-assign]
    return applied


async def test_held_clicks_are_applied_once_they_reach_the_cap(store: Store) -> None:
    await spring_clicks(store)
    job = RollupJob(store, settle=0, batch=10, coalesce=3600)
    job.max_held = 12  # keys (HELD_KEYS when serving)
    held = keys_applied(store)
    assert await job.catch_up() == 60
    # applied as soon as the passes held the cap (a pass adds up to a batch of keys);
    # the last pass, short of a batch, applies what it found at once
    assert len(held) >= 3, held
    assert all(12 <= n < 12 + 10 for n in held[:-1]), held
    case = {"tz": "UTC", "from": "2026-03-20", "to": "2026-04-10", "group_by": "link,sub1"}
    await check(store, case)


async def test_a_backlog_of_conversions_is_held_a_few_passes(store: Store) -> None:
    world = await spring_clicks(store)
    job = RollupJob(store, settle=0, batch=10, coalesce=3600)
    await job.catch_up()  # the clicks first: what follows is a backlog of conversions
    await world.postbacks(1.0)
    every = await raw(store, "conversions")
    stored = [c for c in every if not c["is_test"]]  # test conversions make no fact
    facts = keys_applied(store, "facts")
    await job.catch_up()
    # full passes are held until they hold HELD_PASSES batches (a pass adds up to a
    # batch), then applied together; the last pass, short of a batch, applies what is
    # held at once
    cap, passes = rollup.HELD_PASSES * 10, -(-len(every) // 10)
    assert len(stored) > cap and 1 < len(facts) < passes, facts
    assert all(cap <= n < cap + 10 for n in facts[:-1]), facts
    assert sum(facts) == len(stored), facts
    for case in CASES[:9]:
        await check(store, case)


async def test_a_rate_that_comes_while_conversions_are_held_values_them_at_once(
    store: Store,
) -> None:
    from datetime import datetime

    world = await spring_clicks(store, 80)
    await world.screen()
    now = [from_datetime(datetime.fromisoformat("2026-11-01T12:00:00+00:00"))]
    job = RollupJob(store, settle=0, batch=8, coalesce=3600, clock=lambda: now[0])
    await job.catch_up()
    await world.postbacks(0.9)  # some in JPY, which has no rate yet: folded unvalued
    now[0] += 1000
    assert await job.tick() == (8, True) and job._held is not None  # held
    await value_yen(store)  # the rate comes while that pass is held
    while (await job.tick())[1]:  # the passes after it look for late values, and apply
        now[0] += 1000
    now[0] += 1_000_000  # a second later, well within the minute between looks
    await job.catch_up()
    assert await store.rollup_unvalued(1000) == []  # every fact stored is valued
    for case in CASES[:9]:
        await check(store, case)


async def test_conversions_are_valued_at_the_revenue_terms_they_were_recorded_under(
    store: Store,
) -> None:
    world = await spring_clicks(store, 60)
    await world.screen()
    job = RollupJob(store, settle=0)
    await world.postbacks(0.9)  # some in JPY, which has no rate yet: valued later
    await job.catch_up()
    kept = {c["revenue_terms"] for c in await raw(store, "conversions")}
    assert kept == {"cpa:7.25", "cps:12.5", ""}
    # every offer's terms change after: the conversions recorded before keep theirs, the
    # ones a late rate values too
    for offer_id in {link["offer_id"] for link in world.links}:
        await admin.update_offer(store, offer_id, {"revenue_type": "cps", "revenue_percent": "50"})
    await value_yen(store)
    await job.catch_up()
    assert await store.rollup_unvalued(1000) == []
    for case in CASES[:9]:
        await check(store, case)


async def test_conversions_valued_after_a_look_for_them_are_rolled_up_at_once(
    store: Store,
) -> None:
    """A rate import stores the rates (the version bumped) and then values the waiting
    conversions: a rollup that looked in between found none valued yet. Their valuing
    bumps the version again, so the next pass looks again, not a minute later."""
    from clickback.domain import fx

    world = await spring_clicks(store, 60)
    await world.screen()
    job = RollupJob(store, settle=0)
    await world.postbacks(0.9)  # some in JPY, which has no rate yet
    await job.catch_up()
    await store.put_rates([("JPY", "2020-01-01", "0.0067")])
    await job.catch_up()  # looks: the rate is stored, nothing valued by it yet
    assert (await fx.value_missing(store, "USD"))[0] > 0
    assert await store.rollup_unvalued(1000) != []  # valued, not in the rollups yet
    await job.catch_up()
    assert await store.rollup_unvalued(1000) == []
    for case in CASES[:3]:
        await check(store, case)


async def test_a_large_apply_hands_its_memory_back(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    await spring_clicks(store)
    given_back: list[int] = []  # the keys applied by the tick before each hand-back
    monkeypatch.setattr(rollup, "give_back", lambda: given_back.append(applied[-1]))
    monkeypatch.setattr(rollup, "GIVE_BACK_KEYS", 12)
    job = RollupJob(store, settle=0, batch=10, coalesce=3600)
    job.max_held = 12
    applied = keys_applied(store)
    assert await job.catch_up() == 60
    # once after each apply of 12 keys or more, and only then (not after the ticks that
    # held, nor after the last, short apply)
    assert given_back == [n for n in applied if n >= 12] and given_back, applied


async def test_rerunning_the_job_changes_nothing(store: Store) -> None:
    from datetime import datetime

    world = await build_world(store, 3)
    await world.clicks(60, datetime.fromisoformat(SPRING), 48)
    await world.postbacks(0.5)
    job = RollupJob(store, settle=0)
    await job.catch_up()
    case = {"tz": "UTC", "from": "2026-03-26", "to": "2026-04-02", "group_by": "hour,link"}
    asked = from_datetime(datetime.fromisoformat("2026-04-03T00:00:00+00:00"))
    spec = build_spec({k: [v] for k, v in case.items()}, 0)
    before = await run_report(store, spec, "USD", now_us=asked)
    await job.catch_up()
    second = RollupJob(store, settle=0)  # another process: waits for the lease to lapse
    assert await second.tick() == (0, False)
    after = await run_report(store, spec, "USD", now_us=asked)
    assert before == after and before["totals"]["clicks"] > 0


async def test_a_lapsed_lease_passes_the_job_to_another_process(store: Store) -> None:
    from datetime import datetime, timedelta

    world = await build_world(store, 5)
    now = [1_800_000_000_000_000]  # 2027: every click is settled
    first = RollupJob(store, settle=0, lease=5, clock=lambda: now[0])
    second = RollupJob(store, settle=0, lease=5, clock=lambda: now[0])
    spring = datetime.fromisoformat(SPRING)
    await world.clicks(30, spring, 24)
    assert (await first.tick())[0] == 30
    await world.clicks(20, spring + timedelta(days=2), 24)
    assert await second.tick() == (0, False)  # the first still holds the lease
    now[0] += 6_000_000
    assert (await second.tick())[0] == 20
    assert await first.tick() == (0, False)  # and now the second does
    case = {"tz": "UTC", "from": "2026-03-26", "to": "2026-04-02"}
    report = await run_report(store, build_spec({k: [v] for k, v in case.items()}, 0), "USD")
    clicks = [c for c in await raw(store, "clicks") if not c["is_test"]]
    assert report["totals"]["clicks"] == len(clicks)


COPY = (
    "INSERT INTO conversions (id, refid, offer_id, affiliate_id, advertiser_id, link_id, sub1, "
    "sub2, sub3, sub4, sub5, ordernumber, orderamount, currency, commission, "
    "commission_currency, coupon, geo, commissionid, status, is_test, click_missing, "
    "created_at, clicked_at, rule, flags, base_currency, rate, base_amount, base_commission) "
    "SELECT ?, refid, offer_id, affiliate_id, advertiser_id, link_id, sub1, sub2, sub3, sub4, "
    "sub5, ordernumber || ?, orderamount, currency, commission, commission_currency, coupon, "
    "geo, commissionid, status, is_test, click_missing, created_at, clicked_at, rule, flags, "
    "base_currency, rate, base_amount, base_commission FROM conversions WHERE id = ? "
    "RETURNING id"
)


@pytest.mark.parametrize(("batch", "coalesce"), [(1000, 0.0), (3, 3600.0)])
async def test_a_conversion_committed_after_a_higher_id_is_still_counted(
    store: Store, batch: int, coalesce: float
) -> None:
    """On PostgreSQL a batch holding lower ids may commit after one holding higher ids;
    the job keeps the ids it skipped over and counts them when they appear, once, also
    when passes of a backlog hold what they folded (the gap stays stored till then)."""
    from datetime import datetime, timedelta

    world = await build_world(store, 11)
    await world.clicks(40, datetime.fromisoformat(SPRING), 24)
    await world.postbacks(0.5)
    now = [1_800_000_000_000_000]
    job = RollupJob(store, settle=0, clock=lambda: now[0], batch=batch, coalesce=coalesce)
    await job.catch_up()
    top = max(c["id"] for c in await raw(store, "conversions"))
    late = next(c for c in await raw(store, "conversions") if not c["is_test"])["id"]
    write = store._write  # type: ignore[attr-defined]  # stands in for another process's batch
    await write(COPY, top + 3, "-a", late)
    await job.catch_up()
    assert [(g["kind"], g["id"]) for g in await store.rollup_gaps(10)] == [
        ("conversion", top + 1),
        ("conversion", top + 2),
    ]
    await write(COPY, top + 1, "-b", late)
    await world.clicks(12, datetime.fromisoformat(SPRING) + timedelta(days=1), 24)  # a backlog
    await job.catch_up()
    assert [g["id"] for g in await store.rollup_gaps(10)] == [top + 2]
    case = {"tz": "UTC", "from": "2026-03-20", "to": "2026-04-10", "group_by": "offer"}
    await check(store, case)
    now[0] += 11 * 60 * 1_000_000  # ten minutes on, a gap is given up
    await job.catch_up()
    assert await store.rollup_gaps(10) == []


async def test_more_gaps_than_a_batch_and_one_that_fills_late(store: Store) -> None:
    """More ids skipped over than a tick looks for (PostgreSQL skips one for every
    duplicate postback of another batch): the newest are looked for each tick, and every
    one a last time when it is given up, so a late commit behind many is still counted."""
    from datetime import datetime

    world = await build_world(store, 11)
    await world.clicks(20, datetime.fromisoformat(SPRING), 24)
    await world.postbacks(0.5)
    now = [1_800_000_000_000_000]
    job = RollupJob(store, settle=0, clock=lambda: now[0], batch=2)
    await job.catch_up()
    top = max(c["id"] for c in await raw(store, "conversions"))
    late = next(c for c in await raw(store, "conversions") if not c["is_test"])["id"]
    write = store._write  # type: ignore[attr-defined]
    await write(COPY, top + 9, "-a", late)  # eight ids skipped over
    await job.catch_up()
    fetch = store._fetch  # type: ignore[attr-defined]
    assert len(await fetch("SELECT id FROM report_gaps")) == 8
    await write(COPY, top + 5, "-b", late)  # neither among the oldest nor the newest two
    await write(COPY, top + 8, "-c", late)  # among the newest
    await job.catch_up()
    gaps = [g["id"] for g in await fetch("SELECT id FROM report_gaps")]
    assert top + 8 not in gaps and top + 5 in gaps
    now[0] += 11 * 60 * 1_000_000  # ten minutes on: looked for a last time, given up
    for _ in range(4):
        await job.catch_up()
    assert await fetch("SELECT id FROM report_gaps") == []
    await check(store, {"tz": "UTC", "from": "2026-03-20", "to": "2026-04-10", "group_by": "offer"})


@pytest.mark.parametrize("coalesce", [3600.0, 0.0])
async def test_status_changes_read_out_of_order_land_at_the_current_status(
    store: Store, coalesce: float
) -> None:
    """Changes of one conversion read in another order than made (an id committed after
    a higher one, while passes hold what they folded or not): the conversion ends at the
    status it has, not at the one of the change read last."""
    from datetime import datetime, timedelta

    world = await build_world(store, 4)
    await world.clicks(40, datetime.fromisoformat(SPRING), 24)
    await world.postbacks(0.6)
    job = RollupJob(store, settle=0, batch=5, coalesce=coalesce)
    await job.catch_up()
    pending = [
        c["id"]
        for c in await raw(store, "conversions")
        if c["status"] == "pending" and not c["is_test"]
    ]
    c, d = pending[:2]
    await world.clicks(30, datetime.fromisoformat(SPRING) + timedelta(days=1), 24)  # a backlog
    write = store._write  # type: ignore[attr-defined]
    fetch = store._fetch  # type: ignore[attr-defined]
    top = max([e["id"] for e in await fetch("SELECT id FROM conversion_events")] or [0])
    if store.engine == "postgres":  # new ids out of the way of the ones set below
        await fetch("SELECT setval(pg_get_serial_sequence('conversion_events', 'id'), ?)", top + 10)
    assert await store.transition(d, "pending", "approved", "t", "t")
    await write("UPDATE conversion_events SET id = ? WHERE conversion_id = ?", top + 2, d)
    assert await job.tick() == (5 + 1, True)  # id top + 1 skipped over
    # the change with id top + 1 commits now, and a later one of the same conversion
    assert await store.transition(c, "pending", "approved", "t", "t")
    await write("UPDATE conversion_events SET id = ? WHERE conversion_id = ?", top + 1, c)
    assert await store.transition(c, "approved", "reversed", "t", "t")
    await write(
        "UPDATE conversion_events SET id = ? WHERE conversion_id = ? AND to_status = 'reversed'",
        top + 3,
        c,
    )
    await job.catch_up()
    await check(store, {"tz": "UTC", "from": "2026-03-20", "to": "2026-04-10", "group_by": "offer"})
    facts = {f["conversion_id"]: f["status"] for f in await store.rollup_facts([c, d])}
    assert facts == {c: "reversed", d: "approved"}


async def test_a_conversion_whose_click_commits_after_it_is_reported_by_the_click(
    store: Store,
) -> None:
    """The click in another node's batch that commits after the postback's: the
    conversion is reported under the click's sub-IDs, as under its country and device."""
    from datetime import datetime

    world = await build_world(store, 4)
    await world.clicks(30, datetime.fromisoformat(SPRING), 24)
    click = next(c for c in await raw(store, "clicks") if c["sub1"] and not c["is_test"])
    write = store._write  # type: ignore[attr-defined]
    await write("DELETE FROM clicks WHERE refid = ?", click["refid"])
    world.clock.now = click["created_at"] + 60_000_000
    params = {"refid": click["refid"], "ordernumber": "X-1", "orderamount": "10"}
    answer = await world.tracker.postback("GET", "127.0.0.1", params)
    assert answer.body["status"] == "accepted", answer.body
    names = ", ".join(click)
    await write(
        f"INSERT INTO clicks ({names}) VALUES ({', '.join('?' * len(click))})", *click.values()
    )
    await RollupJob(store, settle=0).catch_up()
    case = {"tz": "UTC", "from": "2026-03-20", "to": "2026-04-10", "group_by": "sub1,country"}
    await check(store, case)
    spec = build_spec({k: [v] for k, v in case.items()}, 0, METRICS)
    rows = (await run_report(store, spec, "USD"))["rows"]
    assert any(r["sub1"] == click["sub1"] and r["conversions"] == 1 for r in rows), rows


async def test_a_group_a_conversion_left_is_no_row(store: Store) -> None:
    """A conversion rolled up unflagged, then flagged by the screening: its first group
    holds sums of 0, which a report by flag `none` does not show as a row."""
    from datetime import datetime
    from urllib.parse import parse_qs, urlsplit

    world = await build_world(store, 4)
    t0 = from_datetime(datetime.fromisoformat("2026-03-27T10:10:00+00:00"))
    world.clock.now = t0
    agent = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
    location = await world.tracker.click(world.links[0]["code"], "", "81.2.69.160", agent, "")
    assert location is not None
    refid = parse_qs(urlsplit(location).query)["refid"][0]
    world.clock.now = t0 + 55 * 60_000_000  # 11:05: a conversion fast enough to be flagged
    params = {"refid": refid, "ordernumber": "Z", "orderamount": "10"}
    assert (await world.tracker.postback("GET", "127.0.0.1", params)).body["status"] == "accepted"
    job = RollupJob(store, settle=0)
    await job.catch_up()  # rolled up before it is screened
    await world.screen()
    await job.catch_up()
    assert "fast_conversion" in (await raw(store, "conversions"))[0]["flags"]
    params_ = {"from": ["2026-03-27"], "to": ["2026-03-27"], "group_by": ["hour"], "flag": ["none"]}
    report = await run_report(store, build_spec(params_, 0, METRICS), "USD")
    assert [r["hour"] for r in report["rows"]] == ["2026-03-27T10:00+00:00"], report["rows"]
    assert report["total_rows"] == 1


async def test_a_click_the_screening_cannot_read_holds_up_neither_it_nor_the_reports(
    store: Store,
) -> None:
    from datetime import datetime

    world = await build_world(store, 13)
    await world.clicks(60, datetime.fromisoformat(SPRING), 24)

    def is_bot(user_agent: str) -> bool:
        if "Googlebot" in user_agent:
            raise ValueError("a parser fault")
        return False

    world.screener = world._screener(is_bot)
    await world.screen()
    clicks = await raw(store, "clicks")
    failed = [c for c in clicks if "Googlebot" in c["user_agent"]]
    assert failed and all(c["flags"] == "screening_failed" for c in failed)
    job = RollupJob(store, settle=0, after_screening=True)
    await job.catch_up()
    case = {"from": ["2026-03-26"], "to": ["2026-03-29"], "group_by": ["flag"]}
    report = await run_report(store, build_spec(case, 0), "USD")
    assert report["totals"]["clicks"] == len([c for c in clicks if not c["is_test"]])
    by_flag = {r["flag"]: r["clicks"] for r in report["rows"]}
    assert by_flag["screening_failed"] == len([c for c in failed if not c["is_test"]])


async def test_click_flags_and_the_watermark_move_only_while_the_lease_is_held(
    store: Store,
) -> None:
    from datetime import datetime

    world = await build_world(store, 17)
    await world.clicks(5, datetime.fromisoformat(SPRING), 1)
    refid = (await raw(store, "clicks"))[0]["refid"]
    now = 1_800_000_000_000_000
    assert await store.acquire_job("screening", "a", now, now + 10) == ""
    assert await store.acquire_job("screening", "b", now + 20, now + 30) == ""  # a lapsed
    assert not await store.flag_clicks([("bot", refid)], "a", refid)  # a, late: nothing
    assert (await raw(store, "clicks"))[0]["flags"] == ""
    assert await store.job_watermark("screening") == ""
    assert await store.flag_clicks([("bot", refid)], "b", refid)
    assert (await raw(store, "clicks"))[0]["flags"] == "bot"
    assert await store.job_watermark("screening") == refid


async def test_a_report_says_until_when_it_is_complete(store: Store) -> None:
    """`complete_until`: the oldest click, conversion or status change the rollups do not
    hold yet (else the time asked); a note says so once that is more than 5 s ago, within
    the report's range."""
    from datetime import datetime

    from clickback.domain.timefmt import iso, now_us

    world = await spring_clicks(store, 20)
    await world.postbacks(0.5)
    spec = build_spec({"from": ["2026-03-20"], "to": ["2026-04-10"]}, 0, METRICS)
    first = min(c["created_at"] for c in await raw(store, "clicks"))
    april = from_datetime(datetime.fromisoformat("2026-04-20T00:00:00+00:00"))
    report = await run_report(store, spec, "USD", now_us=april)
    assert report["complete_until"] == iso(first) and report["totals"]["clicks"] == 0
    [note] = [n for n in report["notes"] if "not in this report yet" in n]
    assert f"since {iso(first)}" in note and "last applied never" in note
    # a second after it: inside the bound, no note
    report = await run_report(store, spec, "USD", now_us=first + 1_000_000)
    assert report["complete_until"] == iso(first)
    assert not [n for n in report["notes"] if "not in this report yet" in n]
    # a range that ends before it: nothing of the range waits
    early = build_spec({"from": ["2026-03-01"], "to": ["2026-03-10"]}, 0, METRICS)
    report = await run_report(store, early, "USD", now_us=april)
    assert not [n for n in report["notes"] if "not in this report yet" in n]

    job = RollupJob(store, settle=0)
    await job.catch_up()
    report = await run_report(store, spec, "USD", now_us=april)
    real = [c for c in await raw(store, "clicks") if not c["is_test"]]
    assert report["complete_until"] == iso(april) and report["totals"]["clicks"] == len(real)
    assert not [n for n in report["notes"] if "not in this report yet" in n]

    # a status change made now waits for the next apply
    async def events() -> list[dict[str, Any]]:
        out = []
        for cid in world.conversions:
            out += (await store.conversion_with_history(cid))[1]
        return out

    before = max([e["id"] for e in await events()], default=0)
    await world.decide(1.0)
    changed = [e for e in await events() if e["id"] > before]
    assert changed
    later = now_us() + 60_000_000
    whole = build_spec({"from": ["2026-03-20"], "to": ["2027-01-01"]}, 0, METRICS)
    report = await run_report(store, whole, "USD", now_us=later)
    oldest = min(e["created_at"] for e in changed)
    assert report["complete_until"] == iso(oldest)
    assert [n for n in report["notes"] if f"since {iso(oldest)}" in n]
    await job.catch_up()
    report = await run_report(store, whole, "USD", now_us=later)
    assert report["complete_until"] == iso(later)
    [note] = [n for n in report["notes"] if "not in this report yet" in n] or [""]
    assert note == ""
