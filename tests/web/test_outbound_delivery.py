"""Outbound postbacks through the real app, its sender and a real receiver on loopback,
on both engines."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest

from clickback.config import Settings
from clickback.domain import outbound_setup
from clickback.domain.outbound import MACROS, Attempt
from clickback.domain.ports import Store
from clickback.errors import ConfigError
from clickback.outbound_http import pinned
from clickback.storage import schema
from clickback.storage.postgres import PostgresStore
from clickback.storage.sqlite import SqliteStore
from clickback.web.app import ClickbackApp
from clickback.web.http import hash_token, hide_password
from tests.conftest import ADMIN, AUTH, PG_URL, click, make_offer, status

# (request number from 0, path) -> (status, body)
Answer = Callable[[int, str], tuple[int, bytes]]


@contextmanager
def receiver(answer: Answer) -> Iterator[tuple[int, list[tuple[str, dict[str, str], int]]]]:
    """A loopback HTTP server answering by `answer`; yields (port, hits as (path, headers,
    status) in arrival order)."""
    hits: list[tuple[str, dict[str, str], int]] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with lock:
                n = len(hits)
                code, body = answer(n, self.path)
                hits.append((self.path, {k.lower(): v for k, v in self.headers.items()}, code))
            self.send_response(code)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_address[1]), hits
    finally:
        server.shutdown()
        server.server_close()


def _settings(**over: Any) -> Settings:
    base: dict[str, Any] = {
        "database_url": "unused",
        "admin_token": ADMIN,
        "public_url": "http://t",
        "outbound_allow_private": True,
        "outbound_timeout": 0.8,
        "outbound_retry_seconds": (1.0,),
        "outbound_lease_seconds": 1.0,
        "jobs_poll_seconds": 0.05,
        "fraud_min_seconds": 0,
    }
    return Settings(**{**base, **over})


@pytest.fixture
async def oc(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    app = ClickbackApp(_settings(), store)
    await app.startup()
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4444))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c
    await app.shutdown()


async def _convert(c: httpx.AsyncClient, link: dict[str, Any], order: str) -> int:
    refid = await click(c, link)
    r = await c.get("/postback", params={"refid": refid, "orderamount": "10", "ordernumber": order})
    assert r.json()["status"] == "accepted", r.text
    return int(r.json()["conversion_id"])


async def _until(predicate: Callable[[], Any], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def _settled(
    c: httpx.AsyncClient, count: int, states: tuple[str, ...] = ("delivered", "failed")
) -> list[dict[str, Any]]:
    """The deliveries, once `count` of them are in `states`: the receiver sees a request
    before its sender records the answer."""
    deadline = time.monotonic() + 10
    while True:
        items = (await c.get("/api/v1/deliveries", headers=AUTH)).json()["items"]
        if sum(d["state"] in states for d in items) >= count:
            return list(items)
        assert time.monotonic() < deadline, items
        await asyncio.sleep(0.05)


async def _aff_url(c: httpx.AsyncClient, s: dict[str, Any], url: str, **extra: Any) -> None:
    """Sets the affiliate's postback URL (and any other postback setting given)."""
    r = await c.patch(
        f"/api/v1/affiliates/{s['affiliate']['id']}",
        json={"postback_url": url, **extra},
        headers=AUTH,
    )
    assert r.status_code == 200, r.text


async def _all_screened(app: ClickbackApp, store: Store, count: int) -> None:
    """Until `count` conversions are screened (their deliveries may then be claimed)."""
    assert app.screener is not None
    screened = "SELECT count(*) FROM conversions WHERE screened = 1"
    deadline = time.monotonic() + 10
    while (await store._fetch_tuples(screened))[0][0] < count:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "the conversions were not screened"
        await app.screener.catch_up()
        await asyncio.sleep(0.05)


@asynccontextmanager
async def _jobs_held(store: Store) -> AsyncIterator[tuple[ClickbackApp, httpx.AsyncClient]]:
    """An app whose jobs wait an hour between polls, and a client of it: the test drives
    the screening and the claims itself."""
    app = ClickbackApp(_settings(jobs_poll_seconds=3600, rollup_settle=0.0), store)
    await app.startup()
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4444))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            yield app, c
    finally:
        await app.shutdown()


async def _reversed_sale(app: ClickbackApp, c: httpx.AsyncClient, store: Store) -> None:
    """A sale, screened, then reversed, for an affiliate that takes both events: its
    `conversion` and `reversed` postbacks queued, the second behind the first."""
    s = await make_offer(c)
    events = ["conversion", "reversed"]
    await _aff_url(c, s, "http://127.0.0.1:9/pb?e={event}", postback_events=events)
    cid = await _convert(c, s["link"], "R-1")
    await _all_screened(app, store, 1)
    assert (await status(c, cid, "reversed")).status_code == 200


async def _other_affiliate(c: httpx.AsyncClient, s: dict[str, Any], url: str) -> dict[str, Any]:
    """A second affiliate, its postback URL `url`, and its link to the offer of `s`."""
    b = (await c.post("/api/v1/affiliates", json={"name": "B"}, headers=AUTH)).json()
    await _aff_url(c, {"affiliate": b}, url)
    body = {"offer_id": s["offer"]["id"], "affiliate_id": b["id"]}
    return dict((await c.post("/api/v1/links", json=body, headers=AUTH)).json())


async def _sale_with_reversals(oc: httpx.AsyncClient, port: int, order: str) -> int:
    """An offer whose affiliate takes conversions and reversals (`e=` the event), and a
    conversion on it: its id."""
    s = await make_offer(oc)
    await _aff_url(
        oc,
        s,
        f"http://127.0.0.1:{port}/pb?c={{refid}}&e={{event}}",
        postback_events=["conversion", "reversed"],
    )
    return await _convert(oc, s["link"], order)


async def _failed_sale_reversed(
    oc: httpx.AsyncClient, port: int, hits: list[Any], order: str
) -> tuple[int, dict[str, Any]]:
    """A conversion whose postback the receiver refused (its first answer: a 4xx, so
    `failed`), then reversed: its id and the failed delivery."""
    cid = await _sale_with_reversals(oc, port, order)
    await _until(lambda: hits)
    [sale] = await _settled(oc, 1)
    assert sale["state"] == "failed"
    assert (await status(oc, cid, "reversed", "chargeback")).status_code == 200
    return cid, sale


async def test_a_nul_byte_in_the_receivers_answer_does_not_resend_forever(
    oc: httpx.AsyncClient,
) -> None:
    """A receiver answering 200 with a NUL byte in its body got the postback once."""
    with receiver(lambda n, path: (200, b"OK\x00")) as (port, hits):
        s = await make_offer(oc)
        await _aff_url(oc, s, f"http://127.0.0.1:{port}/pb?c={{refid}}")
        await _convert(oc, s["link"], "NUL1")
        await _until(lambda: hits)
        await asyncio.sleep(3)  # three leases
        [d] = (await oc.get("/api/v1/deliveries", headers=AUTH)).json()["items"]
        assert (d["state"], len(hits)) == ("delivered", 1)


