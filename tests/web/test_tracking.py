"""The core loop through the real ASGI app, on both engines: click, redirect, postback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from clickback.config import Settings
from clickback.domain.ports import Store
from clickback.storage.schema import LATEST
from clickback.storage.sqlite import SqliteStore
from clickback.web.app import ClickbackApp
from tests.conftest import ADMIN, AUTH, click, form_post_scope, make_offer


async def conversions(client: httpx.AsyncClient, **filters: str) -> list[dict]:
    r = await client.get("/api/v1/conversions", params=filters, headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def test_click_redirects_with_refid_and_records_the_click(client: httpx.AsyncClient) -> None:
    s = await make_offer(client, destination_url="https://shop.example/land?utm=x#top")
    r = await client.get(
        f"/c/{s['link']['code']}?sub1=news%20letter&sub2=b&other=1",
        headers={"User-Agent": "UA/1", "Referer": "https://pub.example/"},
    )
    assert r.status_code == 302
    loc = r.headers["location"]
    parts = urlsplit(loc)
    assert loc.startswith("https://shop.example/land?utm=x&refid=") and loc.endswith("#top")
    refid = parse_qs(parts.query)["refid"][0]
    assert len(refid) <= 40
    clicks = (await client.get("/api/v1/clicks", params={"refid": refid}, headers=AUTH)).json()
    [c] = clicks["items"]
    assert (c["sub1"], c["sub2"], c["sub3"]) == ("news letter", "b", "")
    assert c["user_agent"] == "UA/1" and c["referer"] == "https://pub.example/"
    assert c["ip"] == "203.0.113.7" and c["offer_id"] == s["offer"]["id"]
    assert c["created_at"].endswith("Z")


async def test_a_head_request_on_a_link_answers_as_a_click_would_and_stores_none(
    client: httpx.AsyncClient,
) -> None:
    """A link checker's or a mail scanner's HEAD is no visit: the same 302, no click."""
    s = await make_offer(client, destination_url="https://shop.example/land")
    r = await client.head(f"/c/{s['link']['code']}?sub1=a")
    assert r.status_code == 302
    # the landing page, with a RefID no postback converts with: no click was stored
    blank = "-" * 36
    assert r.headers["location"] == f"https://shop.example/land?refid={blank}"
    assert (await client.get("/api/v1/clicks", headers=AUTH)).json()["items"] == []
    r = await client.get(f"/postback?refid={blank}&orderamount=1&ordernumber=H1")
    assert r.status_code == 404 and r.json()["code"] == "unknown_refid", r.text
    # in the path, the URL keeps its shape
    path = await make_offer(client, destination_url="https://shop.example/l/{refid}/x")
    r = await client.head(f"/c/{path['link']['code']}")
    assert r.headers["location"] == f"https://shop.example/l/{blank}/x"
    assert (await client.head("/c/nope")).status_code == 404
    await click(client, s["link"])  # a GET is a click
    assert len((await client.get("/api/v1/clicks", headers=AUTH)).json()["items"]) == 1


async def test_macros_are_filled_and_encoded(client: httpx.AsyncClient) -> None:
    s = await make_offer(
        client,
        destination_url="https://shop.example/p?c={refid}&s={sub1}&o={offer_id}&a={affiliate_id}",
    )
    r = await client.get(f"/c/{s['link']['code']}?sub1=a%26b%3Dc")
    q = parse_qs(urlsplit(r.headers["location"]).query)
    assert q["s"] == ["a&b=c"]
    assert q["o"] == [str(s["offer"]["id"])] and q["a"] == [str(s["affiliate"]["id"])]
    assert "refid" not in q and len(q["c"][0]) == 36


async def test_unknown_and_paused_links_answer_404_never_redirect(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/c/nope")
    assert r.status_code == 404 and "location" not in r.headers
    s = await make_offer(client)
    await client.patch(
        f"/api/v1/offers/{s['offer']['id']}", json={"status": "paused"}, headers=AUTH
    )
    r = await client.get(f"/c/{s['link']['code']}")
    assert r.status_code == 404 and "location" not in r.headers


async def test_postback_attributes_conversion_to_click_affiliate_and_subids(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client, payout_type="cps", payout_percent="7.5", payout_amount=None)
    refid = await click(client, s["link"], "?sub1=s1&sub5=s5")
    r = await client.get(
        "/postback",
        params={
            "refid": refid,
            "orderamount": "123.45",
            "ordernumber": "A-1",
            "coupon": "SAVE",
            "currency": "eur",
            "geo": "de",
            "commissionid": "x",
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "accepted" and body["refid"] == refid
    assert body["commission"] == "9.26"  # 7.5 % of 123.45 = 9.25875 -> half-up
    assert body["currency"] == "EUR"  # a percent of a EUR order, not the offer's USD
    [conv] = await conversions(client, refid=refid)
    assert conv["id"] == body["conversion_id"]
    assert conv["affiliate_id"] == s["affiliate"]["id"] and conv["offer_id"] == s["offer"]["id"]
    assert conv["advertiser_id"] == s["advertiser"]["id"] and conv["link_id"] == s["link"]["id"]
    assert (conv["sub1"], conv["sub5"], conv["click_id"]) == ("s1", "s5", refid)
    assert (conv["orderamount"], conv["currency"], conv["geo"]) == ("123.45", "EUR", "DE")
    assert (conv["commission"], conv["commission_currency"]) == ("9.26", "EUR")
    assert conv["coupon"] == "SAVE" and conv["commissionid"] == "x"
    assert conv["is_test"] is False and conv["click_missing"] is False


async def test_duplicate_ordernumber_is_counted_once(client: httpx.AsyncClient) -> None:
    s = await make_offer(client)
    refid = await click(client, s["link"])
    first = (await client.get(f"/postback?refid={refid}&orderamount=10&ordernumber=N1")).json()
    again = await client.get(f"/postback?refid={refid}&orderamount=10&ordernumber=N1")
    assert again.status_code == 200
    cid = first["conversion_id"]
    assert again.json() == {
        "status": "duplicate",
        "conversion_id": cid,
        "message": f"ordernumber 'N1' was counted already, as conversion {cid}",
        "differs": [],
    }
    assert len(await conversions(client, refid=refid)) == 1


async def test_a_duplicate_with_another_amount_or_refid_says_what_differs(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client)
    refid, other = await click(client, s["link"]), await click(client, s["link"])
    url = "/postback?refid={}&orderamount={}&ordernumber=N2&currency={}"
    cid = (await client.get(url.format(refid, "49.90", "USD"))).json()["conversion_id"]
    again = await client.get(url.format(other, "59.9", "EUR"))
    assert again.status_code == 200
    body = again.json()
    assert (body["status"], body["conversion_id"]) == ("duplicate", cid)
    assert body["differs"] == [
        {"field": "orderamount", "stored": "49.90", "sent": "59.90"},
        {"field": "currency", "stored": "USD", "sent": "EUR"},
        {"field": "refid", "stored": refid, "sent": other},
    ]
    assert body["message"] == (
        f"ordernumber 'N2' was counted already, as conversion {cid}; this one differs:"
        f" stored orderamount 49.90 USD, this one 59.90 EUR; stored RefID {refid}, this one {other}"
    )
    [row] = (
        await client.get("/api/v1/postbacks", params={"outcome": "duplicate"}, headers=AUTH)
    ).json()["items"]
    assert (row["code"], row["conversion_id"], row["http_status"]) == (
        "duplicate_ordernumber",
        cid,
        200,
    )
    day = row["received_at"][:10]  # the UTC day a rate must be dated by
    assert row["errors"] == [
        {
            "field": "ordernumber",
            "code": "duplicate_ordernumber",
            "message": body["message"],
            "differs": body["differs"],
        },
        {  # what an accepted postback in EUR is warned of, as no rate is loaded
            "field": "currency",
            "code": "missing_rate",
            "message": f"no exchange rate into USD for EUR dated on or before {day} yet:"
            " valued when one is imported",
        },
    ]
    assert len(await conversions(client, refid=refid)) == 1


async def test_a_duplicate_with_another_commissionid_coupon_or_geo_says_what_differs(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client)
    refid = await click(client, s["link"])
    base = f"/postback?refid={refid}&orderamount=10&ordernumber=N3"
    cid = (await client.get(base + "&commissionid=a&geo=DE")).json()["conversion_id"]
    # sent nothing: an omitted optional field is no difference
    r = await client.get(base)
    assert (r.json()["status"], r.json()["differs"]) == ("duplicate", [])
    assert r.json()["message"] == f"ordernumber 'N3' was counted already, as conversion {cid}"
    r = await client.get(base + "&commissionid=a&geo=de")  # the same country, as sent
    assert r.json()["differs"] == []
    body = (await client.get(base + "&commissionid=b&coupon=SAVE&geo=FR")).json()
    assert (body["status"], body["conversion_id"]) == ("duplicate", cid)
    assert body["differs"] == [
        {"field": "commissionid", "stored": "a", "sent": "b"},
        {"field": "coupon", "stored": "", "sent": "SAVE"},
        {"field": "geo", "stored": "DE", "sent": "FR"},
    ]
    assert body["message"] == (
        f"ordernumber 'N3' was counted already, as conversion {cid}; this one differs:"
        " stored commissionid a, this one b; stored coupon (none), this one SAVE;"
        " stored geo DE, this one FR"
    )
    rows = (
        await client.get("/api/v1/postbacks", params={"outcome": "duplicate"}, headers=AUTH)
    ).json()["items"]
    assert rows[0]["errors"][0]["differs"] == body["differs"]
    [conv] = await conversions(client, refid=refid)
    assert (conv["commissionid"], conv["coupon"], conv["geo"]) == ("a", "", "DE")


async def test_a_duplicates_ledger_row_keeps_the_warnings_the_repeat_raised(
    client: httpx.AsyncClient,
) -> None:
    """A repeat that would have been flagged (a `commissionid` no rule has, a currency
    with no exchange rate) keeps those warnings on its ledger row, after the
    `duplicate_ordernumber` entry (the row's code): they are about what was sent."""
    s = await make_offer(client)
    refid = await click(client, s["link"])
    url = "/postback?refid={}&orderamount=10&ordernumber=W1{}".format
    first = (await client.get(url(refid, "&commissionid=vip"))).json()
    assert [w["code"] for w in first["warnings"]] == ["unknown_commissionid"]
    for extra in ("&commissionid=vip", "&currency=EUR", ""):
        r = await client.get(url(refid, extra))
        assert r.json()["status"] == "duplicate", r.text
    rows = (
        await client.get("/api/v1/postbacks", params={"outcome": "duplicate"}, headers=AUTH)
    ).json()["items"][::-1]
    assert [r["code"] for r in rows] == ["duplicate_ordernumber"] * 3
    assert [[e["code"] for e in r["errors"]] for r in rows] == [
        ["duplicate_ordernumber", "unknown_commissionid"],
        ["duplicate_ordernumber", "missing_rate"],
        ["duplicate_ordernumber"],
    ]
    accepted = (
        await client.get("/api/v1/postbacks", params={"outcome": "accepted"}, headers=AUTH)
    ).json()["items"]
    assert rows[0]["errors"][1:] == accepted[0]["errors"]  # the same warning, word for word
    assert rows[1]["errors"][1]["field"] == "currency"


async def test_a_duplicates_answer_carries_the_warnings_an_accepted_one_would(
    client: httpx.AsyncClient,
) -> None:
    """The advertiser's server is told of a repeat's warnings as it is of an accepted
    postback's: `warnings`, the same entries word for word, absent when there are none."""
    s = await make_offer(client)
    refid = await click(client, s["link"])
    url = "/postback?refid={}&orderamount=10&ordernumber=W2{}".format
    first = (await client.get(url(refid, "&commissionid=vip"))).json()
    again = (await client.get(url(refid, "&commissionid=vip"))).json()
    assert again["status"] == "duplicate"
    assert again["warnings"] == first["warnings"]
    eur = (await client.get(url(refid, "&currency=EUR"))).json()
    assert [(w["field"], w["code"]) for w in eur["warnings"]] == [("currency", "missing_rate")]
    plain = (await client.get(url(refid, ""))).json()
    assert plain["status"] == "duplicate" and "warnings" not in plain
    [row, *_] = (
        await client.get("/api/v1/postbacks", params={"outcome": "duplicate"}, headers=AUTH)
    ).json()["items"][::-1]
    assert row["errors"][1:] == again["warnings"]  # the answer and the ledger agree


async def test_fifty_concurrent_duplicate_fires_make_one_conversion(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client)
    refid = await click(client, s["link"])
    url = f"/postback?refid={refid}&orderamount=10&ordernumber=RACE"
    answers = await asyncio.gather(*(client.get(url) for _ in range(50)))
    statuses = sorted(a.json()["status"] for a in answers)
    assert statuses.count("accepted") == 1 and statuses.count("duplicate") == 49
    assert len({a.json()["conversion_id"] for a in answers}) == 1
    assert len(await conversions(client, refid=refid)) == 1


async def test_one_click_converts_again_with_a_new_ordernumber(client: httpx.AsyncClient) -> None:
    s = await make_offer(client)
    refid = await click(client, s["link"])
    for n in ("O1", "O2"):
        r = await client.post(
            "/postback", data={"refid": refid, "orderamount": "5", "ordernumber": n}
        )
        assert r.json()["status"] == "accepted"
    assert len(await conversions(client, refid=refid)) == 2


async def test_commissions_to_the_cent(client: httpx.AsyncClient) -> None:
    cases = [
        ({"payout_type": "cpa", "payout_amount": "12.34"}, "999.99", "USD", "12.34"),
        ({"payout_type": "cpl", "payout_amount": "1.50"}, "0", "USD", "1.50"),
        ({"payout_type": "cps", "payout_percent": "10"}, "0.05", "USD", "0.01"),
        ({"payout_type": "cps", "payout_percent": "10"}, "10.125", "KWD", "1.013"),
        ({"payout_type": "cps", "payout_percent": "3"}, "1050", "JPY", "32"),
    ]
    for i, (payout, amount, currency, expected) in enumerate(cases):
        s = await make_offer(client, currency=currency, **payout)
        refid = await click(client, s["link"])
        r = await client.get(
            "/postback", params={"refid": refid, "orderamount": amount, "ordernumber": f"C{i}"}
        )
        assert r.json()["commission"] == expected, (payout, amount, r.json())


async def test_every_bad_field_is_listed(client: httpx.AsyncClient) -> None:
    r = await client.get("/postback?orderamount=12,50&currency=EURO&geo=XX")
    assert r.status_code == 400
    body = r.json()
    assert body["status"] == "rejected"
    got = {(e["field"], e["code"]) for e in body["errors"]}
    assert got == {
        ("refid", "missing"),
        ("ordernumber", "missing"),
        ("orderamount", "invalid_amount"),
        ("currency", "invalid_currency"),
        ("geo", "invalid_geo"),
    }


async def test_malformed_amounts_are_rejected(client: httpx.AsyncClient) -> None:
    s = await make_offer(client)
    refid = await click(client, s["link"])
    for bad in ("-1", "NaN", "1e3", "12,50", "Infinity", " ", "1.2.3"):
        r = await client.get(
            "/postback", params={"refid": refid, "orderamount": bad, "ordernumber": "X"}
        )
        assert r.status_code == 400, bad
    r = await client.get(
        "/postback",
        params={"refid": refid, "orderamount": "1.234", "ordernumber": "X", "currency": "USD"},
    )
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "orderamount"
    r = await client.get(
        "/postback", params={"refid": refid, "orderamount": "1.234", "ordernumber": "X"}
    )
    assert r.status_code == 400  # the offer's currency (USD) is applied when none is sent


async def test_unknown_forged_and_truncated_refids_are_404(client: httpx.AsyncClient) -> None:
    s = await make_offer(client)
    refid = await click(client, s["link"])
    forged = refid[:-1] + ("A" if refid[-1] != "A" else "B")
    for r_ in ("nope", forged, refid[:-3]):
        r = await client.get(f"/postback?refid={r_}&orderamount=1&ordernumber=Z")
        assert r.status_code == 404
        assert r.json()["code"] == "unknown_refid"


async def test_attribution_window_edge(client: httpx.AsyncClient, app: ClickbackApp) -> None:
    s = await make_offer(client, attribution_window_days=1)
    now_ms = int(time.time() * 1000)
    day = 86_400_000
    inside = app.tracker.codec.issue(s["link"]["id"], now_ms - day + 60_000)
    outside = app.tracker.codec.issue(s["link"]["id"], now_ms - day - 60_000)
    r = await client.get(f"/postback?refid={inside}&orderamount=1&ordernumber=IN")
    assert r.json()["status"] == "accepted"
    [conv] = await conversions(client, refid=inside)  # clicked when its RefID says
    clicked = datetime.fromisoformat(conv["clicked_at"].replace("Z", "+00:00"))
    assert (clicked - datetime.fromtimestamp(0, UTC)) // timedelta(milliseconds=1) == (
        now_ms - day + 60_000
    )
    r = await client.get(f"/postback?refid={outside}&orderamount=1&ordernumber=OUT")
    assert r.status_code == 422 and r.json()["code"] == "expired_refid"


