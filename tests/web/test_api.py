"""The admin API's minimum: tokens, creates, lists, filters and pages, on both engines."""

from __future__ import annotations

import asyncio
import base64
from datetime import datetime, timedelta, timezone

import httpx
import orjson
from hypothesis import given
from hypothesis import strategies as st

from clickback.config import Settings
from clickback.domain.ports import Store
from clickback.domain.timefmt import from_datetime
from clickback.web.app import ClickbackApp
from clickback.web.http import hash_token
from clickback.web.present import parse_time
from tests.conftest import ADMIN, AUTH, click, make_offer
from tests.web.test_affiliate_tokens import affiliate_token
from tests.web.test_ui import login


async def test_every_api_call_needs_a_valid_token(client: httpx.AsyncClient) -> None:
    for path in ("/api/v1/offers", "/api/v1/conversions", "/api/v1/postbacks", "/api/v1/clicks"):
        r = await client.get(path)
        assert r.status_code == 401 and r.json()["errors"][0]["code"] == "token_missing"
        r = await client.get(path, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.json()["errors"][0]["code"] == "token_invalid"


async def test_stored_tokens_work_and_read_tokens_cannot_write(
    client: httpx.AsyncClient, app: ClickbackApp
) -> None:
    await app.store.create_token("ro", hash_token("read-tok"), "read")
    ro = {"Authorization": "Bearer read-tok"}
    assert (await client.get("/api/v1/offers", headers=ro)).status_code == 200
    r = await client.post("/api/v1/affiliates", json={"name": "x"}, headers=ro)
    assert r.status_code == 403
    s = await make_offer(client, advertiser={"postback_token": "t0k"})
    seen = (await client.get(f"/api/v1/advertisers/{s['advertiser']['id']}", headers=ro)).json()
    # secrets are for admins: one set is said to be, hidden
    assert seen["postback_token"] == "(hidden)" and seen["name"] == "Shop"
    listed = (await client.get("/api/v1/advertisers", headers=ro)).json()["items"]
    assert [a["postback_token"] for a in listed] == ["(hidden)"]
    # an affiliate's postback secret: hidden when set, blank when not (unsigned)
    aff = f"/api/v1/affiliates/{s['affiliate']['id']}"
    assert (await client.get(aff, headers=ro)).json()["postback_secret"] == ""
    r = await client.patch(aff, json={"postback_secret": "sek"}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert (await client.get(aff, headers=ro)).json()["postback_secret"] == "(hidden)"


async def test_create_answers_201_with_the_object(client: httpx.AsyncClient) -> None:
    s = await make_offer(client, payout_amount="2.5")
    assert s["advertiser"]["postback_token"] and s["advertiser"]["require_token"] is False
    assert s["offer"]["payout_amount"] == "2.50" and s["offer"]["refid_param"] == "refid"
    assert s["offer"]["attribution_window_days"] == 30 and s["offer"]["status"] == "active"
    assert s["link"]["tracking_url"] == f"http://track.test/c/{s['link']['code']}"
    r = await client.get(f"/api/v1/offers/{s['offer']['id']}", headers=AUTH)
    assert r.json() == s["offer"]


async def test_bad_input_is_a_clear_400(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/offers", json={"name": "x"}, headers=AUTH)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "advertiser_id"
    r = await client.post("/api/v1/offers", content=b"{", headers=AUTH)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "invalid_json"
    s = await make_offer(client)
    r = await client.post(
        "/api/v1/offers",
        headers=AUTH,
        json={
            "advertiser_id": s["advertiser"]["id"],
            "name": "x",
            "destination_url": "javascript:alert(1)",
        },
    )
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "invalid_url"
    r = await client.post("/api/v1/links", json={"offer_id": 999, "affiliate_id": 1}, headers=AUTH)
    assert r.status_code == 404
    # a URL no browser could follow, and a macro misspelt (sent to the landing page as
    # the text, the click test passing it), are refused naming the field
    offer = f"/api/v1/offers/{s['offer']['id']}"
    for url, code, said in (
        ("https://shop.example:99999/", "invalid_url", "a port that is not one"),
        ("https://shop.example:0/", "invalid_url", "a port that is not one"),
        ("https://shop example.com/", "invalid_url", "no host a browser could reach"),
        ("https://shop..example/", "invalid_url", "no host a browser could reach"),
        ("https://shop.example/?cid={click_id}", "unknown_macro", "`{refid}` is what it may"),
        ("https://shop.example/?s={Sub1}", "unknown_macro", "`{sub1}` is what it may mean"),
        ("https://shop.example/?s={ sub1 }", "unknown_macro", "`{sub1}` is what it may mean"),
    ):
        r = await client.patch(offer, json={"destination_url": url}, headers=AUTH)
        assert r.status_code == 400, (url, r.text)
        [error] = r.json()["errors"]
        assert (error["field"], error["code"]) == ("destination_url", code), (url, error)
        assert said in error["message"], (url, error)
    r = await client.patch(offer, json={"revenue_type": None, "revenue_amount": "4"}, headers=AUTH)
    assert r.json()["errors"][0]["code"] == "needs_revenue_type", r.text
    r = await client.patch(offer, json={"currency": "XYZ"}, headers=AUTH)
    assert r.json()["errors"][0]["code"] == "invalid_currency", r.text
    # a currency filter is read as the code it is taken as; one that is none is refused
    r = await client.get("/api/v1/offers", params={"currency": "usd"}, headers=AUTH)
    assert [o["id"] for o in r.json()["items"]] == [s["offer"]["id"]], r.text
    r = await client.get("/api/v1/offers", params={"currency": "XYZ"}, headers=AUTH)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "invalid_filter", r.text
    fine = "https://shop.example:8443/p/{refid}?s={sub1}&o={offer_id}&a={affiliate_id}&j={}"
    r = await client.patch(offer, json={"destination_url": fine}, headers=AUTH)
    assert r.status_code == 200 and r.json()["destination_url"] == fine, r.text


async def test_list_contract_limit_filters_and_cursor(client: httpx.AsyncClient) -> None:
    s = await make_offer(client)
    refids = []
    for i in range(5):
        refids.append(await click(client, s["link"], f"?sub1=n{i}"))
        await asyncio.sleep(0.002)  # clicks order by RefID, whose clock is in milliseconds
    r = await client.get("/api/v1/clicks", params={"limit": 2}, headers=AUTH)
    page = r.json()
    assert [c["refid"] for c in page["items"]] == refids[::-1][:2]  # newest first
    seen = [c["refid"] for c in page["items"]]
    while page["next_cursor"]:
        page = (
            await client.get(
                "/api/v1/clicks", headers=AUTH, params={"limit": 2, "cursor": page["next_cursor"]}
            )
        ).json()
        seen += [c["refid"] for c in page["items"]]
    assert seen == refids[::-1]
    r = await client.get("/api/v1/clicks", params={"sub1": "n3"}, headers=AUTH)
    assert [c["refid"] for c in r.json()["items"]] == [refids[3]]
    assert (await client.get("/api/v1/clicks?limit=1001", headers=AUTH)).status_code == 400
    r = await client.get("/api/v1/clicks?colour=red", headers=AUTH)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "unknown_filter"
    r = await client.get("/api/v1/clicks?since=2000-01-01&until=2001-01-01", headers=AUTH)
    assert r.json()["items"] == []
    r = await client.get("/api/v1/clicks?since=yesterday", headers=AUTH)
    assert r.status_code == 400


async def test_conversion_filters(client: httpx.AsyncClient) -> None:
    a = await make_offer(client)
    b = await make_offer(client)
    for s, n in ((a, "A1"), (b, "B1"), (b, "B2")):
        refid = await click(client, s["link"])
        await client.get(f"/postback?refid={refid}&orderamount=1&ordernumber={n}")
    r = await client.get("/api/v1/conversions", headers=AUTH, params={"offer_id": b["offer"]["id"]})
    assert sorted(c["ordernumber"] for c in r.json()["items"]) == ["B1", "B2"]
    r = await client.get("/api/v1/conversions", headers=AUTH, params={"ordernumber": "A1"})
    assert [c["advertiser_id"] for c in r.json()["items"]] == [a["advertiser"]["id"]]
    r = await client.get("/api/v1/conversions", headers=AUTH, params={"status": "approved"})
    assert len(r.json()["items"]) == 3


async def test_offer_revenue_terms_are_set_checked_and_shown(client: httpx.AsyncClient) -> None:
    s = await make_offer(client, revenue_type="cps", revenue_percent="12.5")
    offer = s["offer"]
    assert (offer["revenue_type"], offer["revenue_percent"]) == ("cps", "12.5")
    url = f"/api/v1/offers/{offer['id']}"
    r = await client.patch(
        url, json={"revenue_type": "cpa", "revenue_amount": "7.25"}, headers=AUTH
    )
    assert r.status_code == 200, r.text
    r = await client.patch(url, json={"revenue_amount": "8"}, headers=AUTH)  # type kept
    assert (r.json()["revenue_type"], r.json()["revenue_amount"]) == ("cpa", "8")
    for body, code in [
        ({"revenue_type": "cpm"}, "invalid_revenue_type"),
        ({"revenue_type": "cps", "revenue_percent": "101"}, "invalid_percent"),
        ({"revenue_type": "cpa", "revenue_amount": "-1"}, "invalid_amount"),
    ]:
        r = await client.patch(url, json=body, headers=AUTH)
        assert r.status_code == 400 and r.json()["errors"][0]["code"] == code, (body, r.text)
    r = await client.patch(url, json={"revenue_type": ""}, headers=AUTH)
    assert (r.json()["revenue_type"], r.json()["revenue_amount"]) == ("", "0")


async def test_small_percents_read_back_as_plain_decimals_a_patch_takes(
    client: httpx.AsyncClient, app: ClickbackApp
) -> None:
    """A percent of up to 8 decimals reads back as it was given, never in exponent form
    (`1E-8`), which a PATCH would refuse; a value stored in that form before reads plain."""
    s = await make_offer(
        client,
        payout_type="cps",
        payout_percent="0.00000001",
        payout_amount=None,
        revenue_type="cps",
        revenue_percent="0.0000005",
    )
    offer, url = s["offer"], f"/api/v1/offers/{s['offer']['id']}"
    assert (offer["payout_percent"], offer["revenue_percent"]) == ("0.00000001", "0.0000005")
    r = await client.patch(
        url, json={k: offer[k] for k in ("payout_percent", "revenue_percent")}, headers=AUTH
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/api/v1/offers/{offer['id']}/rules",
        json={"commissionid": "x", "payout_type": "cps", "payout_percent": "0.00000010"},
        headers=AUTH,
    )
    assert r.status_code == 201 and r.json()["payout_percent"] == "0.00000010", r.text
    await app.store.update_row(
        "offers", offer["id"], {"payout_percent": "1E-7"}
    )  # as stored before
    r = await client.get(url, headers=AUTH)
    assert r.json()["payout_percent"] == "0.0000001", r.text


async def test_an_offers_daily_cap_is_set_checked_shown_and_cleared(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client, daily_cap=50)
    assert s["offer"]["daily_cap"] == 50
    url = f"/api/v1/offers/{s['offer']['id']}"
    assert (await client.patch(url, json={"daily_cap": "70"}, headers=AUTH)).json()[
        "daily_cap"
    ] == 70
    for bad in [0, -1, 2.5, True, "ten", "1e3", 10_000_001]:
        r = await client.patch(url, json={"daily_cap": bad}, headers=AUTH)
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["errors"][0]["code"] == "invalid_cap", (bad, r.text)
    r = await client.patch(url, json={"name": "Renamed"}, headers=AUTH)
    assert r.json()["daily_cap"] == 70  # kept when not given
    r = await client.patch(url, json={"daily_cap": None}, headers=AUTH)
    assert r.json()["daily_cap"] is None
    plain = await make_offer(client)
    assert plain["offer"]["daily_cap"] is None


async def test_an_offers_cap_redirect_is_set_checked_and_kept(client: httpx.AsyncClient) -> None:
    plain = await make_offer(client)
    assert plain["offer"]["cap_redirect"] is False
    s = await make_offer(client, daily_cap=5, cap_redirect=True)
    assert s["offer"]["cap_redirect"] is True
    url = f"/api/v1/offers/{s['offer']['id']}"
    for bad in [1, "yes", None, "true"]:
        r = await client.patch(url, json={"cap_redirect": bad}, headers=AUTH)
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["errors"][0]["code"] == "invalid_bool", (bad, r.text)
    r = await client.patch(url, json={"name": "Renamed"}, headers=AUTH)
    assert r.json()["cap_redirect"] is True  # kept when not given
    r = await client.patch(url, json={"cap_redirect": False}, headers=AUTH)
    assert r.json()["cap_redirect"] is False
    assert (await client.get(url, headers=AUTH)).json()["cap_redirect"] is False


async def test_an_offers_validation_period_is_set_checked_and_cleared(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client, approval="review", auto_approve_days=30)
    assert s["offer"]["auto_approve_days"] == 30
    url = f"/api/v1/offers/{s['offer']['id']}"
    for bad in [0, 366, 1.5, True, "a month"]:
        r = await client.patch(url, json={"auto_approve_days": bad}, headers=AUTH)
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["errors"][0]["code"] == "invalid_auto_approve", (bad, r.text)
    r = await client.patch(url, json={"auto_approve_days": "14"}, headers=AUTH)
    assert r.json()["auto_approve_days"] == 14
    r = await client.patch(url, json={"auto_approve_days": None}, headers=AUTH)
    assert r.json()["auto_approve_days"] is None


async def test_an_affiliates_own_cap_on_an_offer_is_set_read_listed_and_removed(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client)
    offer_id, affiliate_id = s["offer"]["id"], s["affiliate"]["id"]
    url = f"/api/v1/offers/{offer_id}/caps/{affiliate_id}"
    assert (await client.get(url, headers=AUTH)).status_code == 404
    r = await client.put(url, json={"daily_cap": 30}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert (r.json()["affiliate_id"], r.json()["daily_cap"]) == (affiliate_id, 30)
    r = await client.put(url, json={"daily_cap": 12}, headers=AUTH)  # changed in place
    listed = (await client.get(f"/api/v1/offers/{offer_id}/caps", headers=AUTH)).json()
    assert [(c["affiliate_id"], c["daily_cap"]) for c in listed["items"]] == [(affiliate_id, 12)]
    for body, status, code in [
        ({"daily_cap": 0}, 400, "invalid_cap"),
        ({}, 400, "invalid_cap"),
        ({"daily_cap": None}, 400, "invalid_cap"),
    ]:
        r = await client.put(url, json=body, headers=AUTH)
        assert r.status_code == status and r.json()["errors"][0]["code"] == code, (body, r.text)
    for bad in (f"/api/v1/offers/999/caps/{affiliate_id}", f"/api/v1/offers/{offer_id}/caps/999"):
        r = await client.put(bad, json={"daily_cap": 5}, headers=AUTH)
        assert r.status_code == 404, r.text
    assert (await client.delete(url, headers=AUTH)).status_code == 204
    assert (await client.delete(url, headers=AUTH)).status_code == 404
    assert (await client.get(f"/api/v1/offers/{offer_id}/caps", headers=AUTH)).json()["items"] == []
    assert (await client.get("/api/v1/offers/999/caps", headers=AUTH)).status_code == 404
    r = await client.get(f"/api/v1/offers/{offer_id}/caps?affiliate_id=1", headers=AUTH)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "unknown_filter"


async def test_a_payout_field_of_the_other_type_alone_says_to_send_payout_type(
    client: httpx.AsyncClient,
) -> None:
    """`payout_percent` alone on a CPA or CPL offer (or `payout_amount` alone on a CPS
    one) is not read against the offer's type, which would ask for the other field: it
    is refused naming the field, the offer's type and `payout_type`; nothing changes."""
    cpa = (await make_offer(client))["offer"]
    cpl = (await make_offer(client, payout_type="cpl", payout_amount="1.00"))["offer"]
    cps = (await make_offer(client, payout_type="cps", payout_percent="8"))["offer"]
    for offer, body, kind, field in (
        (cpa, {"payout_percent": "10"}, "CPA", "payout_percent"),
        (cpl, {"payout_percent": "10"}, "CPL", "payout_percent"),
        (cpa, {"payout_amount": "6", "payout_percent": "10"}, "CPA", "payout_percent"),
        (cps, {"payout_amount": "6"}, "CPS", "payout_amount"),
    ):
        url = f"/api/v1/offers/{offer['id']}"
        r = await client.patch(url, json=body, headers=AUTH)
        assert r.status_code == 400, (body, r.text)
        [error] = r.json()["errors"]
        assert (error["field"], error["code"]) == (field, "needs_payout_type"), error
        wanted = "CPS offers" if field == "payout_percent" else "CPA and CPL offers"
        assert wanted in error["message"] and f"is {kind}" in error["message"], error
        assert "`payout_type`" in error["message"], error
        assert (await client.get(url, headers=AUTH)).json() == offer
    # with `payout_type` it changes the offer's type
    r = await client.patch(
        f"/api/v1/offers/{cpa['id']}",
        json={"payout_type": "cps", "payout_percent": "10"},
        headers=AUTH,
    )
    assert r.status_code == 200 and r.json()["payout_percent"] == "10", r.text
    r = await client.patch(
        f"/api/v1/offers/{cps['id']}", json={"payout_percent": "9"}, headers=AUTH
    )
    assert r.status_code == 200 and r.json()["payout_percent"] == "9", r.text


async def test_a_new_offer_given_a_field_its_default_type_drops_is_refused(
    client: httpx.AsyncClient,
) -> None:
    """Created without `revenue_type`, a `revenue_amount` was dropped (the offer earned
    nothing in the reports); without `payout_type` (CPA), a `payout_percent` was. Both
    are refused naming the type to send, as an update is; a 0 (a read offer's) is not.
    A fixed payout too large in the base currency is refused on create as on update."""
    base = (await make_offer(client))["advertiser"]["id"]
    offer = {"advertiser_id": base, "name": "O", "destination_url": "https://shop.example/"}
    for body, field, code in (
        ({"payout_amount": "1", "revenue_amount": "3"}, "revenue_amount", "needs_revenue_type"),
        ({"payout_amount": "1", "payout_percent": "10"}, "payout_percent", "needs_payout_type"),
        # a type sent as nothing (the CLI's default, a form's empty field) is none
        (
            {"payout_amount": "1", "revenue_type": "", "revenue_amount": "3"},
            "revenue_amount",
            "needs_revenue_type",
        ),
        (
            {"payout_amount": "1", "revenue_type": None, "revenue_percent": "3"},
            "revenue_percent",
            "needs_revenue_type",
        ),
    ):
        r = await client.post("/api/v1/offers", json={**offer, **body}, headers=AUTH)
        assert r.status_code == 400, (body, r.text)
        [error] = r.json()["errors"]
        assert (error["field"], error["code"]) == (field, code), error
    zeros = {"payout_amount": "1", "payout_percent": "0", "revenue_amount": "0.00"}
    r = await client.post("/api/v1/offers", json={**offer, **zeros}, headers=AUTH)
    assert r.status_code == 201, r.text
    rates = "date,currency,rate\n2026-01-01,JPY,200\n"
    r = await client.post(
        "/api/v1/rates", content=rates, headers={**AUTH, "content-type": "text/csv"}
    )
    assert r.status_code == 200, r.text
    big = {"payout_amount": "1000000000000000", "currency": "JPY"}
    r = await client.post("/api/v1/offers", json={**offer, **big}, headers=AUTH)
    assert r.status_code == 400, r.text
    assert r.json()["errors"][0]["field"] == "payout_amount", r.text
    assert "too large to store in USD" in r.json()["errors"][0]["message"], r.text


async def test_a_revenue_field_of_the_other_type_alone_says_to_send_revenue_type(
    client: httpx.AsyncClient,
) -> None:
    """The same for the revenue: `revenue_percent` alone where the revenue is CPA, or
    where the offer has none (it was dropped, and the PATCH answered 200), and
    `revenue_amount` alone where it is CPS."""
    none = (await make_offer(client))["offer"]
    cpa = (await make_offer(client, revenue_type="cpa", revenue_amount="2"))["offer"]
    cps = (await make_offer(client, revenue_type="cps", revenue_percent="12.5"))["offer"]
    for offer, body, has, field in (
        (cpa, {"revenue_percent": "10"}, "is CPA", "revenue_percent"),
        (none, {"revenue_percent": "10"}, "has none", "revenue_percent"),
        (none, {"revenue_amount": "3"}, "has none", "revenue_amount"),
        (cps, {"revenue_amount": "3"}, "is CPS", "revenue_amount"),
    ):
        url = f"/api/v1/offers/{offer['id']}"
        r = await client.patch(url, json=body, headers=AUTH)
        assert r.status_code == 400, (body, r.text)
        [error] = r.json()["errors"]
        assert (error["field"], error["code"]) == (field, "needs_revenue_type"), error
        assert has in error["message"] and "`revenue_type`" in error["message"], error
        assert (await client.get(url, headers=AUTH)).json() == offer
    r = await client.patch(
        f"/api/v1/offers/{none['id']}",
        json={"revenue_type": "cps", "revenue_percent": "10"},
        headers=AUTH,
    )
    assert r.status_code == 200 and r.json()["revenue_percent"] == "10", r.text


async def test_an_offers_revenue_amount_has_no_more_decimals_than_the_base_currency(
    client: httpx.AsyncClient, store: Store
) -> None:
    s = await make_offer(client)
    body = {**OFFER_BODY, "advertiser_id": s["advertiser"]["id"], "revenue_type": "cpa"}
    r = await client.post("/api/v1/offers", json={**body, "revenue_amount": "1.234"}, headers=AUTH)
    assert r.status_code == 400, r.text
    [error] = r.json()["errors"]
    assert (error["field"], error["code"]) == ("revenue_amount", "invalid_amount")
    assert "USD" in error["message"]
    url = f"/api/v1/offers/{s['offer']['id']}"
    r = await client.patch(
        url, json={"revenue_type": "cpa", "revenue_amount": "1.23"}, headers=AUTH
    )
    assert r.status_code == 200 and r.json()["revenue_amount"] == "1.23", r.text
    r = await client.patch(url, json={"revenue_amount": "0.005"}, headers=AUTH)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "revenue_amount", r.text
    assert (await client.get(url, headers=AUTH)).json()["revenue_amount"] == "1.23"

    # the revenue is in the base currency, whatever the offer's: yen have no decimals
    settings = Settings(
        database_url="unused", admin_token=ADMIN, public_url="http://t", base_currency="JPY"
    )
    yen = ClickbackApp(settings, store)
    await yen.startup()
    try:
        transport = httpx.ASGITransport(app=yen)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            r = await c.patch(url, json={"revenue_amount": "1.50"}, headers=AUTH)
            assert r.status_code == 400 and "JPY" in r.json()["errors"][0]["message"], r.text
            r = await c.patch(url, json={"revenue_amount": "150"}, headers=AUTH)
            assert r.status_code == 200 and r.json()["revenue_amount"] == "150", r.text
    finally:
        await yen.shutdown()


OFFER_BODY = {"name": "O", "destination_url": "https://shop.example/", "payout_amount": "1"}


async def test_a_cursor_out_of_range_is_a_400_not_a_500(client: httpx.AsyncClient) -> None:
    import base64

    await make_offer(client)
    cursor = base64.urlsafe_b64encode(b"99999999999999999999").decode().rstrip("=")
    r = await client.get("/api/v1/offers", params={"cursor": cursor}, headers=AUTH)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "invalid_cursor", r.text


async def test_an_offers_refid_param_is_a_name_a_url_can_carry(client: httpx.AsyncClient) -> None:
    s = await make_offer(client)
    path = f"/api/v1/offers/{s['offer']['id']}"
    for bad in ("click id", "a&b", "x=y", "a#b", "50%"):
        r = await client.patch(path, json={"refid_param": bad}, headers=AUTH)
        assert r.status_code == 400 and r.json()["errors"][0]["field"] == "refid_param", bad
    r = await client.patch(path, json={"refid_param": "s2s.clickid"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["refid_param"] == "s2s.clickid"


async def test_a_nul_in_text_is_answered_alike_on_both_engines(
    client: httpx.AsyncClient,
) -> None:
    """PostgreSQL's text cannot hold U+0000 (SQLite's can): a 400 on both engines, not a
    201 on one and a 500 on the other."""
    r = await client.post("/api/v1/affiliates", json={"name": "a\u0000b"}, headers=AUTH)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "invalid_text", r.text
    for path in (
        "/api/v1/conversions?ordernumber=a%00b",
        "/api/v1/clicks?sub1=a%00b",
        "/api/v1/conversions/totals?currency=%00",
        "/api/v1/reports?sub1=%00",
    ):
        r = await client.get(path, headers=AUTH)
        assert r.status_code == 400, (path, r.status_code, r.text)


async def test_a_literal_backslash_u0000_text_is_not_a_nul(client: httpx.AsyncClient) -> None:
    """JSON `"a\\\\u0000b"` is the text `a\\u0000b` (a backslash, then `u0000`): no U+0000
    in it, so nothing PostgreSQL cannot store; it must be taken like any other name."""
    body = b'{"name": "C:\\\\u0000dir"}'  # raw JSON: "C:\\u0000dir"
    assert orjson.loads(body)["name"] == "C:\\u0000dir" and "\x00" not in orjson.loads(body)["name"]
    r = await client.post(
        "/api/v1/affiliates",
        content=body,
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "C:\\u0000dir"


async def test_a_time_filters_offset_sent_with_an_unencoded_plus_is_read_as_plus(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client)
    refid = await click(client, s["link"])
    await client.get(f"/postback?refid={refid}&orderamount=1&ordernumber=TZ-1")
    [conv] = (await client.get("/api/v1/conversions", headers=AUTH)).json()["items"]
    made = datetime.fromisoformat(conv["created_at"].replace("Z", "+00:00"))
    berlin = made.astimezone(timezone(timedelta(hours=1))).isoformat()  # ...T..:..+01:00
    later = (made + timedelta(microseconds=1)).astimezone(timezone(timedelta(hours=1)))
    for since, found in ((berlin, ["TZ-1"]), (later.isoformat(), [])):
        assert "+01:00" in since
        # `+` as typed in a URL, unencoded: it arrives as a space
        r = await client.get(f"/api/v1/conversions?since={since}", headers=AUTH)
        assert r.status_code == 200, r.text
        assert [c["ordernumber"] for c in r.json()["items"]] == found, since
        r = await client.get(f"/api/v1/conversions/export?until={since}", headers=AUTH)
        assert r.status_code == 200, r.text
    r = await client.get("/api/v1/conversions?since=2026-03-01 10:00", headers=AUTH)
    assert r.status_code == 200  # a space between the date and the time stays one


@given(
    moment=st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9998, 1, 1)),
    minutes=st.integers(0, 14 * 60 - 1),
)
def test_a_decoded_plus_in_any_iso_offset_is_read_as_the_offset(
    moment: datetime, minutes: int
) -> None:
    aware = moment.replace(tzinfo=timezone(timedelta(minutes=minutes)))
    text = aware.isoformat()
    assert "+" in text
    assert parse_time(text.replace("+", " "), "since") == parse_time(text, "since")
    assert parse_time(text.replace("+", " "), "since") == from_datetime(aware)


async def test_a_body_field_a_write_does_not_take_is_a_400_naming_it(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client)
    offer = f"/api/v1/offers/{s['offer']['id']}"
    r = await client.patch(offer, json={"payout_precent": "20"}, headers=AUTH)
    error = r.json()["errors"][0]
    assert r.status_code == 400 and error["code"] == "unknown_field"
    assert error["field"] == "payout_precent" and "payout_percent" in error["message"]
    assert (await client.get(offer, headers=AUTH)).json() == s["offer"]  # nothing changed
    body = {"advertiser_id": s["advertiser"]["id"], "name": "x", "url": "https://shop.example/"}
    r = await client.post("/api/v1/offers", json=body, headers=AUTH)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "url"
    assert "destination_url" in r.json()["errors"][0]["message"]
    # an offer's advertiser is fixed: refused, not silently kept
    r = await client.patch(offer, json={"advertiser_id": 99}, headers=AUTH)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "unknown_field"
    # a field PATCH sets but POST does not take says so
    r = await client.post(
        "/api/v1/advertisers", json={"name": "A", "ip_allowlist": "10.0.0.0/8"}, headers=AUTH
    )
    assert (
        r.status_code == 400
        and "PATCH /api/v1/advertisers/{id}" in r.json()["errors"][0]["message"]
    )
    for path, body in (
        (f"/api/v1/offers/{s['offer']['id']}/rules", {"payout_type": "cpa", "currency": "EUR"}),
        ("/api/v1/tokens", {"name": "t", "rol": "admin"}),
        (f"/api/v1/offers/{s['offer']['id']}/postbacks/{s['affiliate']['id']}", {"x": 1}),
        (f"/api/v1/links/{s['link']['id']}", {"actve": False}),
        (f"/api/v1/offers/{s['offer']['id']}/integration-tests", {"affiliate": 1}),
        (f"/api/v1/links/{s['link']['id']}", {"active": False, "note": "x"}),
    ):
        method = "PUT" if "/postbacks/" in path else "PATCH" if "/links/" in path else "POST"
        r = await client.request(method, path, json=body, headers=AUTH)
        assert r.status_code == 400, (path, r.text)
        assert r.json()["errors"][0]["code"] == "unknown_field", (path, r.text)
    # a write without a body takes no field
    r = await client.request("DELETE", offer, json={"force": True}, headers=AUTH)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "unknown_field"
    r = await client.request("DELETE", offer, json={}, headers=AUTH)
    assert r.status_code == 200
    # nothing but a newline (`curl -d $'\n'`, a client's habit) is no body either
    r = await client.request("DELETE", offer, content=b"\n", headers=AUTH)
    assert r.status_code == 200, r.text


async def test_an_affiliate_is_created_with_its_postback_checked_as_on_update(
    client: httpx.AsyncClient,
) -> None:
    body = {
        "name": "Y",
        "postback_url": "https://aff.example/x?c={refid}",
        "postback_method": "post",
        "postback_events": ["conversion", "approved"],
        "postback_secret": "s3",
    }
    r = await client.post("/api/v1/affiliates", json=body, headers=AUTH)
    made = r.json()
    assert r.status_code == 201 and made["postback_url"] == "https://aff.example/x?c={refid}"
    assert made["postback_method"] == "POST" and made["postback_secret"] == "s3"
    assert made["postback_events"] == ["conversion", "approved"]
    r = await client.get(f"/api/v1/affiliates/{made['id']}", headers=AUTH)
    assert r.json() == made
    for bad, code in (
        ({"postback_url": "http://127.0.0.1/x"}, "private_address"),
        ({"postback_url": "ftp://aff.example/x"}, "invalid_url"),
        ({"postback_method": "PUT"}, "invalid_method"),
        ({"postback_events": ["sale"]}, "invalid_events"),
    ):
        r = await client.post("/api/v1/affiliates", json={"name": "Z", **bad}, headers=AUTH)
        assert r.status_code == 400 and r.json()["errors"][0]["code"] == code, r.text
    listed = (await client.get("/api/v1/affiliates", headers=AUTH)).json()["items"]
    assert [a["name"] for a in listed] == ["Y"]  # nothing made by a refused create


async def test_an_offer_postback_override_is_read_listed_and_removed(
    client: httpx.AsyncClient, app: ClickbackApp
) -> None:
    s = await make_offer(client)
    offer, aff = s["offer"]["id"], s["affiliate"]["id"]
    own = "https://aff.example/own?c={refid}"
    await client.patch(
        f"/api/v1/affiliates/{aff}",
        json={"postback_url": own, "postback_secret": "s3"},
        headers=AUTH,
    )
    path = f"/api/v1/offers/{offer}/postbacks/{aff}"
    r = await client.get(path, headers=AUTH)
    assert r.status_code == 404 and r.json()["errors"][0]["code"] == "not_found"
    assert (await client.delete(path, headers=AUTH)).status_code == 404
    body = {"postback_url": "https://aff.example/o3?c={refid}", "postback_events": ["approved"]}
    put = await client.put(path, json=body, headers=AUTH)
    assert put.status_code == 200, put.text
    await app.store.create_token("ro", hash_token("read-tok"), "read")
    ro = {"Authorization": "Bearer read-tok"}
    got = await client.get(path, headers=ro)
    assert got.status_code == 200 and got.json() == put.json()
    assert (
        got.json()["postback_url"] == body["postback_url"] and "postback_secret" not in got.json()
    )
    assert got.json()["postback_method"] == "GET" and got.json()["postback_events"] == ["approved"]
    listed = await client.get(f"/api/v1/offers/{offer}/postbacks", headers=ro)
    assert listed.json() == {"items": [got.json()], "next_cursor": None}
    assert (
        await client.get(f"/api/v1/offers/{offer}/postbacks?x=1", headers=AUTH)
    ).status_code == 400
    assert (await client.get("/api/v1/offers/999/postbacks", headers=AUTH)).status_code == 404
    config = app.catalog.postback_config(offer, aff)
    assert config is not None and config.url == body["postback_url"]
    r = await client.put(path, json={"postback_url": ""}, headers=AUTH)
    assert r.status_code == 400 and "DELETE" in r.json()["errors"][0]["message"]
    assert (await client.delete(path, headers=ro)).status_code == 403
    assert (await client.delete(path, headers=AUTH)).status_code == 204
    assert (await client.get(path, headers=AUTH)).status_code == 404
    assert (await client.get(f"/api/v1/offers/{offer}/postbacks", headers=AUTH)).json()[
        "items"
    ] == []
    config = app.catalog.postback_config(offer, aff)  # the affiliate's own applies again
    assert config is not None and config.url == own and config.secret == "s3"


async def test_an_affiliate_read_lists_its_per_offer_postback_overrides(
    client: httpx.AsyncClient, app: ClickbackApp
) -> None:
    s = await make_offer(client)
    offer, aff = s["offer"]["id"], s["affiliate"]["id"]
    path = f"/api/v1/affiliates/{aff}"
    r = await client.get(path, headers=AUTH)
    assert r.status_code == 200 and r.json()["postback_overrides"] == []
    second = await client.post(
        "/api/v1/offers",
        json={
            "advertiser_id": s["advertiser"]["id"],
            "name": "Second",
            "destination_url": "https://shop.example/2",
            "payout_amount": "1",
        },
        headers=AUTH,
    )
    other = second.json()["id"]
    puts = []
    for offer_id, body in (
        (other, {"postback_url": "https://aff.example/b?c={refid}", "postback_method": "POST"}),
        (
            offer,
            {"postback_url": "https://aff.example/a?c={refid}", "postback_events": ["approved"]},
        ),
    ):
        put = await client.put(
            f"/api/v1/offers/{offer_id}/postbacks/{aff}", json=body, headers=AUTH
        )
        assert put.status_code == 200, put.text
        puts.append(put.json())
    await app.store.create_token("ro", hash_token("read-tok"), "read")
    for headers in (AUTH, {"Authorization": "Bearer read-tok"}):  # no secret in them
        r = await client.get(path, headers=headers)
        overrides = r.json()["postback_overrides"]
        assert overrides == sorted(puts, key=lambda o: o["offer_id"])
        assert [o["offer_id"] for o in overrides] == [offer, other]
        assert overrides[0]["postback_events"] == ["approved"]
        assert overrides[1]["postback_method"] == "POST"
    # a change answers the affiliate as a read shows it
    r = await client.patch(path, json={"name": "Renamed"}, headers=AUTH)
    assert r.json() == (await client.get(path, headers=AUTH)).json()
    assert r.json()["name"] == "Renamed" and len(r.json()["postback_overrides"]) == 2
    await client.delete(f"/api/v1/offers/{other}/postbacks/{aff}", headers=AUTH)
    r = await client.get(path, headers=AUTH)
    assert [o["offer_id"] for o in r.json()["postback_overrides"]] == [offer]
    listed = (await client.get("/api/v1/affiliates", headers=AUTH)).json()["items"]
    assert "postback_overrides" not in listed[0]  # a list stays one query
    doc = (await client.get("/api/v1/openapi.json")).json()
    answer = doc["paths"]["/api/v1/affiliates/{id}"]["get"]["responses"]["200"]
    schema = answer["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert "postback_overrides" in str(doc["components"]["schemas"][schema])


async def test_fraud_rules_given_as_text_that_is_not_json_are_a_400(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client)
    path = f"/api/v1/offers/{s['offer']['id']}"
    for text in ("x", "{bot", '"bot"'):
        r = await client.patch(path, json={"fraud_rules": text}, headers=AUTH)
        assert r.status_code == 400, (text, r.text)
        assert r.json()["errors"][0]["code"] == "invalid_fraud_rules"
    assert (await client.get(path, headers=AUTH)).json() == s["offer"]


async def test_a_filter_on_a_column_of_set_values_refuses_any_other(
    client: httpx.AsyncClient,
) -> None:
    """`status=aproved` matched no row and answered an empty list, as if there were
    none: a column that takes set values (a conversion's status, an offer's, a
    delivery's state or event, a postback's outcome) is refused any other, naming them."""
    s = await make_offer(client)
    refid = await click(client, s["link"])
    r = await client.get(
        "/postback", params={"refid": refid, "orderamount": "5", "ordernumber": "F1"}
    )
    assert r.json()["status"] == "accepted"
    r = await client.get("/api/v1/conversions", params={"status": "approved"}, headers=AUTH)
    assert r.status_code == 200 and [c["ordernumber"] for c in r.json()["items"]] == ["F1"]
    for path, name, wrong in (
        ("/api/v1/conversions", "status", "aproved"),
        ("/api/v1/offers", "status", "live"),
        ("/api/v1/offers", "payout_type", "CPA"),
        ("/api/v1/deliveries", "state", "sent"),
        ("/api/v1/deliveries", "event", "sale"),
        ("/api/v1/postbacks", "outcome", "ok"),
    ):
        r = await client.get(path, params={name: wrong}, headers=AUTH)
        assert r.status_code == 400, (path, r.text)
        [error] = r.json()["errors"]
        assert (error["code"], error["field"]) == ("invalid_filter", name)
        assert "must be one of" in error["message"], error
    r = await client.get("/api/v1/postbacks", params={"outcome": "accepted"}, headers=AUTH)
    assert r.status_code == 200 and len(r.json()["items"]) == 1


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


async def test_a_nul_decoded_from_a_cursor_or_a_path_is_refused_not_an_error(
    client: httpx.AsyncClient,
) -> None:
    """A U+0000 that is no `%00` in the query (a cursor's, `AA` decodes to it; a path's)
    never reaches the database, where PostgreSQL's text cannot hold it: a bad cursor is a
    400 `invalid_cursor` (an export's too, before its CSV starts), an id a 404, a link's
    code the unknown link's 404 page; alike for an affiliate's token and on both engines."""
    s = await make_offer(client)
    tok = await affiliate_token(client, s["affiliate"]["id"])
    for headers in (AUTH, tok):
        for path in (
            "/api/v1/clicks?cursor=AA",
            "/api/v1/clicks/export?cursor=AA",
            f"/api/v1/clicks?cursor={_b64('x' + chr(0))}",
            "/api/v1/conversions/export?cursor=AA",
            "/api/v1/clicks/export?cursor=zz",  # not UTF-8: refused before the CSV too
        ):
            r = await client.get(path, headers=headers)
            assert r.status_code == 400, (path, r.status_code, r.text)
            assert r.json()["errors"][0]["code"] == "invalid_cursor", (path, r.text)
    r = await client.get("/api/v1/clicks/%00", headers=AUTH)
    assert r.status_code == 404, r.text
    r = await client.get(f"/api/v1/rates?cursor={_b64(chr(0) + ' 2026-01-01')}", headers=AUTH)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "invalid_cursor", r.text
    for code in ("%00", "a%00b"):
        r = await client.get(f"/c/{code}")
        assert r.status_code == 404, (code, r.text)
    assert (await client.get(f"/c/{s['link']['code']}")).status_code == 302


async def test_a_nul_in_a_dashboard_filter_is_refused_not_an_error(
    client: httpx.AsyncClient,
) -> None:
    await make_offer(client)
    assert (await login(client, ADMIN)).status_code == 303
    for path in (
        "/ui/conversions?ordernumber=a%00b",
        "/ui/postbacks?refid=%00",
        "/ui/reports?sub1=%00",
        "/ui/?sub1=%00",
    ):
        r = await client.get(path)
        assert r.status_code == 400, (path, r.status_code, r.text[:300])
    # a cursor garbled: the list again from its start, saying why
    r = await client.get("/ui/conversions?cursor=AA")
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/conversions?error=")


async def test_an_attribution_window_that_is_no_whole_number_of_days_is_refused(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client, attribution_window_days=7)
    url = f"/api/v1/offers/{s['offer']['id']}"
    for days in (True, False, 30.9, 1.0, "30.9", "1e3", [30]):
        r = await client.patch(url, json={"attribution_window_days": days}, headers=AUTH)
        assert r.status_code == 400, (days, r.text)
        [error] = r.json()["errors"]
        assert (error["field"], error["code"]) == ("attribution_window_days", "invalid_window")
    body = {**OFFER_BODY, "advertiser_id": s["advertiser"]["id"], "attribution_window_days": True}
    assert (await client.post("/api/v1/offers", json=body, headers=AUTH)).status_code == 400
    offer = (await client.get(url, headers=AUTH)).json()
    assert offer["attribution_window_days"] == 7
    for days, kept in ((14, 14), ("21", 21)):
        r = await client.patch(url, json={"attribution_window_days": days}, headers=AUTH)
        assert r.status_code == 200 and r.json()["attribution_window_days"] == kept, r.text


async def test_an_archived_offer_reads_archived_and_its_status_cannot_be_set(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client)
    kept = (await make_offer(client, name="Kept"))["offer"]["id"]
    oid = s["offer"]["id"]
    url = f"/api/v1/offers/{oid}"
    assert (await client.delete(url, headers=AUTH)).status_code in (200, 204)
    assert (await client.get(url, headers=AUTH)).json()["status"] == "archived"

    async def listed(query: str) -> list[tuple[int, str]]:
        r = await client.get(f"/api/v1/offers?{query}", headers=AUTH)
        assert r.status_code == 200, r.text
        return [(o["id"], o["status"]) for o in r.json()["items"]]

    assert await listed("status=archived") == [(oid, "archived")]
    assert await listed("status=active") == [(kept, "active")]
    assert await listed("archived=true") == [(oid, "archived")]
    r = await client.get("/api/v1/offers?status=active&archived=true", headers=AUTH)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "invalid_filter", r.text
    for status in ("active", "paused"):
        r = await client.patch(url, json={"status": status}, headers=AUTH)
        assert r.status_code == 409, (status, r.text)
        [error] = r.json()["errors"]
        assert error["code"] == "offer_archived" and "archived" in error["message"]
    assert (await client.get(url, headers=AUTH)).json()["status"] == "archived"


async def test_archiving_an_advertiser_or_affiliate_archives_what_belongs_to_it(
    client: httpx.AsyncClient,
) -> None:
    """An advertiser's offers, and their links, stop serving with it, and read so; an
    affiliate's links too. Nothing new can be made under an archived one."""
    s = await make_offer(client)
    adv, aff = s["advertiser"]["id"], s["affiliate"]["id"]
    body = {**OFFER_BODY, "advertiser_id": adv, "name": "Second"}
    second = (await client.post("/api/v1/offers", json=body, headers=AUTH)).json()["id"]
    other = await make_offer(client, name="Other")
    oid, kept = s["offer"]["id"], other["offer"]["id"]
    assert (await client.delete(f"/api/v1/advertisers/{adv}", headers=AUTH)).status_code < 300

    async def offers(query: str) -> list[tuple[int, str]]:
        r = await client.get(f"/api/v1/offers?{query}", headers=AUTH)
        return sorted((o["id"], o["status"]) for o in r.json()["items"])

    assert await offers("status=archived") == [(oid, "archived"), (second, "archived")]
    assert await offers("status=active") == [(kept, "active")]
    link = (await client.get(f"/api/v1/links/{s['link']['id']}", headers=AUTH)).json()
    assert (link["active"], link["archived_at"] is not None) == (False, True)
    link = (await client.get(f"/api/v1/links/{other['link']['id']}", headers=AUTH)).json()
    assert (link["active"], link["archived_at"]) == (True, None)  # another advertiser's
    made = {
        "offer": await client.post("/api/v1/offers", json=body, headers=AUTH),
        "link": await client.post(
            "/api/v1/links", json={"offer_id": oid, "affiliate_id": aff}, headers=AUTH
        ),
    }
    codes = {
        k: (r.status_code, r.json()["errors"][0]["code"], r.json()["errors"][0]["field"])
        for k, r in made.items()
    }
    assert codes == {
        "offer": (409, "advertiser_archived", "advertiser_id"),
        "link": (409, "offer_archived", "offer_id"),
    }

    other_aff = other["affiliate"]["id"]
    assert (await client.delete(f"/api/v1/affiliates/{other_aff}", headers=AUTH)).status_code < 300
    r = await client.get(f"/api/v1/links?affiliate_id={other_aff}&archived=true", headers=AUTH)
    assert [x["id"] for x in r.json()["items"]] == [other["link"]["id"]]
    assert (await client.get(f"/c/{other['link']['code']}")).status_code == 404
    r = await client.post(
        "/api/v1/links", json={"offer_id": kept, "affiliate_id": other_aff}, headers=AUTH
    )
    assert (r.status_code, r.json()["errors"][0]["code"]) == (409, "affiliate_archived")
    assert (await offers("status=active")) == [(kept, "active")]  # the offer itself serves on


async def test_archiving_an_offer_archives_its_links_and_nothing_is_made_under_it(
    client: httpx.AsyncClient,
) -> None:
    """An archived offer's links, and only its, are archived with it; its integration
    tests, rules and caps are refused (409), and so are those of an archived affiliate;
    the OpenAPI document says these answers may be 409s."""
    s, other = await make_offer(client), await make_offer(client, name="Other")
    oid, aff = s["offer"]["id"], s["affiliate"]["id"]
    assert (await client.delete(f"/api/v1/offers/{oid}", headers=AUTH)).status_code < 300

    async def archived(link: dict) -> bool:
        r = await client.get(f"/api/v1/links/{link['id']}", headers=AUTH)
        return bool(r.json()["archived_at"]) and not r.json()["active"]

    assert (await archived(s["link"]), await archived(other["link"])) == (True, False)
    other_aff = other["affiliate"]["id"]
    assert (await client.delete(f"/api/v1/affiliates/{other_aff}", headers=AUTH)).status_code < 300
    kept = other["offer"]["id"]
    rule = {"commissionid": "X", "payout_type": "cpa", "payout_amount": "2"}
    calls = {
        "test": ("POST", f"/api/v1/offers/{oid}/integration-tests", {}),
        "test, affiliate": (
            "POST",
            f"/api/v1/offers/{kept}/integration-tests",
            {"affiliate_id": other_aff},
        ),
        "rule": ("POST", f"/api/v1/offers/{oid}/rules", rule),
        "rule, affiliate": (
            "POST",
            f"/api/v1/offers/{kept}/rules",
            {**rule, "affiliate_id": other_aff},
        ),
        "cap": ("PUT", f"/api/v1/offers/{oid}/caps/{aff}", {"daily_cap": 5}),
        "cap, affiliate": ("PUT", f"/api/v1/offers/{kept}/caps/{other_aff}", {"daily_cap": 5}),
    }
    seen = {}
    for name, (method, url, body) in calls.items():
        r = await client.request(method, url, json=body, headers=AUTH)
        seen[name] = (r.status_code, r.json()["errors"][0]["code"])
    offer, affiliate = (409, "offer_archived"), (409, "affiliate_archived")
    assert seen == {
        "test": offer,
        "test, affiliate": affiliate,
        "rule": offer,
        "rule, affiliate": affiliate,
        "cap": offer,
        "cap, affiliate": affiliate,
    }
    r = await client.get(f"/api/v1/links?offer_id={oid}&archived=false", headers=AUTH)
    assert r.json()["items"] == []  # no test link was made
    doc = (await client.get("/api/v1/openapi.json", headers=AUTH)).json()["paths"]
    for path, method in (
        ("/api/v1/offers", "post"),
        ("/api/v1/links", "post"),
        ("/api/v1/offers/{id}", "patch"),
        ("/api/v1/offers/{id}/integration-tests", "post"),
        ("/api/v1/offers/{id}/rules", "post"),
        ("/api/v1/offers/{id}/caps/{affiliate_id}", "put"),
    ):
        assert "409" in doc[path][method]["responses"], (path, method)


async def test_an_archived_link_reads_inactive(client: httpx.AsyncClient) -> None:
    link = (await make_offer(client))["link"]["id"]
    assert (await client.delete(f"/api/v1/links/{link}", headers=AUTH)).status_code in (200, 204)
    r = await client.get(f"/api/v1/links/{link}", headers=AUTH)
    assert r.json()["active"] is False and r.json()["archived_at"] is not None
    r = await client.patch(f"/api/v1/links/{link}", json={"active": True}, headers=AUTH)
    assert (r.status_code, r.json()["errors"][0]["code"]) == (409, "link_archived"), r.text