async def test_a_reversal_is_not_posted_before_the_conversion_it_reverses(
    oc: httpx.AsyncClient,
) -> None:
    """The conversion postback meets a 503 once and waits for its retry (1 s); the reversal
    made meanwhile must not reach the affiliate first."""
    with receiver(lambda n, path: (503 if n == 0 else 200, b"ok")) as (port, hits):
        cid = await _sale_with_reversals(oc, port, "ORD1")
        await _until(lambda: hits)  # the first try of the conversion postback: 503
        r = await status(oc, cid, "reversed", "chargeback")
        assert r.status_code == 200, r.text
        await _until(lambda: len([h for h in hits if h[2] == 200]) == 2)
        received = [parse_qs(urlsplit(h[0]).query)["e"][0] for h in hits if h[2] == 200]
        assert received == ["conversion", "reversed"]


async def test_a_failed_sale_postback_is_not_resent_once_its_reversal_reached_the_affiliate(
    oc: httpx.AsyncClient,
) -> None:
    """The sale's postback is refused (404: failed, final) and the reversal then goes out;
    a resend of the sale would have reached the affiliate after its reversal, leaving it
    paying a reversed sale. Refused 409, naming the reversal; nothing more is sent."""
    with receiver(lambda n, path: (404 if n == 0 else 200, b"ok")) as (port, hits):
        cid, sale = await _failed_sale_reversed(oc, port, hits, "LATE1")
        await _until(lambda: len(hits) == 2)
        items = await _settled(oc, 2)
        [reversal] = [d for d in items if d["event"] == "reversed"]
        assert reversal["state"] == "delivered"
        r = await oc.post(f"/api/v1/deliveries/{sale['id']}/resend", headers=AUTH)
        [error] = r.json()["errors"]
        assert r.status_code == 409 and error["code"] == "later_delivered", r.text
        assert f"delivery {reversal['id']} (reversed) of conversion {cid}" in error["message"]
        await asyncio.sleep(1.5)
        assert len(hits) == 2
        shown = (await oc.get(f"/api/v1/deliveries/{sale['id']}", headers=AUTH)).json()
        assert shown["state"] == "failed"


async def test_an_affiliate_token_reads_the_deliveries_sent_to_its_affiliate_alone(
    oc: httpx.AsyncClient,
) -> None:
    """A publisher sees whether its endpoint answers: its deliveries and their attempts,
    its URL's password hidden; another affiliate's are not there for it."""
    with receiver(lambda n, path: (500, b"down for maintenance")) as (port, hits):
        mine, theirs = await make_offer(oc), await make_offer(oc)
        for s in (mine, theirs):
            await _aff_url(oc, s, f"http://u:pw@127.0.0.1:{port}/pb?c={{refid}}")
            await _convert(oc, s["link"], f"AT{s['affiliate']['id']}")
        await _until(lambda: len(hits) >= 2)
        await asyncio.sleep(0.3)
        aff = mine["affiliate"]["id"]
        r = await oc.post(
            "/api/v1/tokens",
            json={"name": "publisher", "role": "affiliate", "affiliate_id": aff},
            headers=AUTH,
        )
        tok = {"Authorization": f"Bearer {r.json()['token']}"}
        r = await oc.get("/api/v1/deliveries", headers=tok)
        [own] = r.json()["items"]
        assert own["affiliate_id"] == aff and own["last_status"] == 500, r.text
        shown = (await oc.get(f"/api/v1/deliveries/{own['id']}", headers=tok)).json()
        assert shown["attempts"][0]["response_excerpt"] == "down for maintenance"
        assert shown["attempts"][0]["url"].startswith("http://u:***@127.0.0.1:")
        every = (await oc.get("/api/v1/deliveries", headers=AUTH)).json()["items"]
        [other] = [d for d in every if d["affiliate_id"] != aff]
        r = await oc.get(f"/api/v1/deliveries/{other['id']}", headers=tok)
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "not_found"
        r = await oc.get(
            "/api/v1/deliveries", params={"affiliate_id": other["affiliate_id"]}, headers=tok
        )
        assert r.status_code == 403 and r.json()["errors"][0]["code"] == "affiliate_token"
        r = await oc.post(f"/api/v1/deliveries/{own['id']}/resend", headers=tok)
        assert r.status_code == 403, r.text


async def test_a_failed_sale_postback_is_not_resent_while_its_reversal_is_being_sent(
    oc: httpx.AsyncClient,
) -> None:
    """The reversal's request is in flight (its receiver slow to answer) when the sale's
    resend is asked: queued then, the sale would go out after the reversal."""

    reversal_arrived = threading.Event()

    def answer(n: int, path: str) -> tuple[int, bytes]:
        if n == 1:  # the reversal: answered within the send timeout (0.8 s)
            reversal_arrived.set()
            time.sleep(0.6)
        return (404 if n == 0 else 200), b"ok"

    with receiver(answer) as (port, hits):
        _, sale = await _failed_sale_reversed(oc, port, hits, "SLOW1")
        await _until(reversal_arrived.is_set)  # and not yet answered
        r = await oc.post(f"/api/v1/deliveries/{sale['id']}/resend", headers=AUTH)
        [error] = r.json()["errors"]
        assert r.status_code == 409 and error["code"] == "later_delivered", r.text
        assert ", is being sent to it," in error["message"]
        await asyncio.sleep(1.5)
        assert [parse_qs(urlsplit(h[0]).query)["e"][0] for h in hits] == [
            "conversion",
            "reversed",
        ]


async def test_a_resend_waiting_on_a_claim_of_its_delivery_is_refused_once_it_is_claimed(
    oc: httpx.AsyncClient, store: Store
) -> None:
    """PostgreSQL: a resend that waits for the row lock of a sender's claim in progress
    finds the delivery in flight once the claim commits (it cleared the new lease, and
    the delivery was sent twice, one attempt unrecorded)."""
    if store.engine != "postgres":
        pytest.skip("SQLite: one write transaction at a time, no claim to wait for")
    with receiver(lambda n, path: (404, b"no")) as (port, hits):
        s = await make_offer(oc)
        await _aff_url(oc, s, f"http://127.0.0.1:{port}/pb?c={{refid}}")
        await _convert(oc, s["link"], "CLAIM1")
        await _until(lambda: hits)
        [d] = await _settled(oc, 1)
    assert d["state"] == "failed"
    schema = getattr(store, "schema_name", None) or ""
    claim = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
    try:
        lease = time.time_ns() // 1000 + 60_000_000
        async with claim.transaction():
            await claim.execute(
                "UPDATE deliveries SET lease_until = $1 WHERE id = $2", lease, d["id"]
            )
            resend = asyncio.ensure_future(
                oc.post(f"/api/v1/deliveries/{d['id']}/resend", headers=AUTH)
            )
            await asyncio.sleep(0.5)
            assert not resend.done()  # waiting on the claim's row lock
        r = await resend
        held = await claim.fetchval("SELECT lease_until FROM deliveries WHERE id = $1", d["id"])
    finally:
        await claim.close()
    assert r.status_code == 409 and r.json()["errors"][0]["code"] == "delivery_in_flight", r.text
    assert held == lease


