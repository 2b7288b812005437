"""Fraud flags through the real app and its screening job, on both engines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from clickback.config import Settings
from clickback.domain.ports import Store
from clickback.web.app import ClickbackApp
from tests.conftest import ADMIN, AUTH, make_offer

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0"


@pytest.fixture
async def fc(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    """The app behind a trusted proxy (so tests choose client IPs), screening often."""
    settings = Settings(
        database_url="unused",
        admin_token=ADMIN,
        public_url="http://t",
        trusted_proxies=("203.0.113.0/28",),
        jobs_poll_seconds=0.05,
        fraud_flood_clicks=5,
        fraud_ip_conversions=2,
    )
    app = ClickbackApp(settings, store)
    await app.startup()
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4444))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c
    await app.shutdown()


async def visit(c: httpx.AsyncClient, code: str, ip: str, ua: str = BROWSER) -> str:
    r = await c.get(f"/c/{code}", headers={"X-Forwarded-For": ip, "User-Agent": ua})
    return str(r.headers["location"].split("refid=")[1])


async def fire(c: httpx.AsyncClient, refid: str, order: str, ip: str) -> dict[str, Any]:
    r = await c.get(
        "/postback",
        params={"refid": refid, "orderamount": "10", "ordernumber": order},
        headers={"X-Forwarded-For": ip},
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


async def screened(c: httpx.AsyncClient, order: str) -> dict[str, Any]:
    """The conversion once the screening job has seen it (it answers within a second)."""
    deadline = time.monotonic() + 10
    while True:
        [conv] = (await c.get(f"/api/v1/conversions?ordernumber={order}", headers=AUTH)).json()[
            "items"
        ]
        detail = (await c.get(f"/api/v1/conversions/{conv['id']}", headers=AUTH)).json()
        if conv["flags"] != [] or detail["history"] or time.monotonic() > deadline:
            return dict(detail)
        await asyncio.sleep(0.05)


async def test_fast_conversion_is_flagged_and_a_hold_rule_keeps_it_pending(
    fc: httpx.AsyncClient,
) -> None:
    s = await make_offer(fc, fraud_rules={"fast_conversion": "hold"})
    refid = await visit(fc, s["link"]["code"], "81.2.69.160")
    body = await fire(fc, refid, "FAST", "81.2.69.160")  # well within 10 s of the click
    assert body["conversion_status"] == "approved"  # screening follows, off the hot path
    conv = await screened(fc, "FAST")
    assert "fast_conversion" in conv["flags"] and conv["status"] == "pending"
    assert conv["history"][0]["actor"] == "fraud_screening"
    listed = await fc.get("/api/v1/conversions", params={"flag": "fast_conversion"}, headers=AUTH)
    assert [x["ordernumber"] for x in listed.json()["items"]] == ["FAST"]


async def test_bot_click_is_flagged_and_its_conversion_rejected_by_rule(
    fc: httpx.AsyncClient,
) -> None:
    s = await make_offer(fc, fraud_rules={"bot": "reject"})
    refid = await visit(fc, s["link"]["code"], "81.2.69.160", ua="Twitterbot/1.0")
    # converted at once, before the click could be flagged: screening waits for the click
    await fire(fc, refid, "BOT", "81.2.69.160")
    conv = await screened(fc, "BOT")
    assert "bot" in conv["flags"] and conv["status"] == "rejected"
    clicks = (await fc.get("/api/v1/clicks", params={"flag": "bot"}, headers=AUTH)).json()
    assert [x["refid"] for x in clicks["items"]] == [refid]


async def test_click_flood_geo_mismatch_and_many_conversions_from_one_ip(
    fc: httpx.AsyncClient,
) -> None:
    s = await make_offer(fc)
    refids = [await visit(fc, s["link"]["code"], "8.8.8.8") for _ in range(8)]
    deadline = time.monotonic() + 10
    while True:
        flood = (
            await fc.get("/api/v1/clicks", params={"flag": "click_flood"}, headers=AUTH)
        ).json()["items"]
        if len(flood) >= 3 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert len(flood) == 3  # more than 5 within a minute: the 6th, 7th and 8th
    # clicked in the US (8.8.8.8), converted from Great Britain (81.2.69.160)
    for i, refid in enumerate(refids[:3]):
        await fire(fc, refid, f"G{i}", "81.2.69.160")
    first, third = await screened(fc, "G0"), await screened(fc, "G2")
    assert "geo_mismatch" in first["flags"] and first["status"] == "approved"  # rule: flag
    assert "ip_conversions" in third["flags"] and "ip_conversions" not in first["flags"]
