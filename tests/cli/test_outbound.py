"""Outbound postbacks to a real receiver on loopback: failures, recovery, exactly-once per
idempotency key, signatures, disabling and re-enabling, and kill -9 mid-delivery."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest

from tests.cli.conftest import CLICKBACK, Server, cli
from tests.cli.receiver import Receiver, receiving, verify_signature

TOKEN = "outbound-admin"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FAST = {
    "CLICKBACK_ADMIN_TOKEN": TOKEN,
    "CLICKBACK_OUTBOUND_ALLOW_PRIVATE": "1",
    "CLICKBACK_OUTBOUND_RETRY_SECONDS": "0.3,0.6",
    "CLICKBACK_OUTBOUND_TIMEOUT": "0.5",
    "CLICKBACK_JOBS_POLL_SECONDS": "0.05",
    "CLICKBACK_FRAUD_MIN_SECONDS": "0",
}
TEMPLATE = (
    "/pb?click={refid}&conv={conversion_id}&amount={orderamount}&pay={commission}"
    "&cur={currency}&s1={sub1}&event={event}&status={status}&order={ordernumber}"
)


def setup(server: Server, receiver: Receiver, **postback: Any) -> tuple[httpx.Client, str]:
    c = server.client = httpx.Client(base_url=server.base, headers=AUTH, timeout=10)
    adv = c.post("/api/v1/advertisers", json={"name": "Shop"}).json()
    offer = c.post(
        "/api/v1/offers",
        json={
            "advertiser_id": adv["id"],
            "name": "O",
            "destination_url": "https://shop.example/",
            "payout_type": "cps",
            "payout_percent": "10",
        },
    ).json()
    aff = c.post("/api/v1/affiliates", json={"name": "Aff"}).json()
    body = {"postback_url": f"http://127.0.0.1:{receiver.port}{TEMPLATE}", **postback}
    r = c.patch(f"/api/v1/affiliates/{aff['id']}", json=body)
    assert r.status_code == 200, r.text
    link = c.post("/api/v1/links", json={"offer_id": offer["id"], "affiliate_id": aff["id"]})
    return c, link.json()["code"]


def convert(server: Server, code: str, order: str, sub1: str = "s&1") -> str:
    r = httpx.get(f"{server.base}/c/{code}", params={"sub1": sub1})
    refid = parse_qs(urlsplit(r.headers["location"]).query)["refid"][0]
    r = httpx.get(
        f"{server.base}/postback",
        params={"refid": refid, "orderamount": "50.00", "ordernumber": order},
    )
    assert r.json()["status"] == "accepted", r.text
    return refid


def test_failing_then_recovering_receiver_gets_each_postback_once(
    sqlite_db: str, tmp_path: Path
) -> None:
    server = Server(sqlite_db, tmp_path, env=FAST)
    # 500 four times, then two stalls past the 0.5 s timeout, then healthy
    with receiving([500, 500, 500, 500, 1.0, 1.0, 200]) as receiver:
        server.start()
        try:
            c, code = setup(
                server, receiver, postback_secret="sek", postback_events=["conversion", "reversed"]
            )
            refids = {convert(server, code, f"O{i}"): f"O{i}" for i in range(6)}
            deadline = time.monotonic() + 30
            while (
                len(c.get("/api/v1/deliveries", params={"state": "delivered"}).json()["items"]) < 6
            ):
                assert time.monotonic() < deadline, "not every postback was delivered"
                time.sleep(0.05)
            got = receiver.delivered()
            assert len(got) == 6
            for hit in got.values():
                q = parse_qs(urlsplit(hit.url).query)
                assert refids[q["click"][0]] == q["order"][0]
                assert (q["amount"], q["pay"], q["cur"]) == (["50.00"], ["5.00"], ["USD"])
                assert (q["s1"], q["event"], q["status"]) == (["s&1"], ["conversion"], ["approved"])
                assert "s%261" in hit.url  # macros are URL-encoded
                assert verify_signature("sek", hit.headers["x-clickback-signature"], hit.url)
            assert not verify_signature(
                "wrong",
                next(iter(got.values())).headers["x-clickback-signature"],
                next(iter(got.values())).url,
            )
            deliveries = c.get("/api/v1/deliveries", params={"state": "delivered"}).json()
            assert len(deliveries["items"]) == 6
            first = c.get(f"/api/v1/deliveries/{deliveries['items'][-1]['id']}").json()
            codes = [a["status_code"] for a in first["attempts"]]
            assert codes[-1] == 200 and any(x in (500, None) for x in codes[:-1]), codes
            assert all(
                a["latency_ms"] >= 0 and a["url"].startswith("http") for a in first["attempts"]
            )

            # a reversal is posted back too, as its own delivery
            conv = c.get("/api/v1/conversions", params={"ordernumber": "O0"}).json()["items"][0]
            r = c.post(
                f"/api/v1/conversions/{conv['id']}/status",
                json={"status": "reversed", "reason": "chargeback"},
            )
            assert r.status_code == 200
            got = receiver.wait_for(7)
            events = sorted(parse_qs(urlsplit(h.url).query)["event"][0] for h in got.values())
            assert events.count("reversed") == 1
        finally:
            server.stop()


def test_post_method_sends_json_and_4xx_is_final(sqlite_db: str, tmp_path: Path) -> None:
    server = Server(sqlite_db, tmp_path, env=FAST)
    with receiving([404]) as receiver:
        server.start()
        try:
            c, code = setup(server, receiver, postback_method="POST", postback_secret="k")
            convert(server, code, "P1")
            deadline = time.monotonic() + 10
            while not c.get("/api/v1/deliveries", params={"state": "failed"}).json()["items"]:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            [hit] = receiver.hits  # one attempt: a 404 will not get better
            body = orjson.loads(hit.body)
            assert body["ordernumber"] == "P1" and body["event"] == "conversion"
            assert verify_signature("k", hit.headers["x-clickback-signature"], hit.body.decode())
            # why it failed is in `clickback deliveries show`: the answer's excerpt
            [failed] = c.get("/api/v1/deliveries", params={"state": "failed"}).json()["items"]
            shown = orjson.loads(
                cli("deliveries", "show", str(failed["id"]), "--json", db=sqlite_db)
            )
            assert shown == c.get(f"/api/v1/deliveries/{failed['id']}").json()
            [tried] = shown["attempts"]
            assert (tried["status_code"], tried["response_excerpt"]) == (404, "ok")
            table = cli("deliveries", "show", str(failed["id"]), db=sqlite_db, columns=250)
            assert "response_excerpt" in table, table
        finally:
            server.stop()
        said = f"outbound postback {failed['id']} (conversion of conversion 1) to affiliate 1:"
        assert f"{said} answered 404; failed, not retried" in server.log.read_text()


def test_postback_disabled_after_failures_and_reenabled(sqlite_db: str, tmp_path: Path) -> None:
    env = {**FAST, "CLICKBACK_OUTBOUND_DISABLE_AFTER": "3"}
    server = Server(sqlite_db, tmp_path, env=env)
    with receiving([500, 500, 500, 200]) as receiver:
        server.start()
        try:
            c, code = setup(server, receiver)
            # the URL's password is sent (Basic), never written to the log
            url = f"http://u:s3cret@127.0.0.1:{receiver.port}{TEMPLATE}"
            assert c.patch("/api/v1/affiliates/1", json={"postback_url": url}).status_code == 200
            convert(server, code, "D1")
            deadline = time.monotonic() + 10
            while c.get("/api/v1/affiliates/1").json()["postback_enabled"]:
                assert time.monotonic() < deadline, "never disabled"
                time.sleep(0.05)
            convert(server, code, "D2")  # made while disabled: held
            time.sleep(0.5)
            held = c.get("/api/v1/deliveries", params={"state": "held"}).json()["items"]
            assert len(held) == 2 and len(receiver.hits) == 3
            r = c.patch("/api/v1/affiliates/1", json={"postback_enabled": True})
            assert r.json()["postback_enabled"] is True and r.json()["postback_failures"] == 0
            assert len(receiver.wait_for(2)) == 2
        finally:
            server.stop()
        log = server.log.read_text()
        assert log.count("answered 500; to be retried") == 2, log
        assert log.count("answered 500; held while the affiliate's postback is disabled") == 1
        assert "affiliate 1's postback is disabled after 3 failures in a row" in log, log
        assert "s3cret" not in log and f"127.0.0.1:{receiver.port}/pb" not in log, log


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://10.0.0.1/x",
        "http://169.254.169.254/latest",
        "http://localhost:8080/",
        "http://[::1]/x",
        "ftp://example.com/",
    ],
)
def test_inward_postback_urls_are_refused(sqlite_db: str, tmp_path: Path, url: str) -> None:
    server = Server(sqlite_db, tmp_path, env={"CLICKBACK_ADMIN_TOKEN": TOKEN})
    server.start()
    try:
        c = server.client = httpx.Client(base_url=server.base, headers=AUTH)
        aff = c.post("/api/v1/affiliates", json={"name": "A"}).json()
        r = c.patch(f"/api/v1/affiliates/{aff['id']}", json={"postback_url": url})
        assert r.status_code == 400
        [error] = r.json()["errors"]
        assert error["code"] in ("private_address", "invalid_url")
        if error["code"] == "private_address":  # the message names the way out
            assert "CLICKBACK_OUTBOUND_ALLOW_PRIVATE=1" in error["message"]
    finally:
        server.stop()


def test_kill9_while_deliveries_are_queued_and_in_flight(sqlite_db: str, tmp_path: Path) -> None:
    env = {**FAST, "CLICKBACK_OUTBOUND_LEASE_SECONDS": "1"}
    server = Server(sqlite_db, tmp_path, env=env)
    with receiving([0.2]) as receiver:  # every answer takes 0.2 s: some are always in flight
        server.start()
        try:
            _, code = setup(server, receiver)
            for i in range(20):
                convert(server, code, f"K{i}")
            deadline = time.monotonic() + 10
            while not receiver.hits:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            server.kill9()
            arrived_before = len(receiver.hits)
            server.start()
            receiver.script[:] = [200]
            got = receiver.wait_for(20)
            orders = sorted(parse_qs(urlsplit(h.url).query)["order"][0] for h in got.values())
            assert orders == sorted(f"K{i}" for i in range(20))  # each once, none lost
            assert arrived_before < 20
        finally:
            server.stop()


def test_an_offer_override_is_shown_and_removed_from_the_command_line(sqlite_db: str) -> None:
    cli("advertiser", "create", "Shop", db=sqlite_db)
    for _ in range(2):
        cli(
            "offer", "create", "--advertiser", "1", "--name", "O", "--url",
            "https://shop.example/", "--payout-type", "cps", "--payout-percent", "10",
            db=sqlite_db,
        )  # fmt: skip
    cli("affiliate", "create", "Pub", db=sqlite_db)
    own = "https://aff.example/own?c={refid}"
    cli("affiliate", "postback", "1", "--url", own, "--secret", "s3", db=sqlite_db)
    for offer in ("1", "2"):
        url = f"https://aff.example/o{offer}?c={{refid}}"
        cli("affiliate", "postback", "1", "--offer", offer, "--url", url, db=sqlite_db)
    shown = orjson.loads(cli("affiliate", "postback", "1", "--json", db=sqlite_db))
    assert shown["postback_url"] == own and shown["signed"] is True and "s3" not in str(shown)
    assert [(o["offer_id"], o["postback_url"]) for o in shown["overrides"]] == [
        (1, "https://aff.example/o1?c={refid}"),
        (2, "https://aff.example/o2?c={refid}"),
    ]
    one = orjson.loads(cli("affiliate", "postback", "1", "--offer", "2", "--json", db=sqlite_db))
    assert [o["offer_id"] for o in one["overrides"]] == [2]
    assert "removed" in cli("affiliate", "postback", "1", "--offer", "2", "--remove", db=sqlite_db)
    shown = orjson.loads(cli("affiliate", "postback", "1", "--json", db=sqlite_db))
    assert [o["offer_id"] for o in shown["overrides"]] == [1]
    out = subprocess.run(
        [CLICKBACK, "affiliate", "postback", "1", "--offer", "2", "--remove", "--db", sqlite_db],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "no postback override" in out.stdout, out
    text = cli("affiliate", "postback", "1", db=sqlite_db)
    assert own in text and "https://aff.example/o1" in text