async def test_reenabled_postback_retries_held_deliveries(store: Store) -> None:
    """Held while the affiliate's postback was disabled, then queued again by enabling it
    after longer than the give-up time: a 503 on the first try after that is one more
    failure (held again: one failure disables here), not the end of the delivery."""
    app = ClickbackApp(_settings(outbound_disable_after=1, outbound_give_up_hours=4 / 3600), store)
    await app.startup()
    answers = iter([500, 503])
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4444))
    try:
        with receiver(lambda n, path: (next(answers, 200), b"ok")) as (port, hits):
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                s = await make_offer(c)
                aff = s["affiliate"]["id"]
                await _aff_url(c, s, f"http://127.0.0.1:{port}/pb?c={{refid}}")
                await _convert(c, s["link"], "H1")
                await _until(lambda: hits)  # 500: disabled after one failure, held
                [d] = await _settled(c, 1, ("held",))
                assert d["state"] == "held"
                await asyncio.sleep(2.5)  # the affiliate fixes its endpoint some time later

                async def enable_and_wait(answered: int) -> str:
                    r = await c.patch(
                        f"/api/v1/affiliates/{aff}", json={"postback_enabled": True}, headers=AUTH
                    )
                    assert r.json()["postback_enabled"] is True
                    await _until(lambda: len(hits) >= answered)
                    await asyncio.sleep(0.3)
                    [d] = (await c.get("/api/v1/deliveries", headers=AUTH)).json()["items"]
                    return str(d["state"])

                assert await enable_and_wait(2) == "held"  # the 503: held, not given up
                assert await enable_and_wait(3) == "delivered"
                assert [h[2] for h in hits] == [500, 503, 200]
    finally:
        await app.shutdown()


async def test_a_rejection_taken_back_tells_the_affiliate_of_the_sale_once(
    store: Store,
) -> None:
    """Rejected by the offer's fraud rules: the affiliate hears nothing of it (its
    postback cancelled; docs/outbound.md: "an affiliate never hears of a conversion its
    offer's rules reject"). Then approved by hand: the affiliate hears of the sale
    (`conversion`), then of the approval. One whose
    sale the affiliate heard of before it was rejected by hand hears `approved` alone,
    not of the sale twice."""
    app = ClickbackApp(_settings(fraud_min_seconds=10), store)
    await app.startup()
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4444))
    try:
        with receiver(lambda n, path: (200, b"ok")) as (port, hits):
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                s = await make_offer(c, fraud_rules={"fast_conversion": "reject"})
                await _aff_url(
                    c,
                    s,
                    f"http://127.0.0.1:{port}/pb?o={{ordernumber}}&e={{event}}&s={{status}}",
                    postback_events=["conversion", "approved", "rejected"],
                )

                async def conversion(cid: int) -> dict[str, Any]:
                    r = await c.get(f"/api/v1/conversions/{cid}", headers=AUTH)
                    return dict(r.json())

                def heard() -> list[tuple[str, str, str]]:
                    return [
                        (q["o"][0], q["e"][0], q["s"][0])
                        for q in (parse_qs(urlsplit(h[0]).query) for h in hits)
                    ]

                cid = await _convert(c, s["link"], "R1")  # at once: fast_conversion
                deadline = time.monotonic() + 10
                while (await conversion(cid))["status"] != "rejected":
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.05)
                await asyncio.sleep(1.5)
                assert hits == []
                # its cancelled postback is not resent: it would tell of a rejected sale
                [cancelled] = await _settled(c, 1, ("cancelled",))
                r = await c.post(f"/api/v1/deliveries/{cancelled['id']}/resend", headers=AUTH)
                assert r.status_code == 409, r.text
                assert r.json()["errors"][0]["code"] == "delivery_cancelled"
                r = await status(c, cid, "approved", "rejected_in_error")
                assert r.status_code == 200, r.text
                await _until(lambda: len(hits) >= 2)
                assert heard() == [("R1", "conversion", "approved"), ("R1", "approved", "approved")]
                history = [(h["from"], h["to"]) for h in (await conversion(cid))["history"]]
                assert history[-2:] == [("approved", "rejected"), ("rejected", "approved")]

                r = await c.patch(
                    f"/api/v1/offers/{s['offer']['id']}",
                    json={"fraud_rules": {}, "approval": "review"},
                    headers=AUTH,
                )
                assert r.status_code == 200, r.text
                other = await _convert(c, s["link"], "R2")
                await _until(lambda: len(hits) >= 3)  # its sale, once screened
                assert (
                    await status(c, other, "rejected", "advertiser_rejected")
                ).status_code == 200
                assert (await status(c, other, "approved", "rejected_in_error")).status_code == 200
                await _until(lambda: len(hits) >= 5)
                await asyncio.sleep(0.5)
                assert heard()[2:] == [
                    ("R2", "conversion", "pending"),
                    ("R2", "rejected", "rejected"),
                    ("R2", "approved", "approved"),
                ]
    finally:
        await app.shutdown()


def test_a_lease_no_longer_than_the_timeout_is_refused() -> None:
    """A send outliving its lease is taken over by another process and sent again, for
    as long as the receiver stays that slow: such settings do not start."""
    with pytest.raises(ConfigError):
        _settings(outbound_timeout=3.0, outbound_lease_seconds=1.0)
    env = {"CLICKBACK_OUTBOUND_TIMEOUT": "30", "CLICKBACK_OUTBOUND_LEASE_SECONDS": "30"}
    with pytest.raises(ConfigError):
        Settings.from_env(env)


async def test_a_slow_receiver_within_the_timeout_gets_the_postback_once(store: Store) -> None:
    """Two serve processes; a receiver that answers 200 after 1 s, within the timeout
    (1.5 s) and so within the lease: it hears of the conversion once."""
    app = ClickbackApp(_settings(outbound_timeout=1.5, outbound_lease_seconds=2.0), store)
    await app.startup()
    other = ClickbackApp(_settings(outbound_timeout=1.5, outbound_lease_seconds=2.0), store)
    await other.startup()

    def slow(n: int, path: str) -> tuple[int, bytes]:
        time.sleep(1.0)
        return 200, b"ok"

    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4444))
    try:
        with receiver(slow) as (port, hits):
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                s = await make_offer(c)
                await _aff_url(c, s, f"http://127.0.0.1:{port}/pb?c={{refid}}")
                await _convert(c, s["link"], "S1")
                await _until(lambda: hits)
                await asyncio.sleep(3)
                [d] = (await c.get("/api/v1/deliveries", headers=AUTH)).json()["items"]
                assert (d["state"], len(hits)) == ("delivered", 1)
    finally:
        await other.shutdown()
        await app.shutdown()