async def test_conversion_without_its_click_row_is_attributed_and_flagged(
    client: httpx.AsyncClient, app: ClickbackApp
) -> None:
    s = await make_offer(client)
    refid = app.tracker.codec.issue(s["link"]["id"], int(time.time() * 1000))  # never stored
    r = await client.get(f"/postback?refid={refid}&orderamount=3&ordernumber=LOST")
    assert r.json()["status"] == "accepted"
    [conv] = await conversions(client, refid=refid)
    assert conv["click_missing"] is True and conv["click_id"] is None
    assert conv["affiliate_id"] == s["affiliate"]["id"]


async def test_paused_offer_is_422(client: httpx.AsyncClient) -> None:
    s = await make_offer(client)
    refid = await click(client, s["link"])
    await client.patch(
        f"/api/v1/offers/{s['offer']['id']}", json={"status": "paused"}, headers=AUTH
    )
    r = await client.get(f"/postback?refid={refid}&orderamount=1&ordernumber=P")
    assert r.status_code == 422 and r.json()["code"] == "offer_paused"


async def test_token_required_advertiser(client: httpx.AsyncClient) -> None:
    s = await make_offer(client, advertiser={"require_token": True, "postback_token": "sekret"})
    refid = await click(client, s["link"])
    base = f"/postback?refid={refid}&orderamount=1&ordernumber=T"
    assert (await client.get(base)).status_code == 403
    assert (await client.get(base + "&token=wrong")).status_code == 403
    assert (await client.get(base + "&token=sekret")).json()["status"] == "accepted"


