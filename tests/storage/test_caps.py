"""An offer's daily conversion cap, screened on both engines: the conversions past it are
flagged `over_cap` and held (or as the offer's rule says), the count is of one UTC day,
leaves out rejected conversions and the integration tests', and is the same after the
screening changed hands as if one had run throughout."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from clickback.domain import admin, caps, fraud, ledger, lifecycle
from clickback.domain import screener as screener_module
from clickback.domain.ports import Store
from clickback.domain.screener import Screener
from tests.reports_world import World, build_world

S = 1_000_000  # µs
DAY = 86_400 * S
LIMITS = fraud.Thresholds(min_seconds=0, flood_clicks=100, ip_conversions=100)
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
BOT = "Twitterbot/1.0"
LEASE = {"none": 10.0, "restart": 0.2}  # a handover waits for the lease to lapse


def screener(world: World, lease_seconds: float) -> Screener:
    return Screener(
        world.store,
        fraud.ClickScreen(lambda ua: "bot" in ua.lower(), fraud.Networks(), LIMITS),
        fraud.ConversionScreen(lambda ip: "", LIMITS),
        world.tracker.catalog.delivery_state,
        lease_seconds=lease_seconds,
    )


async def _convert(world: World, link: dict[str, Any], order: str, at: int, ua: str = UA) -> int:
    world.clock.now = at
    location = await world.tracker.click(link["code"], "", f"198.51.100.{len(order)}", ua, "")
    assert location is not None
    refid = parse_qs(urlsplit(location).query)["refid"][0]
    params = {"refid": refid, "orderamount": "10", "ordernumber": order}
    answer = await world.tracker.postback("GET", "127.0.0.1", params)
    return int(answer.body["conversion_id"])


async def _handed_over(world: World, job: Screener, handover: str) -> Screener:
    """The screener that takes the next part: the same, or (`restart`) a new one once the
    first's lease lapsed, which counts the day again from the store."""
    if handover == "none":
        return job
    await asyncio.sleep(LEASE[handover] + 0.1)
    return screener(world, LEASE[handover])


async def _flags(store: Store, ids: dict[str, int]) -> dict[str, Any]:
    return {n: ((await store.get_row("conversions", i)) or {}).get("flags") for n, i in ids.items()}