async def test_signature_verifies_against_the_url_the_receiver_gets(
    oc: httpx.AsyncClient,
) -> None:
    """The documented verify() over the full URL received, for a template with a
    non-ASCII literal (httpx percent-encodes it on the wire, after signing)."""
    from tests.cli.receiver import verify_signature

    with receiver(lambda n, path: (200, b"ok")) as (port, hits):
        s = await make_offer(oc)
        aff = s["affiliate"]["id"]
        r = await oc.patch(
            f"/api/v1/affiliates/{aff}",
            json={
                "postback_url": f"http://127.0.0.1:{port}/pb?c={{refid}}&src=r\u00e9seau",
                "postback_secret": "sek",
            },
            headers=AUTH,
        )
        assert r.status_code == 200, r.text
        await _convert(oc, s["link"], "SIG1")
        await _until(lambda: hits)
        path, headers, _ = hits[0]
        url = f"http://{headers['host']}{path}"
        assert verify_signature("sek", headers["x-clickback-signature"], url), url


async def test_a_postback_disabled_by_hand_holds_its_deliveries(oc: httpx.AsyncClient) -> None:
    """`postback_enabled: false` pauses the postback as failures do (it was answered 200
    with nothing changed): deliveries are held, and go out once it is enabled again."""
    with receiver(lambda n, path: (200, b"ok")) as (port, hits):
        s = await make_offer(oc)
        aff = s["affiliate"]["id"]
        await _aff_url(oc, s, f"http://127.0.0.1:{port}/pb?c={{refid}}", postback_enabled=False)
        shown = (await oc.get(f"/api/v1/affiliates/{aff}", headers=AUTH)).json()
        assert shown["postback_enabled"] is False
        await _convert(oc, s["link"], "OFF1")
        await asyncio.sleep(2.5)  # screened, and the sender had its turns
        [d] = (await oc.get("/api/v1/deliveries", headers=AUTH)).json()["items"]
        assert (d["state"], hits) == ("held", [])
        # a resend would leave it queued and unsent: it says to enable the postback
        r = await oc.post(f"/api/v1/deliveries/{d['id']}/resend", headers=AUTH)
        [error] = r.json()["errors"]
        assert r.status_code == 409 and error["code"] == "postback_disabled", r.text
        assert f"clickback affiliate enable-postback {aff}" in error["message"]
        shown = (await oc.get(f"/api/v1/deliveries/{d['id']}", headers=AUTH)).json()
        assert shown["state"] == "held"
        await _aff_url(oc, s, f"http://127.0.0.1:{port}/pb?c={{refid}}", postback_enabled=True)
        await _until(lambda: hits)
        [d] = await _settled(oc, 1)
        assert d["state"] == "delivered"


async def test_clearing_the_postback_url_stops_pending_retries(oc: httpx.AsyncClient) -> None:
    with receiver(lambda n, path: (503, b"down")) as (port, hits):
        s = await make_offer(oc)
        aff = s["affiliate"]["id"]
        await _aff_url(oc, s, f"http://127.0.0.1:{port}/pb?c={{refid}}")
        await _convert(oc, s["link"], "CLR1")
        await _until(lambda: hits)
        r = await oc.patch(f"/api/v1/affiliates/{aff}", json={"postback_url": ""}, headers=AUTH)
        assert r.status_code == 200 and r.json()["postback_url"] == ""
        await asyncio.sleep(3)
        [d] = (await oc.get("/api/v1/deliveries", headers=AUTH)).json()["items"]
        detail = (await oc.get(f"/api/v1/deliveries/{d['id']}", headers=AUTH)).json()
        after = [a for a in detail["attempts"] if a["url"] == ""]
        affiliate = (await oc.get(f"/api/v1/affiliates/{aff}", headers=AUTH)).json()
        assert (len(after), affiliate["postback_failures"]) == (0, 1), (d, after[:1])


async def test_a_hand_approval_rejected_by_fraud_rules_is_not_posted_as_approved(
    store: Store,
) -> None:
    """Approved by hand before its screening came round, then rejected by the offer's
    rules: the affiliate must not hear `approved` (and nothing after it) for a conversion
    that ends rejected."""
    app = ClickbackApp(_settings(fraud_min_seconds=10, jobs_poll_seconds=3600), store)
    await app.startup()
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4444))
    try:
        with receiver(lambda n, path: (200, b"ok")) as (port, hits):
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                s = await make_offer(
                    c, approval="review", fraud_rules={"fast_conversion": "reject"}
                )
                await _aff_url(
                    c,
                    s,
                    f"http://127.0.0.1:{port}/pb?c={{refid}}&e={{event}}",
                    postback_events=["conversion", "approved", "rejected", "reversed"],
                )
                cid = await _convert(c, s["link"], "HR1")  # at once: fast_conversion
                r = await status(c, cid, "approved", "checked by hand")
                assert r.status_code == 200, r.text
                await asyncio.sleep(2.2)  # the click settles
                assert app.screener is not None and app.sender is not None
                await app.screener.catch_up()
                conv = (await c.get(f"/api/v1/conversions/{cid}", headers=AUTH)).json()
                assert conv["status"] == "rejected", conv
                for _ in range(3):
                    await app.sender.run_once()
                received = [parse_qs(urlsplit(h[0]).query)["e"][0] for h in hits]
                assert received == [], received  # nothing of it went out: all cancelled
    finally:
        await app.shutdown()


@pytest.mark.parametrize(
    "template",
    [
        "http://127.0.0.1:{port}?c={{refid}}",  # no path: the request line says `/?c=`
        "http://user:pw@127.0.0.1:{port}/pb?c={{refid}}",  # credentials: Basic auth
        "http://127.0.0.1:{port}/pb?c={{refid}}#frag",  # a fragment is never sent
        "HTTP://127.0.0.1:{port}/pb?c={{refid}}",  # the scheme goes lower-case
        "http://127.0.0.1:{port}/a/../pb?c={{refid}}",  # dot segments
    ],
)
async def test_signature_verifies_for_urls_the_client_rewrites(
    oc: httpx.AsyncClient, template: str
) -> None:
    """docs/outbound.md: the GET payload is the full URL; the receiver has only its Host
    and request line to rebuild it from."""
    from tests.cli.receiver import verify_signature

    with receiver(lambda n, path: (200, b"ok")) as (port, hits):
        s = await make_offer(oc)
        await _aff_url(oc, s, template.format(port=port), postback_secret="sek")
        await _convert(oc, s["link"], "SIG2")
        await _until(lambda: hits)
        path, headers, _ = hits[0]
        url = f"http://{headers['host']}{path}"
        assert verify_signature("sek", headers["x-clickback-signature"], url), url


