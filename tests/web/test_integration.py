"""The two integration tests, the postback URL and replay, as an advertiser would use them."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from clickback.config import Settings
from clickback.domain.ports import Store
from clickback.storage import schema
from clickback.storage.sqlite import SqliteStore
from clickback.web.app import ClickbackApp
from tests.conftest import ADMIN, AUTH, click, make_offer


class _Landing(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"<html>shop</html>")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def landing() -> Iterator[str]:
    """A real landing page on loopback."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Landing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/landing"
    server.shutdown()
    server.server_close()


async def start_test(client: httpx.AsyncClient, offer_id: int) -> dict[str, Any]:
    r = await client.post(f"/api/v1/offers/{offer_id}/integration-tests", headers=AUTH)
    assert r.status_code == 201, r.text
    return r.json()


async def read_test(client: httpx.AsyncClient, test_id: int) -> dict[str, Any]:
    r = await client.get(f"/api/v1/integration-tests/{test_id}", headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json()


async def test_new_advertiser_proves_the_integration(
    client: httpx.AsyncClient, landing: str
) -> None:
    s = await make_offer(client, destination_url=landing + "?x=1")
    test = await start_test(client, s["offer"]["id"])
    assert test["click_test"]["status"] == "passed"
    assert [r["code"] for r in test["click_test"]["reasons"]] == ["landing_reachable"]
    assert test["conversion_test"] == {"status": "pending", "reasons": [], "postback_ids": []}
    assert test["postback_url"].startswith(f"http://track.test/postback?refid={test['refid']}&")

    # the advertiser follows the test link with a real client: a test click
    code = test["tracking_url"].rsplit("/", 1)[1]
    refid = await click(client, {"code": code})
    [c] = (await client.get("/api/v1/clicks", params={"refid": refid}, headers=AUTH)).json()[
        "items"
    ]
    assert c["is_test"] is True

    # a wrong postback: the RefID under the wrong name, a bad amount, no ordernumber
    r = await client.get(f"/postback?click_id={refid}&orderamount=ten")
    assert r.status_code == 400
    test = await read_test(client, test["id"])
    assert test["conversion_test"]["status"] == "failed"
    codes = {(x["field"], x["code"]) for x in test["conversion_test"]["reasons"]}
    assert codes == {
        ("refid", "missing"),
        ("ordernumber", "missing"),
        ("orderamount", "invalid_amount"),
        ("click_id", "wrong_parameter"),
    }

    # the right one
    r = await client.get(f"/postback?refid={refid}&orderamount=10.00&ordernumber=TEST-1")
    assert r.json()["status"] == "accepted"
    test = await read_test(client, test["id"])
    assert test["conversion_test"]["status"] == "passed"
    assert len(test["conversion_test"]["postback_ids"]) == 2

    # test traffic is flagged and can be kept out
    convs = (await client.get("/api/v1/conversions", headers=AUTH)).json()["items"]
    assert [c["is_test"] for c in convs] == [True]
    real = await client.get("/api/v1/conversions", params={"is_test": "false"}, headers=AUTH)
    assert real.json()["items"] == []
    listed = (
        await client.get(f"/api/v1/offers/{s['offer']['id']}/integration-tests", headers=AUTH)
    ).json()
    assert [t["id"] for t in listed["items"]] == [test["id"]]


async def test_unreachable_landing_page_is_a_warning_not_a_failure(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client, destination_url="http://127.0.0.1:9/nothing-listens-here")
    test = await start_test(client, s["offer"]["id"])
    assert test["click_test"]["status"] == "passed"
    assert test["click_test"]["reasons"][0]["code"] == "landing_unreachable"


async def test_a_paused_offer_with_a_fallback_still_fails_the_click_test(
    client: httpx.AsyncClient, landing: str
) -> None:
    s = await make_offer(client, destination_url=landing, fallback_url=landing + "/other")
    oid = s["offer"]["id"]
    await client.patch(f"/api/v1/offers/{oid}", json={"status": "paused"}, headers=AUTH)
    test = await start_test(client, oid)
    assert test["click_test"]["status"] == "failed"
    assert test["click_test"]["reasons"][0]["code"] == "offer_paused"


async def test_an_offer_stored_with_an_unknown_macro_fails_the_click_test(
    client: httpx.AsyncClient, store: Store, landing: str
) -> None:
    """An offer stored before unknown macros were refused (`{click_id}` in its URL)
    passed the click test, the visitor getting the text: it fails, naming the macro."""
    s = await make_offer(client, destination_url=landing)
    oid = s["offer"]["id"]
    await store.update_row("offers", oid, {"destination_url": landing + "?cid={click_id}"})
    await client.patch(f"/api/v1/offers/{oid}", json={"name": "again"}, headers=AUTH)  # reload
    test = await start_test(client, oid)
    assert test["click_test"]["status"] == "failed", test["click_test"]
    [why] = [r for r in test["click_test"]["reasons"] if r["code"] == "unknown_macro"]
    assert "`{click_id}`" in why["message"] and "`{refid}` is what it may mean" in why["message"]


async def test_paused_offer_fails_the_click_test_and_rerun_passes(
    client: httpx.AsyncClient, landing: str
) -> None:
    s = await make_offer(client, destination_url=landing)
    oid = s["offer"]["id"]
    await client.patch(f"/api/v1/offers/{oid}", json={"status": "paused"}, headers=AUTH)
    test = await start_test(client, oid)
    assert test["click_test"]["status"] == "failed"
    [paused] = test["click_test"]["reasons"]
    assert (
        paused["code"] == "offer_paused" and f"clickback offer activate {oid}" in paused["message"]
    )
    # no RefID: the conversion test says it waits for the click test, not to fire a URL
    assert (test["refid"], test["conversion_test"]["status"]) == ("", "pending")
    assert [r["code"] for r in test["conversion_test"]["reasons"]] == ["no_refid"]
    # and its postback URL is the template, not one with the RefID left empty to copy
    assert test["postback_url"].startswith("http://track.test/postback?refid={refid}&")
    await client.patch(f"/api/v1/offers/{oid}", json={"status": "active"}, headers=AUTH)
    r = await client.post(f"/api/v1/integration-tests/{test['id']}/rerun", headers=AUTH)
    assert r.json()["click_test"]["status"] == "passed" and r.json()["refid"]
    assert r.json()["conversion_test"] == {"status": "pending", "reasons": [], "postback_ids": []}
    # archived, it is not told to activate what can never serve again
    await client.delete(f"/api/v1/offers/{oid}", headers=AUTH)
    r = await client.post(f"/api/v1/integration-tests/{test['id']}/rerun", headers=AUTH)
    [archived] = r.json()["click_test"]["reasons"]
    assert archived["message"] == "the offer is archived: it serves no click again", r.text


async def test_wrong_token_fails_the_conversion_test(client: httpx.AsyncClient) -> None:
    s = await make_offer(
        client,
        destination_url="http://127.0.0.1:9/",
        advertiser={"require_token": True, "postback_token": "t0k"},
    )
    test = await start_test(client, s["offer"]["id"])
    assert test["postback_url"].endswith("&token=t0k")
    await client.get(f"/postback?refid={test['refid']}&orderamount=1&ordernumber=W&token=no")
    test = await read_test(client, test["id"])
    assert test["conversion_test"]["status"] == "failed"
    assert test["conversion_test"]["reasons"][0]["code"] == "token_invalid"


async def test_deleting_a_test_retires_its_link(client: httpx.AsyncClient) -> None:
    s = await make_offer(client, destination_url="http://127.0.0.1:9/")
    test = await start_test(client, s["offer"]["id"])
    r = await client.delete(f"/api/v1/integration-tests/{test['id']}", headers=AUTH)
    assert r.status_code == 204
    assert (
        await client.get(f"/api/v1/integration-tests/{test['id']}", headers=AUTH)
    ).status_code == 404
    code = test["tracking_url"].rsplit("/", 1)[1]
    assert (await client.get(f"/c/{code}")).status_code == 404


async def test_postback_url_is_spelled_out(client: httpx.AsyncClient) -> None:
    s = await make_offer(client)
    r = await client.get(f"/api/v1/offers/{s['offer']['id']}/postback-url", headers=AUTH)
    body = r.json()
    assert body["postback_url"] == (
        "http://track.test/postback?refid={refid}&orderamount=&ordernumber=&coupon="
        "&currency=&geo=&commissionid="
    )
    assert body["required"] == ["refid", "orderamount", "ordernumber"]
    assert "unique" in body["instructions"]
    assert body["signature_required"] is False and "sig" not in body["instructions"]


async def test_postback_url_says_when_a_signature_is_required(client: httpx.AsyncClient) -> None:
    s = await make_offer(client)
    adv = f"/api/v1/advertisers/{s['advertiser']['id']}"
    r = await client.patch(
        adv, json={"signing_secret": "k", "require_signature": True}, headers=AUTH
    )
    assert r.status_code == 200, r.text
    r = await client.get(f"/api/v1/offers/{s['offer']['id']}/postback-url", headers=AUTH)
    body = r.json()
    assert body["signature_required"] is True
    assert body["required"] == ["refid", "orderamount", "ordernumber", "ts", "sig"]
    assert "`sig`" in body["instructions"] and "docs/outbound.md" in body["instructions"]


async def test_replay_after_reactivating_counts_exactly_once(client: httpx.AsyncClient) -> None:
    s = await make_offer(client)
    oid = s["offer"]["id"]
    refid = await click(client, s["link"])
    await client.patch(f"/api/v1/offers/{oid}", json={"status": "paused"}, headers=AUTH)
    r = await client.get(f"/postback?refid={refid}&orderamount=20&ordernumber=RP")
    assert r.status_code == 422
    [original] = (await client.get("/api/v1/postbacks", headers=AUTH)).json()["items"]
    assert original["outcome"] == "offer_paused"
    await client.patch(f"/api/v1/offers/{oid}", json={"status": "active"}, headers=AUTH)

    r = await client.post(f"/api/v1/postbacks/{original['id']}/replay", headers=AUTH)
    assert r.status_code == 200 and r.json()["answer"]["status"] == "accepted"
    assert r.json()["postback"]["replay_of"] == original["id"]
    r = await client.post(f"/api/v1/postbacks/{original['id']}/replay", headers=AUTH)
    assert r.json()["answer"]["status"] == "duplicate"

    convs = (await client.get("/api/v1/conversions", headers=AUTH)).json()["items"]
    assert len(convs) == 1 and convs[0]["orderamount"] == "20.00"
    # its time is the first arrival's; it was recorded at the replay, after
    assert convs[0]["created_at"] == original["received_at"]
    assert convs[0]["recorded_at"] > convs[0]["created_at"]
    ledger = (await client.get("/api/v1/postbacks", headers=AUTH)).json()["items"]
    assert [p["outcome"] for p in ledger] == ["duplicate", "accepted", "offer_paused"]
    assert (await client.post("/api/v1/postbacks/999999/replay", headers=AUTH)).status_code == 404


async def test_a_replay_is_checked_against_the_token_now_saying_it_passed_then(
    client: httpx.AsyncClient,
) -> None:
    """Refused for its offer paused, with the token right; the token is changed before
    the replay (rotated after a leak, say): refused, saying that it passed as it arrived,
    so that forged postbacks refused for the offer are not counted by a replay once the
    token is made safe. With the token now the one it carried, it is counted. One
    refused for its token says nothing of that."""
    s = await make_offer(client, advertiser={"require_token": True, "postback_token": "old"})
    oid, adv = s["offer"]["id"], f"/api/v1/advertisers/{s['advertiser']['id']}"
    refid = await click(client, s["link"])
    await client.patch(f"/api/v1/offers/{oid}", json={"status": "paused"}, headers=AUTH)
    r = await client.get(f"/postback?refid={refid}&orderamount=20&ordernumber=P1&token=old")
    assert r.json()["code"] == "offer_paused", r.text
    r = await client.get(f"/postback?refid={refid}&orderamount=20&ordernumber=P2&token=bad")
    assert r.json()["code"] == "token_invalid", r.text
    listed = (await client.get("/api/v1/postbacks", headers=AUTH)).json()["items"]
    forbidden, paused = listed
    await client.patch(f"/api/v1/offers/{oid}", json={"status": "active"}, headers=AUTH)
    r = await client.patch(adv, json={"postback_token": "new"}, headers=AUTH)
    assert r.status_code == 200, r.text
    r = await client.post(f"/api/v1/postbacks/{paused['id']}/replay", headers=AUTH)
    [error] = r.json()["answer"]["errors"]
    assert error["code"] == "token_invalid", r.text
    assert "it passed this check when it arrived" in error["message"], error
    r = await client.post(f"/api/v1/postbacks/{forbidden['id']}/replay", headers=AUTH)
    [error] = [e for e in r.json()["answer"]["errors"] if e["code"] == "token_invalid"]
    assert "when it arrived" not in error["message"], error
    await client.patch(adv, json={"postback_token": "old"}, headers=AUTH)
    r = await client.post(f"/api/v1/postbacks/{paused['id']}/replay", headers=AUTH)
    assert r.json()["answer"]["status"] == "accepted", r.text
    convs = (await client.get("/api/v1/conversions", headers=AUTH)).json()["items"]
    assert [c["ordernumber"] for c in convs] == ["P1"]


async def test_a_replay_judges_the_window_as_of_the_first_arrival(
    client: httpx.AsyncClient, app: ClickbackApp
) -> None:
    """Refused while its offer was paused, a minute inside a one-day window; replayed
    once the window has passed: it is attributed, as it would have been on arrival."""
    s = await make_offer(client, attribution_window_days=1)
    oid = s["offer"]["id"]
    now_us = time.time_ns() // 1000
    refid = app.tracker.codec.issue(s["link"]["id"], now_us // 1000 - 86_400_000 + 60_000)
    await client.patch(f"/api/v1/offers/{oid}", json={"status": "paused"}, headers=AUTH)
    r = await client.get(f"/postback?refid={refid}&orderamount=20&ordernumber=LATE")
    assert r.json()["code"] == "offer_paused"
    [original] = (await client.get("/api/v1/postbacks", headers=AUTH)).json()["items"]
    await client.patch(f"/api/v1/offers/{oid}", json={"status": "active"}, headers=AUTH)

    class TwoMinutesOn:
        def now_us(self) -> int:
            return now_us + 120_000_000

    app.tracker.clock = TwoMinutesOn()  # the click is now a day and a minute old
    r = await client.get(f"/postback?refid={refid}&orderamount=20&ordernumber=NEW")
    assert r.json()["code"] == "expired_refid"  # a postback arriving now is too late
    r = await client.post(f"/api/v1/postbacks/{original['id']}/replay", headers=AUTH)
    assert r.json()["answer"]["status"] == "accepted", r.text


async def test_read_token_is_not_shown_the_advertisers_postback_token(
    client: httpx.AsyncClient, app: Any
) -> None:
    from clickback.web.http import hash_token

    await app.store.create_token("ro", hash_token("read-tok"), "read")
    ro = {"Authorization": "Bearer read-tok"}
    s = await make_offer(
        client,
        destination_url="http://127.0.0.1:9/",
        advertiser={"require_token": True, "postback_token": "s3cret"},
    )
    adv = (await client.get(f"/api/v1/advertisers/{s['advertiser']['id']}", headers=ro)).json()
    assert adv["postback_token"] == "(hidden)"
    # the postback URL and the integration test name the token without giving it
    path = f"/api/v1/offers/{s['offer']['id']}/postback-url"
    shown = (await client.get(path, headers=ro)).json()["postback_url"]
    assert shown.endswith("&token={token}")
    assert (await client.get(path, headers=AUTH)).json()["postback_url"].endswith("&token=s3cret")
    test = await start_test(client, s["offer"]["id"])
    assert test["postback_url"].endswith("&token=s3cret")  # an admin token's view
    r = await client.get(f"/api/v1/integration-tests/{test['id']}", headers=ro)
    assert r.status_code == 200 and "s3cret" not in r.text
    assert r.json()["postback_url"].endswith("&token={token}")
    listed = await client.get(f"/api/v1/offers/{s['offer']['id']}/integration-tests", headers=ro)
    assert listed.status_code == 200 and "s3cret" not in listed.text


async def test_postback_url_with_a_token_needing_escapes_works_as_given(
    client: httpx.AsyncClient,
) -> None:
    token = "a+b/c=&d"  # any string up to 200 characters is accepted as a token
    s = await make_offer(
        client,
        destination_url="http://127.0.0.1:9/",
        advertiser={"require_token": True, "postback_token": token},
    )
    test = await start_test(client, s["offer"]["id"])
    url = (
        test["postback_url"]
        .replace("orderamount=", "orderamount=1")
        .replace("ordernumber=", "ordernumber=TOK-1")
    )
    r = await client.get(url.removeprefix("http://track.test"))
    assert r.status_code == 200, r.text  # the advertiser fired exactly the URL it was given


async def test_click_test_finds_a_refid_macro_next_to_other_characters(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client, destination_url="http://127.0.0.1:9/r/aff-{refid}")
    r = await client.get(f"/c/{s['link']['code']}")
    assert r.status_code == 302 and r.headers["location"].startswith("http://127.0.0.1:9/r/aff-")
    test = await start_test(client, s["offer"]["id"])
    assert test["click_test"]["status"] == "passed", test["click_test"]
    assert test["refid"] and len(test["refid"]) == 36


async def test_read_token_is_not_shown_the_token_in_the_ledger(
    client: httpx.AsyncClient, app: Any
) -> None:
    from clickback.web.http import hash_token

    await app.store.create_token("ro", hash_token("read-tok"), "read")
    ro = {"Authorization": "Bearer read-tok"}
    s = await make_offer(client, advertiser={"require_token": True, "postback_token": "s3cret"})
    refid = await click(client, s["link"])
    r = await client.get(f"/postback?refid={refid}&orderamount=1&ordernumber=L1&token=s3cret")
    assert r.json()["status"] == "accepted"
    r = await client.get("/api/v1/postbacks", headers=ro)
    assert r.status_code == 200 and "s3cret" not in r.text, r.json()["items"][0]["params"]
    [row] = r.json()["items"]
    # there, but hidden: not to be read as a postback sent without a token
    assert row["params"]["token"] == "(hidden)" and row["params"]["ordernumber"] == "L1"
    r = await client.get(f"/postback?refid={refid}&orderamount=1&ordernumber=L2")
    assert r.json()["errors"][0]["code"] == "token_missing"
    r = await client.get("/api/v1/postbacks", params={"ordernumber": "L2"}, headers=ro)
    assert r.json()["items"][0]["params"].get("token", "") == ""
    r = await client.get(f"/api/v1/postbacks/{row['id']}", headers=ro)
    assert r.status_code == 200 and "s3cret" not in r.text
    r = await client.get("/api/v1/postbacks", params={"ordernumber": "L1"}, headers=AUTH)
    [full] = r.json()["items"]
    assert full["params"]["token"] == "s3cret"


async def test_the_built_in_test_affiliate_cannot_be_archived(client: httpx.AsyncClient) -> None:
    s = await make_offer(client, destination_url="http://127.0.0.1:9/")
    test = await start_test(client, s["offer"]["id"])
    r = await client.delete(f"/api/v1/affiliates/{test['affiliate_id']}", headers=AUTH)
    assert r.status_code == 409, r.text
    assert r.json()["errors"][0]["code"] == "test_affiliate"
    assert "integration tests" in r.json()["errors"][0]["message"]
    affiliate = await client.get(f"/api/v1/affiliates/{test['affiliate_id']}", headers=AUTH)
    assert affiliate.json()["archived_at"] is None
    r = await client.post(f"/api/v1/integration-tests/{test['id']}/rerun", headers=AUTH)
    assert r.json()["click_test"]["status"] == "passed", r.json()["click_test"]
    # any other affiliate is archived as before
    r = await client.delete(f"/api/v1/affiliates/{s['affiliate']['id']}", headers=AUTH)
    assert r.status_code == 200 and r.json()["archived_at"]


async def test_an_offers_integration_tests_page_like_every_list(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client, destination_url="http://127.0.0.1:9/")
    other = await make_offer(client, destination_url="http://127.0.0.1:9/")
    made = [(await start_test(client, s["offer"]["id"]))["id"] for _ in range(3)]
    await start_test(client, other["offer"]["id"])
    path = f"/api/v1/offers/{s['offer']['id']}/integration-tests"
    page = (await client.get(path, params={"limit": 2}, headers=AUTH)).json()
    seen = [t["id"] for t in page["items"]]
    assert len(seen) == 2 and page["next_cursor"]
    page = (
        await client.get(path, params={"limit": 2, "cursor": page["next_cursor"]}, headers=AUTH)
    ).json()
    seen += [t["id"] for t in page["items"]]
    assert seen == made[::-1] and page["next_cursor"] is None
    r = await client.get(path, params={"sort": "id"}, headers=AUTH)
    assert [t["id"] for t in r.json()["items"]] == made
    r = await client.get(path, params={"nonsense": "1"}, headers=AUTH)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "unknown_filter"


async def test_a_test_postback_may_use_a_real_order_number_and_the_real_order_still_counts(
    client: httpx.AsyncClient,
) -> None:
    """Test conversions are deduplicated apart from real ones: the developer may fire the
    test postback with a real order number of the shop, before or after that order's
    real postback, and both count (the test one never in reports); a repeat of either is
    a duplicate of its own."""
    s = await make_offer(client, destination_url="http://127.0.0.1:9/")
    test = await start_test(client, s["offer"]["id"])
    answers = {}
    for name, refid, order in (
        ("test-1", test["refid"], "SHOP-1"),  # the test first, then the real order
        ("real-1", await click(client, s["link"]), "SHOP-1"),
        ("real-2", await click(client, s["link"]), "SHOP-2"),  # the real order first
        ("test-2", test["refid"], "SHOP-2"),
    ):
        r = await client.get(f"/postback?refid={refid}&orderamount=5&ordernumber={order}")
        assert r.json()["status"] == "accepted", (name, r.json())
        answers[name] = (refid, order, r.json()["conversion_id"])
    assert (await read_test(client, test["id"]))["conversion_test"]["status"] == "passed"
    for name, (refid, order, cid) in answers.items():
        r = await client.get(f"/postback?refid={refid}&orderamount=5&ordernumber={order}")
        assert (r.json()["status"], r.json()["conversion_id"]) == ("duplicate", cid), name
    r = await client.get("/api/v1/conversions", params={"is_test": "false"}, headers=AUTH)
    real = {c["ordernumber"]: c["id"] for c in r.json()["items"]}
    assert real == {"SHOP-1": answers["real-1"][2], "SHOP-2": answers["real-2"][2]}
    r = await client.get("/api/v1/conversions", params={"is_test": "true"}, headers=AUTH)
    assert {c["ordernumber"]: c["id"] for c in r.json()["items"]} == {
        "SHOP-1": answers["test-1"][2],
        "SHOP-2": answers["test-2"][2],
    }
    # the advertiser's validation file decides the real order, not the test one
    r = await client.post(
        f"/api/v1/advertisers/{s['advertiser']['id']}/conversion-statuses",
        headers={**AUTH, "Content-Type": "text/csv"},
        content="SHOP-1,reversed,chargeback\n",
    )
    assert r.status_code == 200, r.text
    reversed_ = await client.get(f"/api/v1/conversions/{answers['real-1'][2]}", headers=AUTH)
    assert reversed_.json()["status"] == "reversed", reversed_.json()


async def test_a_test_postback_repeating_another_tests_order_number_does_not_pass(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client, destination_url="http://127.0.0.1:9/")
    body = {
        "advertiser_id": s["advertiser"]["id"],
        "name": "Other offer",
        "payout_type": "cpa",
        "payout_amount": "5.00",
        "destination_url": "http://127.0.0.1:9/",
    }
    other = (await client.post("/api/v1/offers", json=body, headers=AUTH)).json()
    first = await start_test(client, other["id"])
    r = await client.get(f"/postback?refid={first['refid']}&orderamount=5&ordernumber=TEST-1")
    assert r.json()["status"] == "accepted"
    test = await start_test(client, s["offer"]["id"])
    r = await client.get(
        f"/postback?refid={test['refid']}&orderamount=1&ordernumber=TEST-1&coupon=TEST"
    )
    assert r.json()["status"] == "duplicate"
    test = await read_test(client, test["id"])
    assert test["conversion_test"]["status"] == "failed", test["conversion_test"]
    [why] = test["conversion_test"]["reasons"]
    assert (why["code"], why["field"]) == ("duplicate_ordernumber", "ordernumber")
    assert "TEST-1" in why["message"] and "new order number" in why["message"]
    # what of the test postback differs from the order counted, as its answer says
    assert (
        why["differs"]
        == r.json()["differs"]
        == [
            {"field": "orderamount", "stored": "5.00", "sent": "1.00"},
            {"field": "refid", "stored": first["refid"], "sent": test["refid"]},
            {"field": "coupon", "stored": "", "sent": "TEST"},
        ]
    )
    assert r.json()["message"] in why["message"], why["message"]
    assert "stored orderamount 5.00 USD, this one 1.00 USD" in why["message"]

    r = await client.get(f"/postback?refid={test['refid']}&orderamount=1&ordernumber=TEST-9")
    assert r.json()["status"] == "accepted"
    assert (await read_test(client, test["id"]))["conversion_test"]["status"] == "passed"
    # re-run, the same test order fired again: its own order, counted once, still passes
    r = await client.post(f"/api/v1/integration-tests/{test['id']}/rerun", headers=AUTH)
    rerun = r.json()
    assert rerun["conversion_test"]["status"] == "pending"
    r = await client.get(f"/postback?refid={rerun['refid']}&orderamount=1&ordernumber=TEST-9")
    assert r.json()["status"] == "duplicate"
    assert (await read_test(client, test["id"]))["conversion_test"]["status"] == "passed"


async def test_a_rerun_is_not_passed_by_the_refid_of_an_earlier_run(
    client: httpx.AsyncClient,
) -> None:
    """A shop that kept the first run's RefID (hard-coded, cached) does not pass a rerun:
    the test waits, saying which postback carried an old RefID; this run's RefID, or one
    of a click on the test link made since (a test order), passes it."""
    s = await make_offer(client)
    test = await start_test(client, s["offer"]["id"])
    old = test["refid"]
    r = await client.post(f"/api/v1/integration-tests/{test['id']}/rerun", headers=AUTH)
    assert r.status_code == 200 and r.json()["refid"] != old, r.text
    r = await client.get(f"/postback?refid={old}&orderamount=5&ordernumber=STALE-1")
    assert r.json()["status"] == "accepted", r.text  # a test conversion all the same
    stale = await read_test(client, test["id"])
    assert stale["conversion_test"]["status"] == "pending", stale["conversion_test"]
    [why] = stale["conversion_test"]["reasons"]
    assert (why["code"], why["field"]) == ("stale_refid", "refid"), why
    assert "before this run of the test" in why["message"]
    # a visitor's click on the test link since the rerun, then its order: passed
    code = stale["tracking_url"].rsplit("/c/", 1)[1]
    r = await client.get(f"/c/{code}", follow_redirects=False)
    fresh = parse_qs(urlsplit(r.headers["location"]).query)["refid"][0]
    r = await client.get(f"/postback?refid={fresh}&orderamount=5&ordernumber=FRESH-1")
    assert r.json()["status"] == "accepted", r.text
    assert (await read_test(client, test["id"]))["conversion_test"]["status"] == "passed"


async def test_a_pending_conversion_test_names_postbacks_whose_refid_was_lost(
    client: httpx.AsyncClient,
) -> None:
    """The commonest mistake, the RefID lost or cut short on its way to the shop's
    server, names no link: the test, pending, says that such postbacks came since it
    began, which, and why the newest was refused."""
    s = await make_offer(client)
    token = s["advertiser"]["postback_token"]
    test = await start_test(client, s["offer"]["id"])
    assert (await read_test(client, test["id"]))["conversion_test"]["reasons"] == []
    # another's postbacks that named no click are not named: no token of this
    # advertiser's, no RefID cut from the test's
    await client.get("/postback?refid=OTHER-NETWORK-CLICK-9&orderamount=5&ordernumber=X")
    await client.get("/postback")
    await client.get("/postback?refid=%25%25%25%25%25%25%25%25&orderamount=5&ordernumber=X")
    await client.get(f"/postback?refid={test['refid'].lower()}&orderamount=5&ordernumber=X")
    assert (await read_test(client, test["id"]))["conversion_test"]["reasons"] == []
    await client.get(f"/postback?refid={test['refid'][:-1]}&orderamount=5&ordernumber=L-1")
    waiting = (await read_test(client, test["id"]))["conversion_test"]
    cut = (await client.get("/api/v1/postbacks", headers=AUTH)).json()["items"][0]
    assert f"since the test began, postback {cut['id']} with" in waiting["reasons"][0]["message"]
    await client.get(f"/postback?refid=&orderamount=5&ordernumber=L-1&token={token}")
    ledger = (await client.get("/api/v1/postbacks", headers=AUTH)).json()["items"]
    waiting = (await read_test(client, test["id"]))["conversion_test"]
    assert waiting["status"] == "pending", waiting
    [why] = waiting["reasons"]
    assert (why["code"], why["field"]) == ("refid_unmatched", "refid"), why
    assert f"postbacks {ledger[0]['id']}, {ledger[1]['id']} with" in why["message"], why
    assert f"the newest refused ({ledger[0]['code']}:" in why["message"], why["message"]
    # the RefID with more after it (a query the page kept) is named too
    await client.get(f"/postback?refid={test['refid']}%3Futm%3Dx&orderamount=5&ordernumber=L-2")
    after = (await client.get("/api/v1/postbacks", headers=AUTH)).json()["items"][0]
    [why] = (await read_test(client, test["id"]))["conversion_test"]["reasons"]
    assert f"postbacks {after['id']}, " in why["message"], why


async def test_a_test_affiliate_archived_before_it_could_not_be_serves_again_once_migrated(
    client: httpx.AsyncClient, store: Store
) -> None:
    """The built-in test affiliate could be archived (`DELETE /api/v1/affiliates/{id}`,
    its `archive_row`, as here) before it was refused; every integration test's click
    then failed as `offer_paused`. Migration 13 makes it serve again."""
    s = await make_offer(client, destination_url="http://127.0.0.1:9/")
    test = await start_test(client, s["offer"]["id"])
    assert await store.archive_row("affiliates", test["affiliate_id"])  # as DELETE did
    failed = await start_test(client, s["offer"]["id"])
    assert failed["click_test"]["status"] == "failed"
    engine = "sqlite" if isinstance(store, SqliteStore) else "postgres"
    for sql in schema.statements(engine, 13):
        await store._write(sql, bump=True)  # type: ignore[attr-defined]
    test = await start_test(client, s["offer"]["id"])
    assert test["click_test"]["status"] == "passed", test["click_test"]


async def test_simulate_fires_the_test_postback_as_the_advertiser_would(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(
        client,
        destination_url="http://127.0.0.1:9/",
        advertiser={"require_token": True, "postback_token": "t0k"},
    )
    await client.patch(
        f"/api/v1/advertisers/{s['advertiser']['id']}",
        json={"signing_secret": "k", "require_signature": True},
        headers=AUTH,
    )
    path = f"/api/v1/offers/{s['offer']['id']}/integration-tests"
    r = await client.post(path, json={"simulate": True}, headers=AUTH)
    assert r.status_code == 201, r.text
    test = r.json()
    assert test["click_test"]["status"] == "passed"
    assert test["conversion_test"]["status"] == "passed", test["conversion_test"]
    [conversion] = (await client.get("/api/v1/conversions", headers=AUTH)).json()["items"]
    assert conversion["is_test"] is True and conversion["refid"] == test["refid"]
    r = await client.post(path, json={"simulate": "yes"}, headers=AUTH)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "simulate"
    # without it, the conversion test waits for the advertiser's own postback
    test = (await client.post(path, json={"simulate": False}, headers=AUTH)).json()
    assert test["conversion_test"]["status"] == "pending"


@pytest.fixture
async def limited(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    """The app with CLICKBACK_POSTBACK_RATE_LIMIT so low that one postback per source IP
    passes (a burst of one, refilled after 100 s); the client seen as 127.0.0.1."""
    settings = Settings(
        database_url="unused", admin_token=ADMIN, public_url="http://t", postback_rate_limit=0.01
    )
    app = ClickbackApp(settings, store)
    await app.startup()
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 4444))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c
    await app.shutdown()


async def test_a_simulated_test_postback_is_not_rate_limited_nor_counted(
    limited: httpx.AsyncClient,
) -> None:
    """The operator's own simulated postback (from 127.0.0.1) neither is refused by the
    advertiser-facing limiter nor takes from the budget of postbacks from that address."""
    s = await make_offer(limited, destination_url="http://127.0.0.1:9/")
    path = f"/api/v1/offers/{s['offer']['id']}/integration-tests"
    for _ in range(3):
        test = (await limited.post(path, json={"simulate": True}, headers=AUTH)).json()
        assert test["conversion_test"]["status"] == "passed", test["conversion_test"]
    refid = await click(limited, s["link"])
    url = f"/postback?refid={refid}&orderamount=1&ordernumber="
    assert (await limited.get(url + "REAL-1")).json()["status"] == "accepted"
    assert (await limited.get(url + "REAL-2")).status_code == 429  # the limit still holds


async def test_a_retry_of_a_counted_order_is_a_duplicate_once_its_offer_is_paused_or_expired(
    client: httpx.AsyncClient, app: ClickbackApp
) -> None:
    """A retry after a lost answer (`clickback.client` fires again) of an order counted
    already answers `duplicate`, a success, after its offer was paused or archived or
    its click's window passed: a refusal would tell the shop that a counted sale was
    not, and it might send it again as a new order. A new order is refused as before."""
    s = await make_offer(client, attribution_window_days=1)
    oid = s["offer"]["id"]
    refid = await click(client, s["link"])
    first = await client.get(f"/postback?refid={refid}&orderamount=20&ordernumber=R1")
    counted = first.json()["conversion_id"]
    await client.patch(f"/api/v1/offers/{oid}", json={"status": "paused"}, headers=AUTH)
    r = await client.get(f"/postback?refid={refid}&orderamount=20&ordernumber=R1&geo=DE")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["conversion_id"]) == ("duplicate", counted)
    assert body["differs"] == [{"field": "geo", "stored": "", "sent": "DE"}]
    assert [w["code"] for w in body["warnings"]] == ["offer_paused"]
    r = await client.get(f"/postback?refid={refid}&orderamount=20&ordernumber=R2")
    assert (r.status_code, r.json()["code"]) == (422, "offer_paused")  # a new one: refused
    [row, *_] = (await client.get("/api/v1/postbacks", headers=AUTH)).json()["items"][1:]
    assert (row["outcome"], row["code"], row["conversion_id"]) == (
        "duplicate",
        "duplicate_ordernumber",
        counted,
    )
    await client.patch(f"/api/v1/offers/{oid}", json={"status": "active"}, headers=AUTH)
    now_ms = time.time_ns() // 1_000_000
    old = app.tracker.codec.issue(s["link"]["id"], now_ms - 2 * 86_400_000)  # past the window
    r = await client.get(f"/postback?refid={old}&orderamount=20&ordernumber=R1")
    assert (r.status_code, r.json()["status"]) == (200, "duplicate"), r.text
    assert [w["code"] for w in r.json()["warnings"]] == ["expired_refid"]
    r = await client.get(f"/postback?refid={old}&orderamount=20&ordernumber=R3")
    assert (r.status_code, r.json()["code"]) == (422, "expired_refid")
    convs = (await client.get("/api/v1/conversions", headers=AUTH)).json()["items"]
    assert [c["id"] for c in convs] == [counted]


async def test_nodes_starting_together_share_one_test_affiliate(store: Store) -> None:
    """Two nodes that start their first integration test together each find no test
    affiliate and make one: the one that lost the race archives its own, so the
    affiliate lists show one."""
    if store.engine != "postgres":
        pytest.skip("one process writes SQLite: its reads do not interleave with another's")
    from clickback.domain.integration import test_affiliate
    from clickback.storage.postgres import PostgresStore
    from tests.conftest import PG_URL

    assert isinstance(store, PostgresStore)
    other = await PostgresStore(f"{PG_URL}?schema={store.schema_name}").open()
    try:
        first, second = await asyncio.gather(test_affiliate(store), test_affiliate(other))
    finally:
        await other.close()
    assert first == second
    page = await store.list_rows("affiliates", {}, None, None, 100, None)
    live = [r["id"] for r in page.items if r.get("archived_at") is None]
    assert live == [first]
