"""Fixtures: a real store on each engine, and the real ASGI app over it.

Every test that takes `store` (or `client`) runs twice: on a SQLite file and on the
PostgreSQL server at CLICKBACK_TEST_PG_URL (default the local `test` database), each
PostgreSQL test in a schema of its own. PostgreSQL being down is a failure, not a skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from clickback.config import Settings
from clickback.domain.pacing import USUAL_SETTLE_US
from clickback.domain.ports import Store
from clickback.storage.postgres import PostgresStore
from clickback.storage.sqlite import SqliteStore
from clickback.web.app import ClickbackApp

PG_URL = os.environ.get("CLICKBACK_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
ADMIN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        s: Store = SqliteStore(str(tmp_path / "clickback.db"))
        await s.migrate()
        yield s
        await s.close()
        return
    schema = "t_" + uuid.uuid4().hex[:16]
    conn = await asyncpg.connect(PG_URL)
    await conn.execute(f"CREATE SCHEMA {schema}")
    pg = PostgresStore(f"{PG_URL}?schema={schema}")
    # one process writes a test's database: its clicks commit in stamp order, and the
    # jobs need not wait the write timeout (tests/storage/test_late_clicks.py: several)
    pg.click_settle_us = USUAL_SETTLE_US
    try:
        await pg.open()
        await pg.migrate()
        yield pg
    finally:
        await pg.close()
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    """A PostgreSQL schema of the test's own, dropped after it (for stores it makes)."""
    name = "t_" + uuid.uuid4().hex[:16]
    conn = await asyncpg.connect(PG_URL)
    await conn.execute(f"CREATE SCHEMA {name}")
    try:
        yield name
    finally:
        await conn.execute(f"DROP SCHEMA {name} CASCADE")
        await conn.close()


@pytest.fixture
async def app(store: Store) -> AsyncIterator[ClickbackApp]:
    application = ClickbackApp(
        Settings(database_url="unused", admin_token=ADMIN, public_url="http://track.test"), store
    )
    await application.startup()
    yield application
    await application.shutdown()


@pytest.fixture
async def client(app: ClickbackApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://track.test") as c:
        yield c


async def make_offer(client: httpx.AsyncClient, **offer: Any) -> dict[str, Any]:
    """Advertiser, offer, affiliate and link through the API; returns them by name."""
    adv_fields = offer.pop("advertiser", {})
    adv = (
        await client.post("/api/v1/advertisers", json={"name": "Shop", **adv_fields}, headers=AUTH)
    ).json()
    body = {
        "advertiser_id": adv["id"],
        "name": "Offer",
        "payout_type": "cpa",
        "payout_amount": "5.00",
        "destination_url": "https://shop.example/land",
        **offer,
    }
    r = await client.post("/api/v1/offers", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    off = r.json()
    aff = (await client.post("/api/v1/affiliates", json={"name": "Aff"}, headers=AUTH)).json()
    link = (
        await client.post(
            "/api/v1/links", json={"offer_id": off["id"], "affiliate_id": aff["id"]}, headers=AUTH
        )
    ).json()
    return {"advertiser": adv, "offer": off, "affiliate": aff, "link": link}


async def status(
    client: httpx.AsyncClient, cid: int, to: str, reason: str = "checked"
) -> httpx.Response:
    """A conversion's status changed through the admin API (its answer)."""
    return await client.post(
        f"/api/v1/conversions/{cid}/status", headers=AUTH, json={"status": to, "reason": reason}
    )


async def click(client: httpx.AsyncClient, link: dict[str, Any], query: str = "") -> str:
    """Follow a tracking link; the RefID from the redirect's Location."""
    r = await client.get(f"/c/{link['code']}{query}")
    assert r.status_code == 302, r.text
    from urllib.parse import parse_qs, urlsplit

    return parse_qs(urlsplit(r.headers["location"]).query)["refid"][0]


def form_post_scope(path: str, client: tuple[str, int]) -> dict[str, Any]:
    """An ASGI scope for a form POST, for tests that drive the app with their own
    receive (a body that is slow, cut short or never comes)."""
    return {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": b"",
        "headers": [(b"content-type", b"application/x-www-form-urlencoded")],
        "client": client,
    }