async def test_a_delivery_held_by_a_stale_process_does_not_block_later_ones(
    store: Store,
) -> None:
    """Two serve processes; the second learns of the re-enabled postback only at its next
    cache check, and the approval made there meanwhile is queued `held` (its cache says
    disabled). The reversal made afterwards must still reach the affiliate."""
    app = ClickbackApp(_settings(), store)
    await app.startup()
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4444))
    other = None
    try:
        with receiver(lambda n, path: (200, b"ok")) as (port, hits):
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                s = await make_offer(c, approval="review")
                aff = s["affiliate"]["id"]
                await _aff_url(
                    c,
                    s,
                    f"http://127.0.0.1:{port}/pb?c={{refid}}&e={{event}}",
                    postback_events=["conversion", "approved", "reversed"],
                    postback_enabled=False,
                )
                other = ClickbackApp(_settings(cache_check_seconds=3600), store)
                await other.startup()  # its cache: the postback is disabled
                cid = await _convert(c, s["link"], "ST1")
                r = await c.patch(
                    f"/api/v1/affiliates/{aff}", json={"postback_enabled": True}, headers=AUTH
                )
                assert r.status_code == 200, r.text
                await _until(lambda: hits)  # the conversion postback
                t2 = httpx.ASGITransport(app=other, client=("203.0.113.7", 4444))
                async with httpx.AsyncClient(transport=t2, base_url="http://t") as c2:
                    r = await status(c2, cid, "approved", "ok")
                    assert r.status_code == 200, r.text
                r = await status(c, cid, "reversed", "chargeback")
                assert r.status_code == 200, r.text
                await asyncio.sleep(3)
                received = [parse_qs(urlsplit(h[0]).query)["e"][0] for h in hits]
                items = (await c.get("/api/v1/deliveries", headers=AUTH)).json()["items"]
                assert "reversed" in received, (received, [(d["event"], d["state"]) for d in items])
    finally:
        if other is not None:
            await other.shutdown()
        await app.shutdown()


async def test_a_resent_delivery_retries_on_the_first_delay_again(store: Store) -> None:
    """Two failures put the next retry an hour off; a resend by hand that fails again
    retries after the first delay (a second), not after the hour its count had reached."""
    app = ClickbackApp(_settings(outbound_retry_seconds=(1.0, 3600.0)), store)
    await app.startup()
    answers = iter([500, 503, 502])
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4444))
    try:
        with receiver(lambda n, path: (next(answers, 200), b"ok")) as (port, hits):
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                s = await make_offer(c)
                await _aff_url(c, s, f"http://127.0.0.1:{port}/pb?c={{refid}}")
                await _convert(c, s["link"], "RS1")
                await _until(lambda: len(hits) >= 2)  # 500, then 503 a second later
                await asyncio.sleep(0.3)
                [d] = (await c.get("/api/v1/deliveries", headers=AUTH)).json()["items"]
                assert d["state"] == "queued"
                r = await c.post(f"/api/v1/deliveries/{d['id']}/resend", headers=AUTH)
                assert r.status_code < 300, r.text
                await _until(lambda: len(hits) >= 4)  # 502 at once, then 200 within 1 s
                assert [h[2] for h in hits] == [500, 503, 502, 200]
    finally:
        await app.shutdown()


def _query(hit: tuple[str, dict[str, str], int]) -> tuple[str, ...]:
    q = parse_qs(urlsplit(hit[0]).query)
    return q["e"][0], q["st"][0], q["pay"][0]


STATUS_URL = "http://127.0.0.1:{port}/pb?c={{refid}}&e={{event}}&st={{status}}&pay={{commission}}"


async def test_a_retried_conversion_postback_says_the_status_it_was_queued_with(
    oc: httpx.AsyncClient,
) -> None:
    """The conversion postback meets a 503 and the conversion is reversed before its retry:
    the retry still says `approved`, and only the `reversed` postback (and its resend,
    under its own key) says `reversed`. The sale's is not resent after its reversal."""
    with receiver(lambda n, path: (503 if n == 0 else 200, b"ok")) as (port, hits):
        s = await make_offer(oc)
        await _aff_url(
            oc, s, STATUS_URL.format(port=port), postback_events=["conversion", "reversed"]
        )
        cid = await _convert(oc, s["link"], "SNAP1")
        await _until(lambda: hits)  # the first try of the conversion postback: 503
        r = await status(oc, cid, "reversed", "chargeback")
        assert r.status_code == 200, r.text
        await _until(lambda: len([h for h in hits if h[2] == 200]) == 2)
        received = [_query(h) for h in hits if h[2] == 200]
        assert received == [
            ("conversion", "approved", "5.00"),
            ("reversed", "reversed", "5.00"),
        ]
        items = await _settled(oc, 2)
        [first] = [d for d in items if d["event"] == "conversion"]
        [last] = [d for d in items if d["event"] == "reversed"]
        r = await oc.post(f"/api/v1/deliveries/{first['id']}/resend", headers=AUTH)
        assert r.status_code == 409 and r.json()["errors"][0]["code"] == "later_delivered"
        r = await oc.post(f"/api/v1/deliveries/{last['id']}/resend", headers=AUTH)
        assert r.status_code < 300, r.text
        await _until(lambda: len(hits) == 4)
        assert _query(hits[3]) == ("reversed", "reversed", "5.00")
        assert hits[3][1]["idempotency-key"] == f"clickback-delivery-{last['id']}"


async def test_a_conversion_held_back_by_fraud_rules_is_posted_back_as_pending(
    store: Store,
) -> None:
    """Approved automatically, then put back to `pending` by its screening, which the
    conversion postback waits for: it says `pending`, the status the affiliate's later
    `approved` or `rejected` postback moves on from."""
    app = ClickbackApp(_settings(fraud_min_seconds=10), store)
    await app.startup()
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4444))
    try:
        with receiver(lambda n, path: (200, b"ok")) as (port, hits):
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                s = await make_offer(c, fraud_rules={"fast_conversion": "hold"})
                await _aff_url(c, s, STATUS_URL.format(port=port))
                await _convert(c, s["link"], "HOLD1")  # at once: fast_conversion
                await _until(lambda: hits)
                assert [_query(h) for h in hits] == [("conversion", "pending", "5.00")]
    finally:
        await app.shutdown()


