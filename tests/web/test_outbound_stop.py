"""A graceful stop (SIGTERM: the app's shutdown) with an outbound postback in flight,
through the real app, its sender and a real receiver on loopback, on both engines."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from clickback.config import Settings
from clickback.domain.ports import Store
from clickback.web.app import ClickbackApp
from tests.conftest import AUTH, make_offer
from tests.web.test_outbound_delivery import _aff_url, _convert, _settings, _until, receiver


async def _delivery(c: httpx.AsyncClient) -> dict[str, Any]:
    [d] = (await c.get("/api/v1/deliveries", headers=AUTH)).json()["items"]
    return dict(d)


async def _in_flight(app: ClickbackApp, port: int, order: str, arrivals: list[str]) -> None:
    """A conversion, its outbound postback to the receiver on `port` under way."""
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4444))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        s = await make_offer(c)
        await _aff_url(c, s, f"http://127.0.0.1:{port}/pb?c={{refid}}")
        await _convert(c, s["link"], order)
        await _until(lambda: arrivals)


@contextlib.asynccontextmanager
async def _next_server(settings: Settings, store: Store) -> AsyncIterator[httpx.AsyncClient]:
    """The server started again on the same database: a client of it."""
    again = ClickbackApp(settings, store)
    await again.startup()
    try:
        transport = httpx.ASGITransport(app=again, client=("203.0.113.7", 4444))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            yield c
    finally:
        await again.shutdown()


async def test_a_send_in_flight_at_a_graceful_stop_ends_and_is_not_sent_again(
    store: Store,
) -> None:
    """The server is stopped (SIGTERM: the app's shutdown) while the receiver takes 1 s to
    answer: the send ends and is recorded by the time the stop returns, and the next server
    does not send it again once the lease would have lapsed. It used to be cancelled
    mid-send and, its lease lapsed, sent again with one attempt recorded."""
    settings = _settings(outbound_timeout=2.0, outbound_lease_seconds=3.0)
    app = ClickbackApp(settings, store)
    await app.startup()
    arrivals: list[str] = []  # as each request arrives, answered or cut off

    def slow(n: int, path: str) -> tuple[int, bytes]:
        arrivals.append(path)
        time.sleep(1.0)
        return 200, b"ok"

    with receiver(slow) as (port, hits):
        await _in_flight(app, port, "G1", arrivals)
        await app.shutdown()
        async with _next_server(settings, store) as c:
            first = await _delivery(c)
            await asyncio.sleep(settings.outbound_lease_seconds + 1.0)
            later = await _delivery(c)
        seen = (first["state"], first["attempt_count"], later["state"], later["attempt_count"])
        assert (seen, len(arrivals), len(hits)) == (("delivered", 1, "delivered", 1), 1, 1)


async def test_a_graceful_stop_cancels_a_send_still_running_after_its_bound(
    store: Store,
) -> None:
    """A stop waits for a send in flight no longer than its bound (the outbound timeout and
    a second): one still running then is cancelled, the stop returns, and the delivery,
    left unrecorded, is sent by the next server once its lease ends."""
    settings = _settings(outbound_timeout=3.0, outbound_lease_seconds=3.5)
    app = ClickbackApp(settings, store)
    await app.startup()
    assert app.sender is not None and app.sender.grace_seconds == 4.0
    app.sender.grace_seconds = 0.3  # shorter than the receiver's answer: a send stuck
    arrivals: list[str] = []

    def slow(n: int, path: str) -> tuple[int, bytes]:
        arrivals.append(path)
        time.sleep(2.0)
        return 200, b"ok"

    with receiver(slow) as (port, _):
        await _in_flight(app, port, "G2", arrivals)
        started = time.monotonic()
        await app.shutdown()
        took = time.monotonic() - started
        async with _next_server(settings, store) as c:
            first = await _delivery(c)
            deadline = time.monotonic() + 10
            while (later := await _delivery(c))["state"] != "delivered":
                assert time.monotonic() < deadline, later
                await asyncio.sleep(0.05)
    assert took < 1.2, took
    assert (first["state"], first["attempt_count"]) == ("queued", 0), first
    assert (later["attempt_count"], len(arrivals)) == (1, 2), later
