"""An offer's validation period (`auto_approve_days`): a conversion still pending when it
ends is approved, with its reason in its history, on both engines; one flagged, one
decided meanwhile, an unscreened one and a younger one are not."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qs, urlsplit

from clickback.domain import admin, fraud, ledger, lifecycle
from clickback.domain.ports import Store
from clickback.domain.screener import Screener
from tests.reports_world import World, build_world

S = 1_000_000  # µs
DAY = 86_400 * S
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
LIMITS = fraud.Thresholds(min_seconds=0, flood_clicks=100, ip_conversions=100)


async def _refid(world: World, link: dict[str, object], ua: str = UA) -> str:
    location = await world.tracker.click(str(link["code"]), "", "198.51.100.9", ua, "")
    assert location is not None
    return parse_qs(urlsplit(location).query)["refid"][0]


async def _convert(world: World, link: dict[str, object], order: str, at: int, ua: str = UA) -> int:
    world.clock.now = at
    location = await world.tracker.click(str(link["code"]), "", "198.51.100.9", ua, "")
    assert location is not None
    refid = parse_qs(urlsplit(location).query)["refid"][0]
    params = {"refid": refid, "orderamount": "10", "ordernumber": order}
    answer = await world.tracker.postback("GET", "127.0.0.1", params)
    return int(answer.body["conversion_id"])


async def test_pending_conversions_are_approved_when_their_validation_period_ends(
    store: Store,
) -> None:
    world = await build_world(store, 11)
    review = next(x for x in world.links if x["offer_id"] != world.links[0]["offer_id"])
    offer_id = review["offer_id"]  # an offer whose conversions wait for review
    await admin.update_offer(store, offer_id, {"auto_approve_days": 2, "daily_cap": 2})
    now = time.time_ns() // 1000
    ids = {
        "old": await _convert(world, review, "old", now - 3 * DAY),
        "decided": await _convert(world, review, "decided", now - 3 * DAY + S),
        "capped": await _convert(world, review, "capped", now - 3 * DAY + 2 * S),
        "young": await _convert(world, review, "young", now - DAY),
    }

    def screener(lease: float) -> Screener:
        return Screener(
            store,
            fraud.ClickScreen(lambda ua: False, fraud.Networks(), LIMITS),
            fraud.ConversionScreen(lambda ip: "", LIMITS),
            world.tracker.catalog.delivery_state,
            lease_seconds=lease,
        )

    other, this = screener(0.2), screener(10.0)
    await other.catch_up()  # another process screens them, and holds the lease
    assert await this.approve_due() == 0  # so this one approves nothing
    await asyncio.sleep(0.3)  # the other stops: its lease lapses
    await this.catch_up()
    ids["unscreened"] = await _convert(world, review, "unscreened", now - 3 * DAY + 3 * S)
    await lifecycle.change_status(store, ids["decided"], "rejected", "chargeback", "test")
    assert await this.approve_due() == 1
    got = {n: (await store.get_row("conversions", i) or {}).get("status") for n, i in ids.items()}
    assert got == {
        "old": "approved",
        "decided": "rejected",  # decided by hand before
        "capped": "pending",  # flagged over_cap: waits for a person
        "young": "pending",  # its period runs a day more
        "unscreened": "pending",  # not screened yet
    }
    _, history = await store.conversion_with_history(ids["old"])
    assert [(e["to_status"], e["actor"], e["reason"]) for e in history] == [
        ("approved", "auto_approval", "auto_approved: no decision within 2 days")
    ]
    # an offer without a period: nothing of its own is approved
    await admin.update_offer(store, offer_id, {"auto_approve_days": None})
    await this.catch_up()
    assert await lifecycle.approve_due(store, now) == 0


async def test_flagged_conversions_first_in_line_do_not_hold_up_the_rest(store: Store) -> None:
    world = await build_world(store, 12)
    review = next(x for x in world.links if x["offer_id"] != world.links[0]["offer_id"])
    await admin.update_offer(store, review["offer_id"], {"auto_approve_days": 1})
    now = time.time_ns() // 1000
    bot = await _convert(world, review, "bot", now - 3 * DAY, ua="Twitterbot/1.0")
    fine = await _convert(world, review, "fine", now - 3 * DAY + S)
    job = Screener(
        store,
        fraud.ClickScreen(lambda ua: "bot" in ua.lower(), fraud.Networks(), LIMITS),
        fraud.ConversionScreen(lambda ip: "", LIMITS),
        world.tracker.catalog.delivery_state,
    )
    await job.catch_up()
    # read a conversion at a time: the flagged one, the oldest, is passed over
    more = await _convert(world, review, "more", now - 3 * DAY + 2 * S)
    await job.catch_up()
    assert await lifecycle.approve_due(store, now, page=1, most=1) == 1  # the rest, later
    assert (await store.get_row("conversions", more) or {})["status"] == "pending"
    assert await lifecycle.approve_due(store, now, page=1) == 1
    assert (await store.get_row("conversions", fine) or {})["status"] == "approved"
    assert (await store.get_row("conversions", more) or {})["status"] == "approved"
    assert (await store.get_row("conversions", bot) or {})["status"] == "pending"


async def test_a_replayed_conversion_has_its_whole_period_from_when_it_was_recorded(
    store: Store,
) -> None:
    """A postback refused while the offer was paused and replayed weeks later is judged as
    of its arrival (the attribution window), but is recorded at the replay: its
    validation period runs from then, or the advertiser would have none to reject it."""
    world = await build_world(store, 13)
    review = next(x for x in world.links if x["offer_id"] != world.links[0]["offer_id"])
    offer_id = review["offer_id"]
    now = time.time_ns() // 1000
    arrived, replayed = now - 45 * DAY, now - 5 * DAY
    world.clock.now = arrived
    params = {"refid": await _refid(world, review), "orderamount": "10", "ordernumber": "late"}
    await admin.update_offer(store, offer_id, {"auto_approve_days": 30, "status": "paused"})
    await world.tracker.catalog.reload()
    refused = await world.tracker.postback("GET", "127.0.0.1", params)
    assert refused.body["code"] == "offer_paused"
    await admin.update_offer(store, offer_id, {"status": "active"})
    await world.tracker.catalog.reload()
    world.clock.now = replayed
    answer = await ledger.replay(store, world.tracker, refused.ledger_id)
    assert answer.body["status"] == "accepted" and answer.body["conversion_status"] == "pending"
    cid = int(answer.body["conversion_id"])
    row = await store.get_row("conversions", cid)
    assert row is not None and row["created_at"] == arrived  # its time, as it arrived
    on_time = await _convert(world, review, "on time", arrived)  # pending as long
    await Screener(
        store,
        fraud.ClickScreen(lambda ua: False, fraud.Networks(), LIMITS),
        fraud.ConversionScreen(lambda ip: "", LIMITS),
        world.tracker.catalog.delivery_state,
    ).catch_up()
    assert await lifecycle.approve_due(store, now) == 1
    assert (await store.get_row("conversions", on_time) or {})["status"] == "approved"
    assert (await store.get_row("conversions", cid) or {})["status"] == "pending"
    assert await lifecycle.approve_due(store, replayed + 30 * DAY - S) == 0
    assert await lifecycle.approve_due(store, replayed + 30 * DAY) == 1
    assert (await store.get_row("conversions", cid) or {})["status"] == "approved"


async def test_a_conversion_written_without_recorded_at_is_approved_when_its_period_ends(
    store: Store,
) -> None:
    """During a rolling upgrade, a node still running the code from before migration 20
    writes conversions without `recorded_at`: their period runs from their arrival."""
    world = await build_world(store, 14)
    review = next(x for x in world.links if x["offer_id"] != world.links[0]["offer_id"])
    await admin.update_offer(store, review["offer_id"], {"auto_approve_days": 1})
    now = time.time_ns() // 1000
    old = await _convert(world, review, "old node", now - 3 * DAY)
    young = await _convert(world, review, "old node, young", now - DAY // 2)
    job = Screener(
        store,
        fraud.ClickScreen(lambda ua: False, fraud.Networks(), LIMITS),
        fraud.ConversionScreen(lambda ip: "", LIMITS),
        world.tracker.catalog.delivery_state,
    )
    await job.catch_up()
    await store._write(  # type: ignore[attr-defined]
        "UPDATE conversions SET recorded_at = NULL WHERE id IN (?, ?)", old, young
    )
    assert await lifecycle.approve_due(store, now) == 1
    assert (await store.get_row("conversions", old) or {})["status"] == "approved"
    assert (await store.get_row("conversions", young) or {})["status"] == "pending"