async def test_a_delivery_queued_before_it_kept_the_status_says_the_status_when_sent(
    oc: httpx.AsyncClient, store: Store
) -> None:
    """A delivery queued by an older version (no status kept on it) is still sent, with
    the conversion's status as it is when sent."""
    with receiver(lambda n, path: (200, b"ok")) as (port, hits):
        s = await make_offer(oc)
        url = STATUS_URL.format(port=port)
        await _aff_url(oc, s, url, postback_enabled=False)
        cid = await _convert(oc, s["link"], "OLD1")
        write = store._write  # type: ignore[attr-defined]  # as an older version wrote it
        sql = "UPDATE deliveries SET conversion_status = NULL WHERE conversion_id = ? RETURNING id"
        assert await write(sql, cid) is not None
        await _aff_url(oc, s, url, postback_enabled=True)
        await _until(lambda: hits)
        assert [_query(h) for h in hits] == [("conversion", "approved", "5.00")]


async def test_deliveries_queued_before_the_upgrade_say_the_status_of_their_event(
    oc: httpx.AsyncClient, store: Store
) -> None:
    """Postbacks queued before migration 12 (no status kept on them) and still waiting
    when the conversion is reversed: the migration gives each the status of its event, so
    the `conversion` one says `pending` (as queued), the `approved` one `approved`, and
    only the `reversed` one `reversed`."""
    with receiver(lambda n, path: (200, b"ok")) as (port, hits):
        s = await make_offer(oc, approval="review")
        url = STATUS_URL.format(port=port)
        events = ["conversion", "approved", "reversed"]
        await _aff_url(oc, s, url, postback_enabled=False, postback_events=events)
        cid = await _convert(oc, s["link"], "OLD2")
        r = await status(oc, cid, "approved", "reviewed")
        assert r.status_code == 200, r.text
        r = await status(oc, cid, "reversed", "chargeback")
        assert r.status_code == 200, r.text
        write = store._write  # type: ignore[attr-defined]
        sql = "UPDATE deliveries SET conversion_status = NULL WHERE conversion_id = ? RETURNING id"
        assert await write(sql, cid) is not None  # as queued before the column was there
        engine = "sqlite" if isinstance(store, SqliteStore) else "postgres"
        for sql in schema.statements(engine, 12)[1:]:  # the migration, but for its column
            await write(sql)
        await _aff_url(oc, s, url, postback_enabled=True)
        await _until(lambda: len(hits) == 3)
        assert [_query(h)[:2] for h in hits] == [
            ("conversion", "pending"),
            ("approved", "approved"),
            ("reversed", "reversed"),
        ]


async def test_a_resend_while_an_attempt_is_in_flight_is_refused(
    oc: httpx.AsyncClient,
) -> None:
    """A resend while the sender is waiting on the affiliate's answer is a 409: queued
    again then, a second sender pass would send it a second time, and the first attempt
    would go unrecorded. Once the attempt is recorded, a resend sends it once more."""
    arrived, release = threading.Event(), threading.Event()

    def answer(n: int, path: str) -> tuple[int, bytes]:
        if n == 0:
            arrived.set()
            release.wait(0.6)  # inside the sender's 0.8 s timeout and 1 s lease
        return 200, b"ok"

    with receiver(answer) as (port, hits):
        s = await make_offer(oc)
        await _aff_url(oc, s, f"http://127.0.0.1:{port}/pb?c={{refid}}")
        await _convert(oc, s["link"], "FLIGHT1")
        await _until(arrived.is_set)
        [d] = (await oc.get("/api/v1/deliveries", headers=AUTH)).json()["items"]
        r = await oc.post(f"/api/v1/deliveries/{d['id']}/resend", headers=AUTH)
        assert r.status_code == 409, r.text
        assert r.json()["errors"][0]["code"] == "delivery_in_flight"
        release.set()

        async def state() -> dict[str, Any]:
            return (await oc.get(f"/api/v1/deliveries/{d['id']}", headers=AUTH)).json()

        deadline = time.monotonic() + 10
        while (body := await state())["state"] != "delivered":
            assert time.monotonic() < deadline, body
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # ten sender passes: nothing more is sent
        assert len(hits) == 1
        assert [a["status_code"] for a in body["attempts"]] == [200]

        r = await oc.post(f"/api/v1/deliveries/{d['id']}/resend", headers=AUTH)
        assert r.status_code == 200, r.text
        await _until(lambda: len(hits) == 2)


async def test_a_postback_url_with_a_host_of_other_letters_is_kept_in_its_ascii_form(
    oc: httpx.AsyncClient,
) -> None:
    """`https://bücher.example/pb` is stored as `https://xn--bcher-kva.example/pb`, as a
    destination URL is (UTS #46: `straße` is `xn--strae-oqa`, not `strasse`), for an
    affiliate's postback and an offer's override alike: the Host header each attempt is
    sent with is then ASCII, which HTTP can carry (the Unicode one failed every attempt
    until the affiliate's postback was disabled)."""
    s = await make_offer(oc)
    await _aff_url(oc, s, "https://bücher.example:8443/pb?c={refid}&src=réseau")
    aff = (await oc.get(f"/api/v1/affiliates/{s['affiliate']['id']}", headers=AUTH)).json()
    assert aff["postback_url"] == "https://xn--bcher-kva.example:8443/pb?c={refid}&src=réseau"
    path = f"/api/v1/offers/{s['offer']['id']}/postbacks/{s['affiliate']['id']}"
    r = await oc.put(path, json={"postback_url": "http://u:p@straße.example/pb"}, headers=AUTH)
    assert r.status_code == 200, r.text
    override = (await oc.get(path, headers=AUTH)).json()["postback_url"]
    assert override == "http://u:p@xn--strae-oqa.example/pb"
    for url, host in (
        (aff["postback_url"], "xn--bcher-kva.example:8443"),
        (override, "xn--strae-oqa.example"),
    ):
        assert pinned(url, "127.0.0.1")[1] == host
    r = await oc.patch(
        f"/api/v1/affiliates/{s['affiliate']['id']}",
        json={"postback_url": "https://a..b\u00fc/pb"},
        headers=AUTH,
    )
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "postback_url", r.text


async def test_a_read_token_sees_postback_urls_without_their_password(
    oc: httpx.AsyncClient, store: Store
) -> None:
    """Credentials in an affiliate's postback URL (sent as Basic auth) are for admin
    tokens: a read token sees the password as `***` in the affiliate's URL, its
    overrides' and each delivery attempt's; an admin sees them whole."""
    await store.create_token("ro", hash_token("read-tok"), "read")
    ro = {"Authorization": "Bearer read-tok"}
    with receiver(lambda n, path: (200, b"OK")) as (port, hits):
        s = await make_offer(oc)
        aff, offer = s["affiliate"]["id"], s["offer"]["id"]
        await _aff_url(oc, s, f"http://pub:s3cret@127.0.0.1:{port}/pb?c={{refid}}")
        override = f"/api/v1/offers/{offer}/postbacks/{aff}"
        r = await oc.put(
            override,
            json={"postback_url": f"http://pub:0ther@127.0.0.1:{port}/o?c={{refid}}"},
            headers=AUTH,
        )
        assert r.status_code == 200, r.text
        await _convert(oc, s["link"], "CRED1")
        await _until(lambda: hits)
        [d] = await _settled(oc, 1)
    assert hits[0][1]["authorization"].startswith("Basic ")
    paths = (
        f"/api/v1/affiliates/{aff}",
        "/api/v1/affiliates",
        override,
        f"/api/v1/offers/{offer}/postbacks",
        f"/api/v1/deliveries/{d['id']}",
    )
    for path in paths:
        seen = (await oc.get(path, headers=ro)).text
        assert "s3cret" not in seen and "0ther" not in seen, (path, seen)
        assert "pub:***@127.0.0.1" in seen, (path, seen)
        whole = (await oc.get(path, headers=AUTH)).text
        assert "pub:s3cret@" in whole or "pub:0ther@" in whole, (path, whole)
    shown = (await oc.get(f"/api/v1/affiliates/{aff}", headers=ro)).json()
    assert shown["postback_url"] == f"http://pub:***@127.0.0.1:{port}/pb?c={{refid}}"
    assert shown["postback_overrides"][0]["postback_url"].startswith("http://pub:***@")


