"""A node whose database connections hang (half-open after a failover, a stuck pooler):
two nodes on one PostgreSQL schema, the second reaching it through a loopback TCP proxy
that can stop relaying the connections it holds while new ones still work."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from clickback.config import Settings
from clickback.storage.postgres import PostgresStore
from clickback.web.app import ClickbackApp
from tests.conftest import ADMIN, AUTH, PG_URL, click, make_offer


class FreezingProxy:
    """Relays loopback connections to PostgreSQL; `freeze` holds every byte of the
    connections open so far (neither closed nor answered), as a half-open connection."""

    def __init__(self) -> None:
        self.frozen: list[dict[str, bool]] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = PG_URL.split("@", 1)[1].split("/", 1)[0].split(":")
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        state = {"frozen": False}
        self.frozen.append(state)
        self.writers += [writer, up_writer]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                while state["frozen"]:
                    await asyncio.sleep(0.05)
                dst.write(data)
                await dst.drain()
            dst.close()

        await asyncio.gather(
            pump(reader, up_writer), pump(up_reader, writer), return_exceptions=True
        )

    def freeze(self) -> None:
        for state in self.frozen:
            state["frozen"] = True

    def close(self) -> None:
        """Resets every connection (as a failover ends a half-open one at last)."""
        for writer in self.writers:
            writer.transport.abort()
        for state in self.frozen:
            state["frozen"] = False
        if self.server is not None:
            self.server.close()


async def node(url: str) -> tuple[ClickbackApp, httpx.AsyncClient]:
    settings = Settings(
        database_url=url, admin_token=ADMIN, public_url="http://t", cache_check_seconds=0.2
    )
    store = PostgresStore(url)
    await store.open()
    await store.migrate()
    app = ClickbackApp(settings, store)
    await app.startup()
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 4000))
    return app, httpx.AsyncClient(transport=transport, base_url="http://t")


async def test_a_hung_connection_does_not_keep_a_node_serving_a_paused_offer(
    schema: str,
) -> None:
    """The node's check for changes hung on its frozen connection, and every later check
    waited behind it: it served the paused offer's clicks (and counted its postbacks)
    for as long as the connection hung. A check given up on lets the next one through
    a new connection."""
    proxy = FreezingProxy()
    port = await proxy.start()
    direct = f"{PG_URL}?schema={schema}"
    a, client_a = await node(direct)
    nodes: list[tuple[ClickbackApp, Any]] = [(a, client_a)]
    try:
        s = await make_offer(client_a)
        host = PG_URL.split("@", 1)[1].split("/", 1)[0]
        b, client_b = await node(direct.replace(host, f"127.0.0.1:{port}"))
        nodes.append((b, client_b))
        b.tracker.catalog.read_timeout = 1.0
        code = s["link"]["code"]
        assert (await client_b.get(f"/c/{code}")).status_code == 302
        proxy.freeze()
        r = await client_a.patch(
            f"/api/v1/offers/{s['offer']['id']}", json={"status": "paused"}, headers=AUTH
        )
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 10
        while (await client_b.get(f"/c/{code}", headers={"x": "1"})).status_code == 302:
            assert time.monotonic() < deadline, "node B still serves the paused offer"
            await asyncio.sleep(0.2)
        assert (await client_b.get(f"/c/{code}")).status_code == 404
        proxy.close()  # the database gone from node B: a code it never loaded cannot be read
        r = await client_b.get("/c/never-loaded")
        assert r.status_code == 503, r.text
    finally:
        proxy.close()
        for app, client in reversed(nodes):
            await client.aclose()
            await app.shutdown()
            await app.store.close()


async def test_the_admin_api_answers_503_while_the_database_is_gone(schema: str) -> None:
    """Each request failed with a 500 `internal` and a traceback in the log: an
    operator's script could not tell an outage, worth a retry, from a defect."""
    proxy = FreezingProxy()
    port = await proxy.start()
    host = PG_URL.split("@", 1)[1].split("/", 1)[0]
    app, client = await node(f"{PG_URL}?schema={schema}".replace(host, f"127.0.0.1:{port}"))
    try:
        assert (await client.get("/readyz")).text == "ready"
        s = await make_offer(client)
        offer = f"/api/v1/offers/{s['offer']['id']}"
        proxy.close()  # reset every connection and refuse new ones
        for method, path, body in (
            ("GET", "/api/v1/offers", None),
            ("GET", offer, None),
            ("PATCH", offer, {"status": "paused"}),
            ("GET", "/api/v1/conversions", None),
            ("GET", "/api/v1/reports?group_by=offer", None),
        ):
            r = await client.request(method, path, json=body, headers=AUTH)
            assert r.status_code == 503, (method, path, r.text)
            assert r.json()["errors"][0]["code"] == "unavailable"
            assert r.headers["retry-after"] == "5"
        assert (await client.get("/readyz")).status_code == 503
        # and it says so once its links and offers may be stale (twice the read timeout)
        app.catalog.read_timeout = 0.5
        deadline = time.monotonic() + 10
        while "last read" not in (r := await client.get("/readyz")).text:
            assert time.monotonic() < deadline, r.text
            await asyncio.sleep(0.2)
        assert r.status_code == 503
    finally:
        proxy.close()
        await client.aclose()
        await app.shutdown()
        await app.store.close()


async def test_a_postback_that_cannot_read_what_it_needs_is_answered_503(schema: str) -> None:
    """A postback for a paused offer reads whether its order was counted already, and
    one for a link this node has not seen reads the links: with the database gone,
    each is answered 503 `unavailable` (retry), as a write is, not 500 `server error`."""
    proxy = FreezingProxy()
    port = await proxy.start()
    host = PG_URL.split("@", 1)[1].split("/", 1)[0]
    app, client = await node(f"{PG_URL}?schema={schema}".replace(host, f"127.0.0.1:{port}"))
    try:
        s = await make_offer(client)
        refid = await click(client, s["link"])
        other = await make_offer(client)
        unseen = await click(client, other["link"])
        r = await client.patch(
            f"/api/v1/offers/{s['offer']['id']}", json={"status": "paused"}, headers=AUTH
        )
        assert r.status_code == 200
        app.catalog.links.pop(other["link"]["id"])  # made on another node
        proxy.close()  # reset every connection and refuse new ones
        for ref in (refid, unseen):
            params = {"refid": ref, "orderamount": "10", "ordernumber": f"GONE-{ref[:6]}"}
            r = await client.get("/postback", params=params)
            assert r.status_code == 503, r.text
            assert r.json()["errors"][0]["code"] == "unavailable"
    finally:
        proxy.close()
        await client.aclose()
        await app.shutdown()
        await app.store.close()