async def test_every_postback_is_in_the_ledger_with_its_outcome(client: httpx.AsyncClient) -> None:
    s = await make_offer(client)
    refid = await click(client, s["link"])
    await client.get(f"/postback?refid={refid}&orderamount=1&ordernumber=L1&extra=kept")
    await client.get(f"/postback?refid={refid}&orderamount=1&ordernumber=L1")
    await client.get("/postback?refid=bogus&orderamount=1&ordernumber=L2")
    await client.get(f"/postback?refid={refid}&orderamount=oops")
    items = (await client.get("/api/v1/postbacks", headers=AUTH)).json()["items"]
    assert [i["outcome"] for i in items] == ["rejected", "unknown_refid", "duplicate", "accepted"]
    assert items[3]["params"]["extra"] == "kept" and items[3]["conversion_id"] is not None
    assert items[0]["errors"][0]["field"] == "ordernumber"
    r = await client.get("/api/v1/postbacks", params={"outcome": "duplicate"}, headers=AUTH)
    assert [i["ordernumber"] for i in r.json()["items"]] == ["L1"]


async def test_oversized_postbacks_get_a_4xx_and_are_still_stored(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post(
        "/postback",
        content=b"refid=" + b"x" * 40000,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 413
    r = await client.get("/postback?ordernumber=" + "y" * 300 + "&orderamount=1&refid=z")
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "too_long"
    items = (await client.get("/api/v1/postbacks", headers=AUTH)).json()["items"]
    assert len(items) == 2 and all(i["outcome"] == "rejected" for i in items)


async def test_health_and_readiness(app: ClickbackApp, client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).text == "ready"
    # a schema one version newer (another node upgraded it first, in a rolling upgrade):
    # still ready; every node left behind was taken out of the balancer at once
    await app.store._write(  # type: ignore[attr-defined]
        "INSERT INTO schema_migrations VALUES (?, ?)", LATEST + 1, 0
    )
    assert (await client.get("/readyz")).text == "ready"


async def test_not_ready_while_writes_fail_though_reads_work(
    app: ClickbackApp, client: httpx.AsyncClient
) -> None:
    """The SQLite file's writes failing (a disk full; here a lock held past the busy
    timeout) while it still reads: a balancer is told not ready, until a write commits."""
    if not isinstance(app.store, SqliteStore):
        pytest.skip("a SQLite file to lock (PostgreSQL's outage: tests/storage/test_lost_commit)")
    s = await make_offer(client)
    refid = await click(client, s["link"])
    app.store.conn.execute("PRAGMA busy_timeout = 50")
    holder = sqlite3.connect(app.store.path)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        r = await client.get(f"/postback?refid={refid}&orderamount=1&ordernumber=W1")
        assert r.status_code == 503, r.text
        r = await client.get("/readyz")
        assert r.status_code == 503 and "a write failed" in r.text, r.text
    finally:
        holder.rollback()
        holder.close()
    # ready again as soon as writes commit, with no traffic to tell (a balancer sends none
    # to a node it took out): the check tries a write of its own
    assert (await client.get("/readyz")).text == "ready"
    r = await client.get(f"/postback?refid={refid}&orderamount=1&ordernumber=W1")
    assert r.json()["status"] == "accepted", r.text


async def test_nul_bytes_are_dropped_not_fatal_to_the_batch(client: httpx.AsyncClient) -> None:
    s = await make_offer(client)
    answers = await asyncio.gather(
        client.get(f"/c/{s['link']['code']}?sub1=a%00b", headers={"User-Agent": "x\x00y"}),
        client.get(f"/c/{s['link']['code']}?sub1=fine"),
        client.get("/postback?ordernumber=%00&orderamount=1&refid=%00z"),
    )
    assert [a.status_code for a in answers] == [302, 302, 400]
    refid = parse_qs(urlsplit(answers[0].headers["location"]).query)["refid"][0]
    [c] = (await client.get("/api/v1/clicks", params={"refid": refid}, headers=AUTH)).json()[
        "items"
    ]
    assert (c["sub1"], c["user_agent"]) == ("ab", "xy")


async def test_a_body_cut_short_by_a_disconnect_is_never_a_conversion(
    client: httpx.AsyncClient, app: ClickbackApp
) -> None:
    s = await make_offer(client)
    refid = await click(client, s["link"])
    body = f"refid={refid}&ordernumber=CUT&orderamount=149.90".encode()
    messages = [
        {"type": "http.request", "body": body[:-4], "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    await app(form_post_scope("/postback", ("198.51.100.9", 1)), receive, send)
    assert sent[0]["status"] == 400
    assert not (await client.get("/api/v1/conversions", headers=AUTH)).json()["items"]
    [ledger] = (await client.get("/api/v1/postbacks", headers=AUTH)).json()["items"]
    assert ledger["code"] == "request_incomplete" and ledger["params"]["orderamount"] == "14"


@contextlib.asynccontextmanager
async def client_with(store: Store, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app with these settings besides the tests' usual ones."""
    app = ClickbackApp(
        Settings(
            database_url="unused", admin_token=ADMIN, public_url="http://track.test", **settings
        ),
        store,
    )
    await app.startup()
    try:
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://track.test") as c:
            yield c
    finally:
        await app.shutdown()


async def stored_clicks(client: httpx.AsyncClient) -> int:
    r = await client.get("/api/v1/clicks", headers=AUTH)
    assert r.status_code == 200, r.text
    return len(r.json()["items"])


async def test_a_paused_offers_link_redirects_to_its_fallback_without_refid_or_click(
    store: Store,
) -> None:
    async with client_with(store, fallback_url="https://network.example/global") as client:
        s = await make_offer(client, fallback_url="https://shop.example/other-offer")
        assert s["offer"]["fallback_url"] == "https://shop.example/other-offer"
        oid, code = s["offer"]["id"], s["link"]["code"]
        r = await client.patch(f"/api/v1/offers/{oid}", json={"status": "paused"}, headers=AUTH)
        assert r.status_code == 200, r.text
        r = await client.get(f"/c/{code}?sub1=x")
        assert r.status_code == 302
        assert r.headers["location"] == "https://shop.example/other-offer"
        assert r.headers["cache-control"] == "no-store"
        assert await stored_clicks(client) == 0  # nothing to attribute
        # archived offer, inactive link, archived affiliate: the offer's fallback too
        await client.patch(f"/api/v1/offers/{oid}", json={"status": "active"}, headers=AUTH)
        await client.patch(f"/api/v1/links/{s['link']['id']}", json={"active": False}, headers=AUTH)
        r = await client.get(f"/c/{code}")
        assert (r.status_code, r.headers["location"]) == (302, "https://shop.example/other-offer")
        await client.patch(f"/api/v1/links/{s['link']['id']}", json={"active": True}, headers=AUTH)
        r = await client.delete(f"/api/v1/affiliates/{s['affiliate']['id']}", headers=AUTH)
        assert r.status_code in (200, 204), r.text
        r = await client.get(f"/c/{code}")
        assert (r.status_code, r.headers["location"]) == (302, "https://shop.example/other-offer")
        s2 = await make_offer(client, fallback_url="https://shop.example/second")
        await client.delete(f"/api/v1/offers/{s2['offer']['id']}", headers=AUTH)
        r = await client.get(f"/c/{s2['link']['code']}")
        assert (r.status_code, r.headers["location"]) == (302, "https://shop.example/second")
        assert await stored_clicks(client) == 0


async def test_without_an_offer_fallback_the_global_one_is_used_and_for_unknown_codes(
    store: Store,
) -> None:
    async with client_with(store, fallback_url="https://network.example/global") as client:
        s = await make_offer(client)
        assert s["offer"]["fallback_url"] == ""
        await client.patch(
            f"/api/v1/offers/{s['offer']['id']}", json={"status": "paused"}, headers=AUTH
        )
        r = await client.get(f"/c/{s['link']['code']}")
        assert (r.status_code, r.headers["location"]) == (302, "https://network.example/global")
        r = await client.get("/c/no-such-code")
        assert (r.status_code, r.headers["location"]) == (302, "https://network.example/global")
        assert await stored_clicks(client) == 0


async def test_a_serving_link_with_a_fallback_set_is_redirected_as_before(store: Store) -> None:
    async with client_with(store, fallback_url="https://network.example/global") as client:
        s = await make_offer(client, fallback_url="https://shop.example/other-offer")
        refid = await click(client, s["link"])
        r = await client.get("/api/v1/clicks", params={"refid": refid}, headers=AUTH)
        [c] = r.json()["items"]
        assert c["link_id"] == s["link"]["id"]


async def test_an_offer_fallback_url_is_checked_and_can_be_removed(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client)
    oid, code = s["offer"]["id"], s["link"]["code"]
    for bad in ("ftp://x.example/", "not a url", 5):
        r = await client.patch(f"/api/v1/offers/{oid}", json={"fallback_url": bad}, headers=AUTH)
        assert r.status_code == 400, r.text
        [e] = r.json()["errors"]
        assert (e["field"], e["code"]) == ("fallback_url", "invalid_url")
    r = await client.patch(
        f"/api/v1/offers/{oid}",
        json={"fallback_url": " https://bücher.example/x ", "status": "paused"},
        headers=AUTH,
    )
    assert r.json()["fallback_url"] == "https://xn--bcher-kva.example/x"
    r = await client.get(f"/c/{code}")
    assert (r.status_code, r.headers["location"]) == (302, "https://xn--bcher-kva.example/x")
    r = await client.patch(f"/api/v1/offers/{oid}", json={"fallback_url": ""}, headers=AUTH)
    assert r.json()["fallback_url"] == ""
    r = await client.get(f"/c/{code}")  # no fallback anywhere: the 404 page, as ever
    assert r.status_code == 404 and "location" not in r.headers


async def test_why_a_click_was_not_served_is_logged_for_the_operator_not_shown(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    s = await make_offer(client)
    oid = s["offer"]["id"]
    await client.patch(f"/api/v1/offers/{oid}", json={"status": "paused"}, headers=AUTH)
    with caplog.at_level(logging.DEBUG, logger="clickback.fallback"):
        r = await client.get(f"/c/{s['link']['code']}")
        assert r.status_code == 404 and b"paused" not in r.content
        await client.get("/c/no-such-code")
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "clickback.fallback"]
    assert f"offer_paused offer={oid} link={s['link']['id']}" in lines[0]
    assert "unknown_link" in lines[1] and "404, no fallback URL" in lines[1]