def test_only_a_urls_password_is_hidden() -> None:
    cases = {
        "https://u:p@aff.example/pb?next=http://x:y@z/": "https://u:***@aff.example/pb?next=http://x:y@z/",
        "https://u:p:q@aff.example:8443#a@b": "https://u:***@aff.example:8443#a@b",
        "https://u@aff.example/pb": "https://u@aff.example/pb",
        "https://aff.example/pb?a=b:c@d": "https://aff.example/pb?a=b:c@d",
        "": "",
    }
    for url, shown in cases.items():
        assert hide_password(url) == shown, url


async def test_a_stalled_receiver_does_not_hold_back_the_other_affiliates(store: Store) -> None:
    """docs/outbound.md: sends are pooled and an affiliate has a share of them, a quarter.
    While one affiliate's receiver holds every request it gets, another's postbacks are
    delivered, and the first never has more than its share in flight; released, it gets
    all of its."""
    from tests.cli.receiver import receiving

    settings = _settings(outbound_timeout=20.0, outbound_lease_seconds=30.0)
    app = ClickbackApp(settings, store)
    await app.startup()
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4444))
    release = threading.Event()
    try:
        with receiving([200], hold=release) as stalled, receiving([200]) as healthy:
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                s = await make_offer(c)
                await _aff_url(c, s, f"http://127.0.0.1:{stalled.port}/pb?c={{refid}}")
                b_link = await _other_affiliate(
                    c, s, f"http://127.0.0.1:{healthy.port}/pb?c={{refid}}"
                )
                for i in range(40):
                    await _convert(c, s["link"], f"A{i}")
                await _until(lambda: stalled.arrived >= 8)  # its sends are in flight
                for i in range(10):
                    await _convert(c, b_link, f"B{i}")
                # the stalled one's sends end only when released, at the 20 s timeout at
                # the latest: these come while they are held
                await _until(lambda: len(healthy.hits) == 10, timeout=15)
                assert stalled.hits == [] and 8 <= stalled.arrived <= 64 // 4
                release.set()
                await _until(lambda: len(stalled.delivered()) == 40, timeout=30)
                assert len(healthy.delivered()) == 10
    finally:
        release.set()
        await app.shutdown()


async def test_a_claim_gives_each_affiliate_no_more_than_its_room(store: Store) -> None:
    """The sender's share per affiliate holds in the claim itself: an affiliate with some
    sends in flight gets its share less those, one with its share in flight none, the
    others their share, oldest first; without a share, what is due."""
    # (the clicks are screened at once, and their conversions then)
    async with _jobs_held(store) as (app, c):
        s = await make_offer(c)
        await _aff_url(c, s, "http://127.0.0.1:9/pb?c={refid}")
        b_link = await _other_affiliate(c, s, "http://127.0.0.1:9/pb?c={refid}")
        b = {"id": b_link["affiliate_id"]}
        for i in range(10):
            await _convert(c, s["link"], f"A{i}")
            await _convert(c, b_link, f"B{i}")
        await _all_screened(app, store, 20)
        a = s["affiliate"]["id"]
        now = time.time_ns() // 1000

        async def claim(in_flight: dict[int, int], share: int) -> list[int]:
            rows = await store.claim_deliveries(now, now + 60_000_000, 20, in_flight, share)
            return sorted(r["delivery_affiliate"] for r in rows)

        assert await claim({a: 6}, 8) == [a] * 2 + [b["id"]] * 8
        assert await claim({a: 8, b["id"]: 8}, 8) == []
        assert await claim({}, 0) == [a] * 8 + [b["id"]] * 2


async def test_a_reversal_waiting_behind_its_sale_is_retried_for_its_own_time(
    store: Store,
) -> None:
    """A `reversed` postback waits while the `conversion` before it is retried: once that
    one is done (delivered, or failed after 72 hours), the reversal's own 72 hours run
    from then, not from when it was queued (it had one attempt left, and failed at its
    first 5xx: the affiliate kept a sale that was reversed)."""
    async with _jobs_held(store) as (app, c):
        await _reversed_sale(app, c, store)
        queued = time.time_ns() // 1000
        [sale] = await store.claim_deliveries(queued + 1, queued + 60_000_000, 20)
        assert sale["event"] == "conversion"
        late = queued + 73 * 3600 * 1_000_000  # retried until it failed, 73 hours on
        failed = Attempt(500, "", 5, "")
        args = ("GET", "http://127.0.0.1:9/pb", "failed", late, late, 25, queued + 60_000_000)
        assert await store.finish_attempt(sale["delivery_id"], sale["affiliate_id"], failed, *args)
        [reversal] = await store.claim_deliveries(late, late + 60_000_000, 20)
        assert reversal["event"] == "reversed"
        assert reversal["queued_at"] == late and reversal["tries"] == 0


async def test_a_sale_resent_after_its_reversal_failed_too_is_followed_by_it(
    store: Store,
) -> None:
    """Both postbacks of a reversed sale failed (the receiver down for days): resending
    the sale queues the reversal again after it, in order, not the sale alone (the
    affiliate would keep a sale that was reversed)."""
    async with _jobs_held(store) as (app, c):
        await _reversed_sale(app, c, store)
        now = time.time_ns() // 1000
        failed = Attempt(500, "", 5, "")
        ids = []
        for _ in range(2):  # the sale, then the reversal, each failed for good
            [d] = await store.claim_deliveries(now, now + 60_000_000, 20)
            ids.append(d["delivery_id"])
            args = ("GET", "http://127.0.0.1:9/pb", "failed", now, now, 25, now + 60_000_000)
            assert await store.finish_attempt(d["delivery_id"], d["affiliate_id"], failed, *args)
        assert await outbound_setup.resend_delivery(store, ids[0]) == 1
        later = time.time_ns() // 1000 + 1
        [sale] = await store.claim_deliveries(later, later + 60_000_000, 20)
        assert (sale["delivery_id"], sale["event"]) == (ids[0], "conversion")  # first, alone
        sent = Attempt(200, "ok", 5, "")
        args = ("GET", "http://127.0.0.1:9/pb", "delivered", later, later, 25, later + 60_000_000)
        assert await store.finish_attempt(ids[0], sale["affiliate_id"], sent, *args)
        [reversal] = await store.claim_deliveries(later, later + 60_000_000, 20)
        assert (reversal["delivery_id"], reversal["event"]) == (ids[1], "reversed")


