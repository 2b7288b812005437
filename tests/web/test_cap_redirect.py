"""An offer with `cap_redirect` sends its links' clicks to the fallback URL once a daily
cap is reached (as the screening job counts it), through the real app, on both engines."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from clickback.domain.ports import Store
from clickback.web.app import ClickbackApp
from tests.conftest import ADMIN, AUTH, make_offer, status
from tests.web.test_fraud import fire, fraud_app, visit
from tests.web.test_ui import login

DAY_US = 86_400_000_000
ELSEWHERE = "https://shop.example/elsewhere"
LANDING = "https://shop.example/land"


@pytest.fixture
async def capped(store: Store) -> AsyncIterator[tuple[ClickbackApp, httpx.AsyncClient]]:
    async with fraud_app(store, fraud_min_seconds=0, cache_check_seconds=0.05) as (app, c):
        yield app, c


async def where(c: httpx.AsyncClient, code: str) -> str:
    r = await c.get(f"/c/{code}", headers={"X-Forwarded-For": "81.2.69.160"})
    assert r.status_code == 302, r.text
    return str(r.headers["location"])


async def until(c: httpx.AsyncClient, code: str, check: Callable[[str], bool]) -> str:
    """Where the link sends a click once `check` holds of it (within 5 s: the screening
    and every cache's reload take a second at most)."""
    deadline = time.monotonic() + 5
    while True:
        location = await where(c, code)
        if check(location) or time.monotonic() > deadline:
            return location
        await asyncio.sleep(0.05)


def landing(location: str) -> bool:
    return location.startswith(LANDING + "?refid=")


async def convert(c: httpx.AsyncClient, code: str, order: str) -> int:
    body = await fire(c, await visit(c, code, "81.2.69.160"), order, "81.2.69.160")
    return int(body["conversion_id"])


async def screened(store: Store, *conversion_ids: int) -> None:
    deadline = time.monotonic() + 5
    for cid in conversion_ids:
        while not ((await store.get_row("conversions", cid)) or {}).get("screened"):
            assert time.monotonic() < deadline, cid
            await asyncio.sleep(0.05)


async def clicks(c: httpx.AsyncClient) -> int:
    listed = (await c.get("/api/v1/clicks", params={"limit": 200}, headers=AUTH)).json()
    return len(listed["items"])


async def test_an_offer_past_its_daily_cap_sends_clicks_to_its_fallback_url(
    store: Store,
    capped: tuple[ClickbackApp, httpx.AsyncClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, c = capped
    redirecting = await make_offer(c, daily_cap=1, cap_redirect=True, fallback_url=ELSEWHERE)
    kept = await make_offer(c, daily_cap=1, fallback_url=ELSEWHERE)  # cap_redirect off
    nowhere = await make_offer(c, daily_cap=1, cap_redirect=True)  # no fallback URL at all
    ids = [
        await convert(c, s["link"]["code"], f"O-{i}")
        for i, s in enumerate([redirecting, kept, nowhere])
    ]
    await screened(store, *ids)
    code = redirecting["link"]["code"]
    caplog.set_level(logging.DEBUG, logger="clickback.fallback")
    assert await until(c, code, lambda url: url == ELSEWHERE) == ELSEWHERE
    before = await clicks(c)
    assert await where(c, code) == ELSEWHERE  # no RefID, and no click stored
    assert await clicks(c) == before
    assert f"cap_reached offer={redirecting['offer']['id']}" in caplog.text
    await login(c, ADMIN)
    assert "the offer's cap, reached at 20" in await capped_today(c, redirecting["offer"]["id"])
    # without cap_redirect, or with nowhere else to send them, the links keep redirecting
    assert landing(await where(c, kept["link"]["code"]))
    assert landing(await where(c, nowhere["link"]["code"]))
    assert await clicks(c) == before + 2


async def test_an_affiliates_own_cap_sends_only_its_links_clicks_elsewhere_until_removed(
    store: Store, capped: tuple[ClickbackApp, httpx.AsyncClient]
) -> None:
    _, c = capped
    s = await make_offer(c, cap_redirect=True, fallback_url=ELSEWHERE)
    offer_id, first = s["offer"]["id"], s["affiliate"]["id"]
    other = (await c.post("/api/v1/affiliates", json={"name": "Other"}, headers=AUTH)).json()
    link = {"offer_id": offer_id, "affiliate_id": other["id"]}
    others = (await c.post("/api/v1/links", json=link, headers=AUTH)).json()
    cap_url = f"/api/v1/offers/{offer_id}/caps/{first}"
    assert (await c.put(cap_url, json={"daily_cap": 1}, headers=AUTH)).status_code == 200
    await screened(store, await convert(c, s["link"]["code"], "AFF-1"))
    assert await until(c, s["link"]["code"], lambda url: url == ELSEWHERE) == ELSEWHERE
    assert landing(await where(c, others["code"]))  # the offer itself is not capped
    await login(c, ADMIN)
    assert f"affiliate #{first}'s cap, reached at" in await capped_today(c, offer_id)
    assert (await c.delete(cap_url, headers=AUTH)).status_code == 204
    assert landing(await until(c, s["link"]["code"], landing))
    assert await capped_today(c, offer_id) == "no cap reached"


async def capped_today(c: httpx.AsyncClient, offer_id: int) -> str:
    """What the dashboard's offer page says of the caps reached today."""
    page = (await c.get(f"/ui/offers/{offer_id}")).text
    return page.split('id="caps-reached">', 1)[1].split("</dd>", 1)[0]


async def test_a_cap_unreached_by_a_rejection_or_a_raise_serves_again(
    store: Store, capped: tuple[ClickbackApp, httpx.AsyncClient]
) -> None:
    _, c = capped
    s = await make_offer(
        c, daily_cap=1, cap_redirect=True, fallback_url=ELSEWHERE, approval="review"
    )
    code, offer_url = s["link"]["code"], f"/api/v1/offers/{s['offer']['id']}"
    first = await convert(c, code, "R-1")
    await screened(store, first)
    assert await until(c, code, lambda url: url == ELSEWHERE) == ELSEWHERE
    # rejected by hand: the day's count is made again, under the cap
    assert (await status(c, first, "rejected")).status_code == 200
    assert landing(await until(c, code, landing))
    await screened(store, await convert(c, code, "R-2"))
    assert await until(c, code, lambda url: url == ELSEWHERE) == ELSEWHERE
    # raised above the count
    await c.patch(offer_url, json={"daily_cap": 2}, headers=AUTH)
    assert landing(await until(c, code, landing))
    # lowered to the count again
    await c.patch(offer_url, json={"daily_cap": 1}, headers=AUTH)
    assert await until(c, code, lambda url: url == ELSEWHERE) == ELSEWHERE
    # removed
    await c.patch(offer_url, json={"daily_cap": None}, headers=AUTH)
    assert landing(await until(c, code, landing))


class Tomorrow:
    def now_us(self) -> int:
        return time.time_ns() // 1000 + DAY_US


async def test_the_next_utc_day_serves_again_without_a_change(
    store: Store, capped: tuple[ClickbackApp, httpx.AsyncClient]
) -> None:
    app, c = capped
    s = await make_offer(c, daily_cap=1, cap_redirect=True, fallback_url=ELSEWHERE)
    code = s["link"]["code"]
    await screened(store, await convert(c, code, "D-1"))
    assert await until(c, code, lambda url: url == ELSEWHERE) == ELSEWHERE
    clock: Any = app.catalog.clock
    app.catalog.clock = Tomorrow()  # the cache's poll sees the day change
    try:
        assert landing(await until(c, code, landing))
    finally:
        app.catalog.clock = clock
    assert await until(c, code, lambda url: url == ELSEWHERE) == ELSEWHERE