async def _screen(job: Screener) -> None:
    deadline = time.monotonic() + 5
    while await job.catch_up() == (0, 0):  # another's lease is running out
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("handover", ["none", "restart"])
async def test_conversions_past_the_daily_cap_are_held_and_the_count_survives_a_restart(
    store: Store, handover: str
) -> None:
    world = await build_world(store, 7)
    link = world.links[0]
    offer_id = link["offer_id"]
    await admin.update_offer(store, offer_id, {"daily_cap": 2, "fraud_rules": {"bot": "reject"}})
    # a UTC day three days ago, from 10:00, and the next day just after midnight: all
    # long settled
    day = (time.time_ns() // 1000) // DAY * DAY - 3 * DAY
    first = screener(world, LEASE[handover])
    ids: dict[str, int] = {}
    ids["bot"] = await _convert(world, link, "bot", day + 10 * 3600 * S, ua=BOT)
    ids["a"] = await _convert(world, link, "a", day + 11 * 3600 * S)
    ids["test"] = await _convert(world, world.test_link, "test", day + 11 * 3600 * S + S)
    ids["b"] = await _convert(world, link, "b", day + 12 * 3600 * S)
    ids["c"] = await _convert(world, link, "c", day + 13 * 3600 * S)
    await _screen(first)
    second = await _handed_over(world, first, handover)
    ids["d"] = await _convert(world, link, "d", day + 23 * 3600 * S)
    ids["next"] = await _convert(world, link, "next", day + DAY + 1800 * S)
    await _screen(second)

    rows = {n: await store.get_row("conversions", i) or {} for n, i in ids.items()}
    got = {n: (r.get("flags"), r.get("status")) for n, r in rows.items()}
    assert got == {
        "bot": ("bot", "rejected"),  # rejected: not counted
        "a": ("", "approved"),
        "test": ("", "approved"),  # an integration test's: not counted
        "b": ("", "approved"),
        "c": ("over_cap", "pending"),  # the third of the day: held for review
        "d": ("over_cap", "pending"),  # also after a restart, which counted the day again
        "next": ("", "approved"),  # a new UTC day
    }
    _, history = await store.conversion_with_history(ids["c"])
    assert "daily cap of 2" in history[0]["reason"], history


async def test_an_over_cap_rule_of_reject_rejects_and_none_cap_counts_nothing(
    store: Store,
) -> None:
    world = await build_world(store, 8)
    link = world.links[0]
    await admin.update_offer(
        store, link["offer_id"], {"daily_cap": 1, "fraud_rules": {"over_cap": "reject"}}
    )
    day = (time.time_ns() // 1000) // DAY * DAY - 3 * DAY
    job = screener(world, 10.0)
    first = await _convert(world, link, "1", day + 3600 * S)
    second = await _convert(world, link, "2", day + 2 * 3600 * S)
    await _screen(job)
    assert (await store.get_row("conversions", second) or {})["status"] == "rejected"
    assert (await store.get_row("conversions", first) or {})["status"] == "approved"
    # the cap removed: none is over it
    await admin.update_offer(store, link["offer_id"], {"daily_cap": None})
    third = await _convert(world, link, "3", day + 3 * 3600 * S)
    await _screen(job)
    assert (await store.get_row("conversions", third) or {})["flags"] == ""


@pytest.mark.parametrize("handover", ["none", "restart"])
async def test_an_affiliates_own_cap_on_an_offer_holds_its_conversions_alone(
    store: Store, handover: str
) -> None:
    world = await build_world(store, 9)
    capped, other = world.links[0], world.links[1]
    assert capped["offer_id"] == other["offer_id"]
    assert capped["affiliate_id"] != other["affiliate_id"]
    offer_id, affiliate_id = capped["offer_id"], capped["affiliate_id"]
    await caps.set_affiliate_cap(store, offer_id, affiliate_id, {"daily_cap": 1})
    day = (time.time_ns() // 1000) // DAY * DAY - 3 * DAY
    first = screener(world, LEASE[handover])
    ids = {"a": await _convert(world, capped, "a", day + 3600 * S)}
    ids["b"] = await _convert(world, capped, "b", day + 2 * 3600 * S)
    ids["c"] = await _convert(world, other, "c", day + 3 * 3600 * S)
    await _screen(first)
    second = await _handed_over(world, first, handover)
    ids["dd"] = await _convert(world, capped, "dd", day + 4 * 3600 * S)
    ids["ee"] = await _convert(world, other, "ee", day + 5 * 3600 * S)
    await _screen(second)
    got = {n: ((await store.get_row("conversions", i)) or {}).get("flags") for n, i in ids.items()}
    assert got == {"a": "", "b": "over_cap", "c": "", "dd": "over_cap", "ee": ""}
    _, history = await store.conversion_with_history(ids["b"])
    assert history[0]["reason"] == (
        f"over_cap: affiliate {affiliate_id}'s daily cap of 1 on the offer was reached"
    )
    # removed: the affiliate's next conversion is under no cap
    await caps.remove_affiliate_cap(store, offer_id, affiliate_id)
    ids["fff"] = await _convert(world, capped, "fff", day + 6 * 3600 * S)
    await _screen(second)
    assert ((await store.get_row("conversions", ids["fff"])) or {}).get("flags") == ""


@pytest.mark.parametrize("handover", ["none", "restart"])
async def test_an_affiliates_conversions_past_its_own_cap_leave_the_offers_cap_to_others(
    store: Store, handover: str
) -> None:
    world = await build_world(store, 10)
    capped, other = world.links[0], world.links[1]
    offer_id = capped["offer_id"]
    await admin.update_offer(store, offer_id, {"daily_cap": 2})
    await caps.set_affiliate_cap(store, offer_id, capped["affiliate_id"], {"daily_cap": 1})
    day = (time.time_ns() // 1000) // DAY * DAY - 3 * DAY
    first = screener(world, LEASE[handover])
    ids = {
        n: await _convert(world, capped, n, day + (i + 1) * 3600 * S) for i, n in enumerate("abc")
    }
    await _screen(first)
    second = await _handed_over(world, first, handover)
    ids["dd"] = await _convert(world, other, "dd", day + 5 * 3600 * S)
    ids["ee"] = await _convert(world, other, "ee", day + 6 * 3600 * S)
    await _screen(second)
    got = {n: ((await store.get_row("conversions", i)) or {}).get("flags") for n, i in ids.items()}
    # b and c, past the affiliate's own cap, do not count: the other's first is under the
    # offer's cap of 2, its second past it
    assert got == {"a": "", "b": "over_cap", "c": "over_cap", "dd": "", "ee": "over_cap"}


@pytest.mark.parametrize("handover", ["none", "restart"])
async def test_a_conversion_rejected_by_hand_after_its_screening_leaves_the_days_count(
    store: Store, handover: str
) -> None:
    world = await build_world(store, 11)
    # an offer whose conversions wait for review
    link = next(x for x in world.links if x["offer_id"] != world.links[0]["offer_id"])
    await admin.update_offer(store, link["offer_id"], {"daily_cap": 2})
    day = (time.time_ns() // 1000) // DAY * DAY - 3 * DAY
    first = screener(world, LEASE[handover])
    ids = {n: await _convert(world, link, n, day + (i + 1) * 3600 * S) for i, n in enumerate("ab")}
    await _screen(first)
    # both pending for review and counted; the operator rejects one of them
    await lifecycle.change_status(store, ids["a"], "rejected", "duplicate_lead", "api")
    second = await _handed_over(world, first, handover)
    ids["c"] = await _convert(world, link, "c", day + 3 * 3600 * S)
    ids["d"] = await _convert(world, link, "d", day + 4 * 3600 * S)
    await _screen(second)
    # the rejected one no longer counts: c is the day's second, d the third
    assert await _flags(store, ids) == {"a": "", "b": "", "c": "", "d": "over_cap"}


async def test_a_conversion_decided_by_hand_while_it_is_screened_counts_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = await build_world(store, 12)
    link = world.links[0]
    await admin.update_offer(
        store, link["offer_id"], {"daily_cap": 1, "fraud_rules": {"bot": "flag"}}
    )
    day = (time.time_ns() // 1000) // DAY * DAY - 3 * DAY
    job = screener(world, 10.0)
    # approved on arrival; its screening flags it (its click's), a write that holds only
    # while the conversion is as the pass read it
    ids = {"a": await _convert(world, link, "a", day + 3600 * S, ua=BOT)}
    write = store.screen_conversions

    async def reversed_meanwhile(screenings: Any, owner: str, now: int) -> bool:
        # the operator reverses it between the pass's reading and its write: the
        # screening's write of it does not take, and the next pass screens it again
        monkeypatch.setattr(store, "screen_conversions", write)
        await lifecycle.change_status(store, ids["a"], "reversed", "chargeback", "api")
        return await write(screenings, owner, now)

    monkeypatch.setattr(store, "screen_conversions", reversed_meanwhile)
    await _screen(job)
    ids["b"] = await _convert(world, link, "b", day + 2 * 3600 * S)
    await _screen(job)
    row = await store.get_row("conversions", ids["a"]) or {}
    assert (row["status"], row["screened"]) == ("reversed", 1)
    # counted once (a reversed conversion counts): a is the day's first, b past the cap
    assert await _flags(store, ids) == {"a": "bot", "b": "over_cap"}


async def test_a_recount_reads_past_a_run_of_replayed_old_postbacks(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replay keeps its postback's time but is recorded now, among the day's
    conversions: the recount pages back past such a run of old times (a page of them is
    no sign that the day was read through), so the day's count is whole after a
    handover."""
    world = await build_world(store, 13)
    link = world.links[0]
    offer_id = link["offer_id"]
    day = (time.time_ns() // 1000) // DAY * DAY - 3 * DAY
    world.clock.now = day - 5 * DAY
    refids = []
    for _ in range(3):
        location = await world.tracker.click(link["code"], "", "198.51.100.9", UA, "")
        assert location is not None
        refids.append(parse_qs(urlsplit(location).query)["refid"][0])
    await admin.update_offer(store, offer_id, {"status": "paused"})
    await world.tracker.catalog.reload()
    refused = []
    world.clock.now = day - 5 * DAY + S
    for n, refid in zip(("r1", "r2", "r3"), refids, strict=True):  # while it was paused
        params = {"refid": refid, "orderamount": "10", "ordernumber": n}
        answer = await world.tracker.postback("GET", "127.0.0.1", params)
        assert answer.body["code"] == "offer_paused"
        refused.append(answer.ledger_id)
    await admin.update_offer(store, offer_id, {"status": "active", "daily_cap": 3})
    await world.tracker.catalog.reload()
    first = screener(world, LEASE["restart"])
    ids = {n: await _convert(world, link, n, day + (i + 1) * 3600 * S) for i, n in enumerate("ab")}
    world.clock.now = day + 3 * 3600 * S
    for ledger_id in refused:
        replayed = await ledger.replay(store, world.tracker, ledger_id)
        assert replayed.body["status"] == "accepted"
    ids["d"] = await _convert(world, link, "d", day + 4 * 3600 * S)
    await _screen(first)
    monkeypatch.setattr(screener_module, "RECOUNT_PAGE", 2)  # d and r3, r2 and r1, b and a
    second = await _handed_over(world, first, "restart")
    ids["e"] = await _convert(world, link, "e", day + 5 * 3600 * S)
    await _screen(second)
    # a, b and d made the day's three: e is past the cap
    assert await _flags(store, ids) == {"a": "", "b": "", "d": "", "e": "over_cap"}


async def _pass(job: Screener) -> None:
    """A pass by `job` once it holds the job (another's lease may be running out)."""
    deadline = time.monotonic() + 5
    await job.run_once()
    while not job.held_until:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
        await job.run_once()


@pytest.mark.parametrize("handover", ["none", "restart"])
async def test_the_caps_reached_are_stored_once_and_made_to_match_the_counts_and_caps(
    store: Store, handover: str
) -> None:
    world = await build_world(store, 11)
    capped, other = world.links[0], world.links[1]
    offer_id, affiliate_id = capped["offer_id"], capped["affiliate_id"]
    await admin.update_offer(store, offer_id, {"daily_cap": 3})
    await caps.set_affiliate_cap(store, offer_id, affiliate_id, {"daily_cap": 1})
    day = (time.time_ns() // 1000) // DAY * DAY - 3 * DAY
    today = day // DAY
    first = screener(world, LEASE[handover])
    await _convert(world, capped, "a", day + 3600 * S)
    await _screen(first)
    assert await store.caps_reached(today) == {(offer_id, affiliate_id, today)}
    # the affiliate's next is past its own cap, and uses up none of the offer's
    await _convert(world, capped, "b", day + 2 * 3600 * S)
    await _convert(world, other, "c", day + 3 * 3600 * S)
    await _screen(first)
    assert await store.caps_reached(today) == {(offer_id, affiliate_id, today)}
    version = await store.config_version()
    await _convert(world, other, "d", day + 4 * 3600 * S)
    await _screen(first)
    reached = {(offer_id, affiliate_id, today), (offer_id, 0, today)}
    assert await store.caps_reached(today) == reached
    assert await store.config_version() > version  # every cache reloads
    job = await _handed_over(world, first, handover)
    await _pass(job)  # a restart counts again, and finds the same
    assert await store.caps_reached(today) == reached
    # raised: no longer reached; removed: neither; lowered to the count: reached again
    await admin.update_offer(store, offer_id, {"daily_cap": 4})
    await _pass(job)
    assert await store.caps_reached(today) == {(offer_id, affiliate_id, today)}
    await caps.remove_affiliate_cap(store, offer_id, affiliate_id)
    await _pass(job)
    assert await store.caps_reached(today) == set()
    await admin.update_offer(store, offer_id, {"daily_cap": 3})
    await _pass(job)
    assert await store.caps_reached(today) == {(offer_id, 0, today)}
    version = await store.config_version()
    await _pass(job)  # nothing changed: nothing written
    assert await store.config_version() == version