async def test_a_delivery_another_sender_finished_during_a_claim_is_not_claimed_again(
    store: Store,
) -> None:
    """PostgreSQL: a claim chooses from the deliveries as they were when its statement
    began; one that another sender claimed, sent and finished in the meantime (its lease
    cleared) is looked at again once locked, and passed over: not sent twice. The claim's
    statement is held up by a view of the affiliates that sleeps, on its own connection."""
    if not isinstance(store, PostgresStore):
        pytest.skip("SQLite: one write at a time, a claim sees what another finished")
    app = ClickbackApp(_settings(jobs_poll_seconds=3600, rollup_settle=0.0), store)
    await app.startup()
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4444))
    slow_schema = "slow_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(PG_URL)
    slow = PostgresStore(PG_URL)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            s = await make_offer(c)
            await _aff_url(c, s, "http://127.0.0.1:9/pb?c={refid}")
            await _convert(c, s["link"], "RACE-1")
            await _all_screened(app, store, 1)
        await admin.execute(f"CREATE SCHEMA {slow_schema}")
        await admin.execute(
            f"CREATE VIEW {slow_schema}.affiliates AS SELECT * FROM {store.schema_name}"
            ".affiliates WHERE (SELECT true FROM pg_sleep(0.6))"
        )
        slow._settings = lambda: {"search_path": f"{slow_schema},{store.schema_name}"}  # type: ignore[method-assign]
        await slow.open()
        now = time.time_ns() // 1000
        late = asyncio.create_task(slow.claim_deliveries(now, now + 60_000_000, 20))
        await asyncio.sleep(0.2)  # its statement began, and sleeps
        [first] = await store.claim_deliveries(now, now + 60_000_000, 20)
        sent = Attempt(200, "ok", 5, "")
        assert await store.finish_attempt(
            first["delivery_id"],
            first["delivery_affiliate"],
            sent,
            "GET",
            "http://127.0.0.1:9/pb",
            "delivered",
            now,
            now,
            25,
            now + 60_000_000,
        )
        assert not late.done()  # finished while the other claim ran
        assert await late == []
    finally:
        await slow.close()
        await admin.execute(f"DROP SCHEMA IF EXISTS {slow_schema} CASCADE")
        await admin.close()
        await app.shutdown()


async def test_a_postback_url_with_a_brace_that_is_no_macro_is_refused(
    oc: httpx.AsyncClient,
) -> None:
    """`{payout}` (another platform's name) or `{refidd}` (a typo) would be sent as the
    text: refused, naming the macro it may mean and listing them; the macros pass, and a
    URL refused sets nothing."""
    s = await make_offer(oc)
    aff = s["affiliate"]["id"]
    base = "https://aff.example/pb?c={refid}"
    for extra, meant in (
        ("&p={payout}", "{commission}"),
        ("&t={transaction_id}", "{refid}"),
        ("&c={RefID}", "{refid}"),
        ("&s={aff_sub2}", "{sub2}"),
        ("&x={refidd}", None),
        ("&p={ payout }", "{commission}"),
        ("&s={sub.1}", None),
        ("&p={$payout}", None),
    ):
        r = await oc.patch(
            f"/api/v1/affiliates/{aff}", json={"postback_url": base + extra}, headers=AUTH
        )
        assert r.status_code == 400, r.text
        [error] = r.json()["errors"]
        assert (error["field"], error["code"]) == ("postback_url", "unknown_macro")
        assert extra.split("=", 1)[1] in error["message"] and "{conversion_id}" in error["message"]
        if meant:
            assert f"`{meant}` is what it may mean" in error["message"], error
    every = base + "&e={}&" + "&".join(f"m{i}={{{m}}}" for i, m in enumerate(MACROS))
    r = await oc.patch(f"/api/v1/affiliates/{aff}", json={"postback_url": every}, headers=AUTH)
    assert r.status_code == 200 and r.json()["postback_url"] == every, r.text
    r = await oc.put(
        f"/api/v1/offers/{s['offer']['id']}/postbacks/{aff}",
        json={"postback_url": base + "&p={payout}"},
        headers=AUTH,
    )
    assert r.json()["errors"][0]["code"] == "unknown_macro", r.text
    # a macro after the `#` is never sent (the fragment is not): refused, with where
    # it belongs; a `#` with no macro after it is left as it was
    for fragment in ("#{sub1}", "#x={ sub1 }"):
        r = await oc.patch(
            f"/api/v1/affiliates/{aff}", json={"postback_url": base + fragment}, headers=AUTH
        )
        assert r.status_code == 400, r.text
    [error] = r.json()["errors"]
    assert (error["field"], error["code"]) == ("postback_url", "invalid_url"), error
    assert "`{sub1}` is after the `#`" in error["message"] and "?sub1={sub1}" in error["message"]
    r = await oc.patch(
        f"/api/v1/affiliates/{aff}", json={"postback_url": base + "#top"}, headers=AUTH
    )
    assert r.status_code == 200, r.text


async def test_one_affiliates_backlog_does_not_hide_anothers_deliveries(store: Store) -> None:
    """A claim reads the oldest due deliveries only (four times as many as it asks for):
    behind one affiliate's backlog older than all of them, another's were not read while
    the first had room, and waited for the backlog. The claim that gives an affiliate the
    last of its share claims again without it."""
    from clickback.domain.sender import Sender

    with receiver(lambda n, path: (200, b"ok")) as (port, hits):
        async with _jobs_held(store) as (app, c):
            s = await make_offer(c)
            await _aff_url(c, s, f"http://127.0.0.1:{port}/a?c={{refid}}")
            b_link = await _other_affiliate(c, s, f"http://127.0.0.1:{port}/b?c={{refid}}")
            for i in range(40):
                await _convert(c, s["link"], f"A{i}")
            for i in range(3):
                await _convert(c, b_link, f"B{i}")
            await _all_screened(app, store, 43)
            assert app.sender is not None
            # 8 sends, 2 an affiliate: a claim reads the oldest 32, all of them A's
            sender = Sender(store, app.sender.send, app.sender.policy, concurrency=8)
            assert await sender.run_once() == 4
            paths = sorted(urlsplit(h[0]).path for h in hits)
            assert paths == ["/a"] * 2 + ["/b"] * 2, paths
