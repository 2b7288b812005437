"""Conversions recorded without a rate are valued by the screening's holder once new
rates were stored and every process had them, also those that an import's own pass
missed (recorded meanwhile by a process that still had the rates before), on both
engines."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from clickback.domain import fraud, screener
from clickback.domain.lifecycle import DeliveryState
from clickback.domain.ports import Store
from clickback.domain.screener import Screener
from tests.reports_world import build_world

LIMITS = fraud.Thresholds(min_seconds=0, flood_clicks=100, ip_conversions=100)
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"


def _screener(store: Store, delivery: DeliveryState, base: str | None) -> Screener:
    return Screener(
        store,
        fraud.ClickScreen(lambda ua: False, fraud.Networks(), LIMITS),
        fraud.ConversionScreen(lambda ip: "", LIMITS),
        delivery,
        lease_seconds=10.0,
        base_currency=base,
    )


async def test_a_conversion_the_rates_import_missed_is_valued_by_the_screenings_holder(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = await build_world(store, 21)
    link = world.links[0]
    world.clock.now = time.time_ns() // 1000 - 3_600_000_000
    location = await world.tracker.click(link["code"], "", "198.51.100.7", UA, "")
    assert location is not None
    refid = parse_qs(urlsplit(location).query)["refid"][0]
    params = {"refid": refid, "orderamount": "20", "ordernumber": "GBP-1", "currency": "GBP"}
    answer = await world.tracker.postback("GET", "127.0.0.1", params)
    cid = int(answer.body["conversion_id"])
    row = await store.get_row("conversions", cid) or {}
    assert row["rate"] is None and "missing_rate" in row["flags"]
    # the rates arrive as an import stores them, but its own pass ran before this
    # conversion was recorded: nothing values it but the screening's holder
    day = time.strftime("%Y-%m-%d", time.gmtime(world.clock.now // 1_000_000))
    await store.put_rates([("GBP", day, "1.25")])
    monkeypatch.setattr(screener, "RATES_SETTLE_US", 0)
    job = _screener(store, world.tracker.catalog.delivery_state, "USD")
    other = _screener(store, world.tracker.catalog.delivery_state, "USD")
    await job.catch_up()  # takes the lease
    await other.catch_up()
    assert await other.value_late() == 0  # not the holder
    assert await job.value_late() == 1
    row = await store.get_row("conversions", cid) or {}
    assert (row["rate"], row["base_amount"], row["base_currency"]) == ("1.25", 2500, "USD")
    assert "missing_rate" not in row["flags"]
    assert await job.value_late() == 0  # the same rates: not read again
    # rates stored just now wait for every process's cache to have them
    monkeypatch.setattr(screener, "RATES_SETTLE_US", 60_000_000)
    await store.put_rates([("CHF", day, "1.1")])
    await asyncio.sleep(0)
    assert await job.value_late() == 0 and job.rates_seen != await store.rates_changed_at()
