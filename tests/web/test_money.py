"""Conversion lifecycle, commission rules, currencies and exports, through the real app."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest

from clickback.config import Settings
from clickback.domain.ports import Store
from clickback.domain.tracker import open_tracker
from clickback.errors import ConfigError
from clickback.web.app import ClickbackApp
from clickback.web.present import EXPORT_COLUMNS
from tests.conftest import AUTH, click, make_offer, status

# an import of one rate that valued the one conversion waiting for it, and said nothing
ONE_RATE_VALUED_ONE = {
    "stored": 1,
    "valued": 1,
    "waiting": 0,
    "too_large": [],
    "replaced": [],
    "kept_earlier_rate": [],
    "note": None,
}


async def convert(client: httpx.AsyncClient, s: dict[str, Any], order: str, **params: str) -> dict:
    refid = await click(client, s["link"])
    r = await client.get(
        "/postback", params={"refid": refid, "orderamount": "100", "ordernumber": order, **params}
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_review_offer_keeps_conversions_pending_until_decided(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client, approval="review")
    body = await convert(client, s, "REV-1")
    assert body["conversion_status"] == "pending"
    cid = body["conversion_id"]
    r = await status(client, cid, "approved", "advertiser_validated")
    assert r.status_code == 200 and r.json()["status"] == "approved"
    r = await status(client, cid, "reversed", "chargeback")
    history = r.json()["history"]
    assert [(h["from"], h["to"], h["reason"]) for h in history] == [
        ("pending", "approved", "advertiser_validated"),
        ("approved", "reversed", "chargeback"),
    ]
    assert all(h["actor"] == "admin_token" and h["at"].endswith("Z") for h in history)


async def test_transitions_that_are_not_allowed_are_refused(client: httpx.AsyncClient) -> None:
    s = await make_offer(client)  # approval auto: approved when recorded
    cid = (await convert(client, s, "T-1"))["conversion_id"]
    r = await status(client, cid, "approved")
    assert r.status_code == 409 and r.json()["errors"][0]["code"] == "unchanged"
    r = await status(client, cid, "rejected")
    assert r.status_code == 409 and r.json()["errors"][0]["code"] == "invalid_transition"
    assert "reversed" in r.json()["errors"][0]["message"]
    r = await status(client, cid, "reversed", "")
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "invalid_reason"
    r = await status(client, cid, "lost")
    assert r.status_code == 400
    for sent, says in [(None, "is required"), (["reversed"], "must be a string, one of pending")]:
        body = {"reason": "x"} if sent is None else {"status": sent, "reason": "x"}
        r = await client.post(f"/api/v1/conversions/{cid}/status", headers=AUTH, json=body)
        assert r.status_code == 400 and says in r.json()["errors"][0]["message"], r.text
    assert (await status(client, cid, "reversed")).status_code == 200
    assert (await status(client, cid, "approved")).status_code == 409
    assert (await status(client, 999_999, "approved")).status_code == 404


async def test_validation_csv_reports_every_line(client: httpx.AsyncClient) -> None:
    s = await make_offer(client, approval="review")
    for order in ("A1", "A2", "A3", "A4"):
        await convert(client, s, order)
    csv_text = (
        "ordernumber,status,reason\nA1,approved,valid\nA2,rejected,fraud\n"
        "A3,reversed,refund\nNOPE,approved,valid\nA1,approved,valid\nbroken line\n"
        "A2,maybe,x\nA4,rejected\nA4,approved,\nA1,approved,\n"
    )
    r = await client.post(
        f"/api/v1/advertisers/{s['advertiser']['id']}/conversion-statuses",
        content=csv_text.encode(),
        headers={**AUTH, "content-type": "text/csv"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["changed"], body["unchanged"], body["errors"]) == (3, 2, 5)
    by_line = {x["line"]: (x["result"], x["code"]) for x in body["lines"]}
    assert by_line == {
        2: ("changed", "approved"),
        3: ("changed", "rejected"),
        4: ("error", "invalid_transition"),
        5: ("error", "unknown_ordernumber"),
        6: ("unchanged", "unchanged"),
        7: ("error", "invalid_line"),
        8: ("error", "invalid_status"),
        9: ("changed", "rejected"),  # no reason given: `validation_file`
        10: ("error", "invalid_transition"),  # a rejection is taken back by the network
        11: ("unchanged", "unchanged"),
    }
    convs = (await client.get("/api/v1/conversions", headers=AUTH)).json()["items"]
    assert {c["ordernumber"]: c["status"] for c in convs} == {
        "A1": "approved",
        "A2": "rejected",
        "A3": "pending",
        "A4": "rejected",
    }
    a4 = next(c for c in convs if c["ordernumber"] == "A4")
    history = (await client.get(f"/api/v1/conversions/{a4['id']}", headers=AUTH)).json()["history"]
    assert [(h["to"], h["reason"]) for h in history] == [("rejected", "validation_file")]
    said = next(x["message"] for x in body["lines"] if x["line"] == 10)
    assert "approved by the network" in said, said


async def test_commission_rules_by_commissionid_and_affiliate(client: httpx.AsyncClient) -> None:
    s = await make_offer(client, payout_type="cps", payout_percent="2")
    oid, aff = s["offer"]["id"], s["affiliate"]["id"]
    rules = {}
    for body in (
        {"commissionid": "new_customer", "payout_type": "cps", "payout_percent": "10"},
        {"commissionid": "returning", "payout_type": "cps", "payout_percent": "5"},
        {
            "affiliate_id": aff,
            "commissionid": "returning",
            "payout_type": "cpa",
            "payout_amount": "7.00",
        },
    ):
        r = await client.post(f"/api/v1/offers/{oid}/rules", json=body, headers=AUTH)
        assert r.status_code == 201, r.text
        rules[body["commissionid"], body.get("affiliate_id")] = r.json()["id"]
    new = await convert(client, s, "C1", commissionid="new_customer")
    assert new["commission"] == "10.00" and "warnings" not in new
    ret = await convert(client, s, "C2", commissionid="returning")  # the affiliate's override
    assert ret["commission"] == "7.00"
    unknown = await convert(client, s, "C3", commissionid="vip")
    assert unknown["commission"] == "2.00"
    assert unknown["warnings"][0]["code"] == "unknown_commissionid"
    convs = {
        c["ordernumber"]: c
        for c in (await client.get("/api/v1/conversions", headers=AUTH)).json()["items"]
    }
    assert convs["C1"]["rule"] == f"rule:{rules['new_customer', None]}"
    assert convs["C2"]["rule"] == f"rule:{rules['returning', aff]}"
    assert convs["C3"]["rule"] == "default" and convs["C3"]["flags"] == ["unknown_commissionid"]
    ledger = await client.get(
        "/api/v1/postbacks", params={"code": "unknown_commissionid"}, headers=AUTH
    )
    assert [p["ordernumber"] for p in ledger.json()["items"]] == ["C3"]
    r = await client.post(
        f"/api/v1/offers/{oid}/rules",
        json={"payout_type": "cpa", "payout_amount": "1"},
        headers=AUTH,
    )
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "invalid_rule"


async def test_a_commissionid_only_another_affiliate_has_a_rule_for_is_unknown(
    client: httpx.AsyncClient,
) -> None:
    """Affiliate B's rule for `vip` is B's alone: A's postback with `commissionid=vip`
    pays A's own payout (the default, or A's rule without a commissionid) and is flagged
    `unknown_commissionid`, as any id the offer has no rule for; B's pays B's rule."""
    s = await make_offer(client, payout_type="cps", payout_percent="2")
    oid = s["offer"]["id"]
    other = (await client.post("/api/v1/affiliates", json={"name": "B"}, headers=AUTH)).json()
    link = await client.post(
        "/api/v1/links", json={"offer_id": oid, "affiliate_id": other["id"]}, headers=AUTH
    )
    rule = {"affiliate_id": other["id"], "commissionid": "vip", "payout_type": "cpa"}
    r = await client.post(
        f"/api/v1/offers/{oid}/rules", json={**rule, "payout_amount": "9.00"}, headers=AUTH
    )
    assert r.status_code == 201, r.text
    theirs = await convert(client, {**s, "link": link.json()}, "V1", commissionid="vip")
    assert theirs["commission"] == "9.00" and "warnings" not in theirs, theirs
    mine = await convert(client, s, "V2", commissionid="vip")
    assert mine["commission"] == "2.00", mine
    assert [w["code"] for w in mine.get("warnings", [])] == ["unknown_commissionid"]
    r = await client.post(
        f"/api/v1/offers/{oid}/rules",
        json={"affiliate_id": s["affiliate"]["id"], "payout_type": "cpa", "payout_amount": "4"},
        headers=AUTH,
    )
    assert r.status_code == 201, r.text
    own = await convert(client, s, "V3", commissionid="vip")  # A's own rule, still unknown
    assert own["commission"] == "4.00", own
    assert [w["code"] for w in own.get("warnings", [])] == ["unknown_commissionid"]
    assert "the affiliate's own payout" in own["warnings"][0]["message"]
    assert "the default payout" in mine["warnings"][0]["message"]
    convs = {
        c["ordernumber"]: c
        for c in (await client.get("/api/v1/conversions", headers=AUTH)).json()["items"]
    }
    assert {k: c["flags"] for k, c in convs.items()} == {
        "V1": [],
        "V2": ["unknown_commissionid"],
        "V3": ["unknown_commissionid"],
    }
    ledger = await client.get(
        "/api/v1/postbacks", params={"code": "unknown_commissionid"}, headers=AUTH
    )
    assert [p["ordernumber"] for p in ledger.json()["items"]] == ["V3", "V2"]


async def test_cps_in_jpy_usd_kwd_and_base_totals(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/v1/rates",
        headers={**AUTH, "content-type": "text/csv"},
        content=b"date,currency,rate\n2000-01-01,JPY,0.0067\n2000-01-01,KWD,3.2512\n",
    )
    assert r.json() == {
        "stored": 2,
        "valued": 0,
        "waiting": 0,
        "too_large": [],
        "replaced": [],
        "kept_earlier_rate": [],
        "note": None,
    }
    expect = []
    for currency, amount, commission in (
        ("JPY", "1999", "200"),
        ("USD", "10.05", "1.01"),
        ("KWD", "10.125", "1.013"),
    ):
        s = await make_offer(client, payout_type="cps", payout_percent="10", currency=currency)
        refid = await click(client, s["link"])
        r = await client.get(
            "/postback",
            params={"refid": refid, "orderamount": amount, "ordernumber": f"X-{currency}"},
        )
        assert r.json()["commission"] == commission, currency
        expect.append((currency, Decimal(amount)))
    convs = (await client.get("/api/v1/conversions", headers=AUTH)).json()["items"]
    base = {c["currency"]: (c["rate"], c["base_amount"], c["base_commission"]) for c in convs}
    assert base["JPY"] == ("0.0067", "13.39", "1.34")  # 1999 * 0.0067 = 13.3933
    assert base["KWD"] == ("3.2512", "32.92", "3.29")  # 10.125 * 3.2512 = 32.9184
    assert base["USD"] == ("1", "10.05", "1.01")
    totals = (await client.get("/api/v1/conversions/totals", headers=AUTH)).json()
    approved = totals["by_status"]["approved"]
    assert approved["base_amount"] == str(sum(Decimal(b[1]) for b in base.values()))
    assert approved["base_commission"] == str(sum(Decimal(b[2]) for b in base.values()))
    assert totals["payable"] == approved["base_commission"] and approved["missing_rate"] == 0


async def test_a_lead_of_zero_needs_no_rate_for_its_order_currency(
    client: httpx.AsyncClient,
) -> None:
    """A CPL lead (orderamount=0) sent in a currency with no rate: zero is zero in any
    currency. It waited as `missing_rate`, its commission left out of what is payable."""
    s = await make_offer(client, payout_type="cpa", payout_amount="5.00")
    body = await convert(client, s, "LEAD-CHF", orderamount="0", currency="CHF")
    assert body["status"] == "accepted" and "warnings" not in body, body
    [conv] = (await client.get("/api/v1/conversions", headers=AUTH)).json()["items"]
    assert (conv["flags"], conv["base_amount"], conv["base_commission"]) == ([], "0.00", "5.00")
    totals = (await client.get("/api/v1/conversions/totals", headers=AUTH)).json()
    assert totals["payable"] == "5.00" and totals["by_status"]["approved"]["missing_rate"] == 0


async def test_a_lead_of_zero_waits_only_for_its_commissions_rate(
    client: httpx.AsyncClient,
) -> None:
    """A lead of 0 GBP paying 2 EUR, before any rate: it waits for EUR alone (the warning
    named GBP too), is valued by an EUR rate's import (it waited for a GBP one that it
    does not need, for ever), and does not wait after (a later import counted it)."""
    s = await make_offer(client, payout_type="cpa", payout_amount="2.00", currency="EUR")
    body = await convert(client, s, "LEAD-GBP", orderamount="0", currency="GBP")
    [warning] = body["warnings"]
    assert warning["message"].startswith("no exchange rate into USD for EUR dated"), warning
    csv = {**AUTH, "content-type": "text/csv"}
    r = await client.post("/api/v1/rates", headers=csv, content=b"2000-01-01,EUR,1.10\n")
    assert (r.json()["valued"], r.json()["waiting"]) == (1, 0), r.text
    [conv] = (await client.get("/api/v1/conversions", headers=AUTH)).json()["items"]
    assert (conv["flags"], conv["rate"], conv["base_amount"], conv["base_commission"]) == (
        [],
        None,
        "0.00",
        "2.20",
    )
    r = await client.post("/api/v1/rates", headers=csv, content=b"2000-01-02,EUR,1.20\n")
    assert (r.json()["valued"], r.json()["waiting"]) == (0, 0), r.text


async def test_conversion_without_a_rate_is_kept_and_valued_later(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client, payout_type="cpa", payout_amount="5.00")
    body = await convert(client, s, "EUR-1", currency="EUR")
    assert body["status"] == "accepted"
    assert [w["code"] for w in body["warnings"]] == ["missing_rate"]
    [conv] = (await client.get("/api/v1/conversions", headers=AUTH)).json()["items"]
    assert conv["flags"] == ["missing_rate"] and conv["base_amount"] is None
    totals = (await client.get("/api/v1/conversions/totals", headers=AUTH)).json()
    assert totals["by_status"]["approved"]["missing_rate"] == 1
    r = await client.post(
        "/api/v1/rates",
        headers={**AUTH, "content-type": "text/csv"},
        content=b"2000-01-01,EUR,1.10\n",
    )
    assert r.json() == ONE_RATE_VALUED_ONE
    [conv] = (await client.get("/api/v1/conversions", headers=AUTH)).json()["items"]
    assert (conv["rate"], conv["base_amount"], conv["base_commission"]) == (
        "1.10",
        "110.00",
        "5.00",
    )
    assert conv["flags"] == []
    r = await client.post(
        "/api/v1/rates",
        headers={**AUTH, "content-type": "text/csv"},
        content=b"2000-01-01,EURO,1\n",
    )
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "invalid_rate"
    # a carriage return inside a field is not CSV the reader takes: a 400, not a crash
    r = await client.post(
        "/api/v1/rates",
        headers={**AUTH, "content-type": "text/csv"},
        content=b'2000-01-01,E\rUR"x,1\n"',
    )
    assert r.status_code == 400 and r.json()["errors"][0]["code"] in ("invalid_csv", "invalid_rate")
    # lines ending in CR alone (old Mac files) are lines
    r = await client.post(
        "/api/v1/rates",
        headers={**AUTH, "content-type": "text/csv"},
        content=b"date,currency,rate\r2000-01-02,EUR,1.2\r",
    )
    assert r.status_code == 200 and r.json()["stored"] == 1, r.text
    # a rate dated after the one the conversion was valued at, on or before its day: it
    # keeps the rate it has, and the import says so
    assert r.json()["kept_earlier_rate"] == [{"currency": "EUR", "from": "2000-01-02"}]
    assert "EUR conversions recorded on or after 2000-01-02 before this import" in r.json()["note"]
    [conv] = (await client.get("/api/v1/conversions", headers=AUTH)).json()["items"]
    assert conv["rate"] == "1.10"
    r = await client.post(  # one dated after today changes nothing of it
        "/api/v1/rates", headers={**AUTH, "content-type": "text/csv"}, content=b"2999-01-01,EUR,2\n"
    )
    assert r.json()["kept_earlier_rate"] == [], r.text


async def test_a_rates_file_that_would_store_a_wrong_rate_is_refused(
    client: httpx.AsyncClient,
) -> None:
    """A decimal comma (`9,093` read as 9), a rate of the base currency (always 1), two
    rates for one currency and day: refused, naming the line; nothing stored."""
    for text, said in (
        ("2026-11-28,NOK,9,093\n", "line 1: more than 3 fields"),
        ("date,currency,rate\n2026-11-28,USD,1.5\n", "line 2: USD is the base currency"),
        ("2026-11-22,SEK,0.09\n2026-11-22,SEK,0.11\n", "line 2: a second rate for SEK"),
    ):
        r = await client.post(
            "/api/v1/rates", headers={**AUTH, "content-type": "text/csv"}, content=text.encode()
        )
        assert r.status_code == 400, text
        [error] = r.json()["errors"]
        assert error["code"] == "invalid_rate" and error["message"].startswith(said), error
    same_twice = b'2026-11-22,SEK,0.09\n2026-11-22,SEK,0.090\n"2026-11-23",NOK,"9.093",\n'
    r = await client.post(
        "/api/v1/rates", headers={**AUTH, "content-type": "text/csv"}, content=same_twice
    )
    assert r.json()["stored"] == 3, r.text
    r = await client.get("/api/v1/rates", headers=AUTH)
    assert {(i["currency"], i["rate"]) for i in r.json()["items"]} == {
        ("SEK", "0.090"),
        ("NOK", "9.093"),
    }


async def test_a_conversion_waiting_for_a_rate_says_which_and_of_what_day(
    client: httpx.AsyncClient,
) -> None:
    """The warning names the currency without a rate (the commission's, here) and the
    day a rate must be dated by; an import of a later-dated rate says what still waits."""
    s = await make_offer(client, payout_type="cpa", payout_amount="3.33", currency="CHF")
    body = await convert(client, s, "CHF-1", currency="USD")
    [warning] = body["warnings"]
    today = datetime.now(UTC).date()
    assert warning["message"] == (
        f"no exchange rate into USD for CHF dated on or before {today} yet: valued when one"
        " is imported"
    )
    later = f"{today + timedelta(days=1)},CHF,1.10\n".encode()
    r = await client.post(
        "/api/v1/rates", headers={**AUTH, "content-type": "text/csv"}, content=later
    )
    answer = r.json()
    assert (answer["valued"], answer["waiting"]) == (0, 1)
    assert "latest rate dated on or before its UTC day" in answer["note"]
    today_rate = f"{today},CHF,1.10\n".encode()
    r = await client.post(
        "/api/v1/rates", headers={**AUTH, "content-type": "text/csv"}, content=today_rate
    )
    assert r.json() == ONE_RATE_VALUED_ONE
    # a day's rate replaced by another: said, with what the conversions valued keep
    fixed = f"{today},CHF,1.2\n{today},EUR,1.1\n".encode()
    r = await client.post(
        "/api/v1/rates", headers={**AUTH, "content-type": "text/csv"}, content=fixed
    )
    assert r.json()["replaced"] == [
        {"currency": "CHF", "date": str(today), "was": "1.10", "rate": "1.2"}
    ]
    assert f"keep it: CHF {today} 1.10 -> 1.2" in r.json()["note"]
    [conv] = (await client.get("/api/v1/conversions", headers=AUTH)).json()["items"]
    assert conv["base_commission"] == "3.66"  # 3.33 CHF at 1.10, as valued


async def test_an_import_says_which_conversions_are_too_large_to_value(
    client: httpx.AsyncClient,
) -> None:
    """An order accepted before its currency had a rate, whose value in the base currency
    then passes what can be stored: the import says so, with its id, not that it still
    waits for a rate it has."""
    s = await make_offer(client, payout_type="cps", payout_percent="8")
    body = await convert(client, s, "HUGE-1", currency="EUR", orderamount="9999999999999.99")
    assert body["status"] == "accepted", body
    rate = f"{datetime.now(UTC).date()},EUR,1.1\n".encode()
    r = await client.post(
        "/api/v1/rates", headers={**AUTH, "content-type": "text/csv"}, content=rate
    )
    answer = r.json()
    assert (answer["valued"], answer["waiting"]) == (0, 1)
    assert answer["too_large"] == [body["conversion_id"]]
    assert "too large to value in USD" in answer["note"] and "still wait" not in answer["note"]


async def test_a_missing_rate_warning_names_only_the_currency_without_one(
    client: httpx.AsyncClient,
) -> None:
    """An order in a currency with a rate, its commission in one without: the warning
    named both ("for GBP or EUR"), sending the advertiser after a rate that is there."""
    s = await make_offer(client, payout_type="cpa", payout_amount="3.33", currency="GBP")
    rate = b"2000-01-01,EUR,1.1\n"
    r = await client.post(
        "/api/v1/rates", headers={**AUTH, "content-type": "text/csv"}, content=rate
    )
    assert r.status_code == 200, r.text
    [warning] = (await convert(client, s, "GBP-1", currency="EUR"))["warnings"]
    assert warning["message"].startswith("no exchange rate into USD for GBP dated"), warning


async def test_csv_exports_with_filters(client: httpx.AsyncClient) -> None:
    a = await make_offer(client)
    b = await make_offer(client)
    await convert(client, a, "E1")
    await convert(client, b, "E2")
    r = await client.get(
        "/api/v1/conversions/export", params={"offer_id": b["offer"]["id"]}, headers=AUTH
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [x["ordernumber"] for x in rows] == ["E2"]
    assert list(rows[0]) == EXPORT_COLUMNS["conversions"]
    r = await client.get("/api/v1/clicks/export", headers=AUTH)
    clicks = list(csv.DictReader(io.StringIO(r.text)))
    assert len(clicks) == 2 and list(clicks[0]) == EXPORT_COLUMNS["clicks"]
    conv = (await client.get("/api/v1/conversions", headers=AUTH)).json()["items"][0]
    assert list(conv) == EXPORT_COLUMNS["conversions"]


async def test_exports_filter_by_affiliate_and_test_as_the_lists_do(
    client: httpx.AsyncClient,
) -> None:
    a = await make_offer(client)
    b = await make_offer(client)
    await convert(client, a, "F1")
    await convert(client, b, "F2")
    r = await client.post(
        f"/api/v1/offers/{a['offer']['id']}/integration-tests",
        json={"simulate": True},
        headers=AUTH,
    )
    assert r.status_code == 201, r.text

    async def exported(table: str, column: str, **params: Any) -> list[str]:
        r = await client.get(f"/api/v1/{table}/export", params=params, headers=AUTH)
        assert r.status_code == 200, r.text
        return sorted(row[column] for row in csv.DictReader(io.StringIO(r.text)))

    b_id = b["affiliate"]["id"]
    assert await exported("conversions", "ordernumber", affiliate_id=b_id) == ["F2"]
    assert await exported("conversions", "ordernumber", is_test="false") == ["F1", "F2"]
    assert await exported("conversions", "is_test", is_test="true") == ["true"]
    assert await exported("clicks", "affiliate_id", affiliate_id=b_id) == [str(b_id)]
    assert len(await exported("clicks", "refid", is_test="false")) == 2
    assert await exported("clicks", "is_test", is_test="true") == ["true"]


async def test_tokens_are_created_listed_and_revoked(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/tokens", json={"name": "reports", "role": "read"}, headers=AUTH)
    assert r.status_code == 201
    token = r.json()
    ro = {"Authorization": f"Bearer {token['token']}"}
    assert (await client.get("/api/v1/conversions", headers=ro)).status_code == 200
    assert (await client.get("/api/v1/tokens", headers=ro)).status_code == 403
    listed = (await client.get("/api/v1/tokens", headers=AUTH)).json()["items"]
    assert [t["name"] for t in listed] == ["reports"] and "token" not in listed[0]
    assert (await client.delete(f"/api/v1/tokens/{token['id']}", headers=AUTH)).status_code == 204
    assert (await client.get("/api/v1/conversions", headers=ro)).status_code == 401


async def _page_through(client: httpx.AsyncClient, path: str, key: str) -> list[list[Any]]:
    """The keys of each page of a list of 2, following `next_cursor` to the end."""
    pages: list[list[Any]] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        r = await client.get(path, params=params, headers=AUTH)
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append([item[key] for item in body["items"]])
        if body["next_cursor"] is None:
            return pages
        assert len(pages) < 10, pages
        params = {"limit": 2, "cursor": body["next_cursor"]}


async def test_the_tokens_and_rates_lists_page_like_every_list(client: httpx.AsyncClient) -> None:
    """They answered every row at once, with no `limit` or `cursor`."""
    made = []
    for i in range(5):
        r = await client.post(
            "/api/v1/tokens", json={"name": f"t{i}", "role": "read"}, headers=AUTH
        )
        made.append(r.json()["id"])
    assert await _page_through(client, "/api/v1/tokens", "id") == [
        made[4:2:-1],
        made[2:0:-1],
        made[:1],
    ]
    r = await client.get("/api/v1/tokens", params={"sort": "id", "role": "read"}, headers=AUTH)
    assert [t["id"] for t in r.json()["items"]] == made
    assert "token_hash" not in r.json()["items"][0]
    r = await client.get("/api/v1/tokens", params={"limit": "0"}, headers=AUTH)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "invalid_limit"

    csv_text = "date,currency,rate\n" + "".join(
        f"2000-01-0{d},{c},1.{d}\n" for c in ("EUR", "GBP") for d in (1, 2, 3)
    )
    r = await client.post(
        "/api/v1/rates", headers={**AUTH, "content-type": "text/csv"}, content=csv_text.encode()
    )
    assert r.json()["stored"] == 6
    r = await client.get("/api/v1/rates", params={"limit": 4}, headers=AUTH)
    body = r.json()
    assert body["base_currency"] == "USD" and body["next_cursor"]
    assert [(i["currency"], i["date"]) for i in body["items"]] == [
        ("EUR", "2000-01-01"),
        ("EUR", "2000-01-02"),
        ("EUR", "2000-01-03"),
        ("GBP", "2000-01-01"),
    ]
    r = await client.get(
        "/api/v1/rates", params={"limit": 4, "cursor": body["next_cursor"]}, headers=AUTH
    )
    assert [(i["currency"], i["date"], i["rate"]) for i in r.json()["items"]] == [
        ("GBP", "2000-01-02", "1.2"),
        ("GBP", "2000-01-03", "1.3"),
    ]
    assert r.json()["next_cursor"] is None
    r = await client.get("/api/v1/rates", params={"currency": "GBP"}, headers=AUTH)
    assert [i["date"] for i in r.json()["items"]] == ["2000-01-01", "2000-01-02", "2000-01-03"]
    for bad, code in (
        ({"cursor": "not-one"}, "invalid_cursor"),
        ({"limit": "1001"}, "invalid_limit"),
        ({"nonsense": "1"}, "unknown_filter"),
    ):
        r = await client.get("/api/v1/rates", params=bad, headers=AUTH)
        assert r.status_code == 400 and r.json()["errors"][0]["code"] == code, (bad, r.text)


async def test_archiving_stops_serving_and_keeps_history(client: httpx.AsyncClient) -> None:
    s = await make_offer(client)
    refid = await click(client, s["link"])
    r = await client.delete(f"/api/v1/offers/{s['offer']['id']}", headers=AUTH)
    assert r.status_code == 200 and r.json()["archived_at"]
    assert (await client.get(f"/c/{s['link']['code']}")).status_code == 404
    r = await client.get(f"/postback?refid={refid}&orderamount=1&ordernumber=Z")
    assert r.status_code == 422 and r.json()["code"] == "offer_archived"
    listed = await client.get("/api/v1/offers", params={"archived": "true"}, headers=AUTH)
    assert [o["id"] for o in listed.json()["items"]] == [s["offer"]["id"]]
    live = await client.get("/api/v1/offers", params={"archived": "false"}, headers=AUTH)
    assert live.json()["items"] == []
    assert (await client.get("/api/v1/clicks", headers=AUTH)).json()["items"]  # kept


async def test_a_link_archived_elsewhere_is_not_served_by_a_tracker_that_never_cached_it(
    client: httpx.AsyncClient, app: ClickbackApp
) -> None:
    """A second tracker (another node) over the same database, loaded before the links
    were made: one archived, or of an affiliate archived, on the first node before the
    second refreshes, is found by its code on the second and not served there; a live
    one is."""
    s = await make_offer(client)
    other = await open_tracker(app.store)
    pub = (await client.post("/api/v1/affiliates", json={"name": "P2"}, headers=AUTH)).json()
    links = []
    for affiliate_id in (s["affiliate"]["id"], s["affiliate"]["id"], pub["id"]):
        body = {"offer_id": s["offer"]["id"], "affiliate_id": affiliate_id}
        r = await client.post("/api/v1/links", json=body, headers=AUTH)
        assert r.status_code == 201, r.text
        links.append(r.json())
    live, archived, of_archived = links
    r = await client.delete(f"/api/v1/links/{archived['id']}", headers=AUTH)
    assert r.status_code == 200 and r.json()["archived_at"], r.text
    r = await client.delete(f"/api/v1/affiliates/{pub['id']}", headers=AUTH)
    assert r.status_code == 200 and r.json()["archived_at"], r.text
    for link in (archived, of_archived):
        assert await other.click(link["code"], "", "1.2.3.4", "UA", "", fallback=False) is None
    assert await other.click(live["code"], "", "1.2.3.4", "UA", "", fallback=False)


async def test_patch_every_entity(client: httpx.AsyncClient) -> None:
    s = await make_offer(client)
    r = await client.patch(
        f"/api/v1/advertisers/{s['advertiser']['id']}",
        headers=AUTH,
        json={"require_token": True, "postback_token": "new"},
    )
    assert r.json()["require_token"] is True and r.json()["postback_token"] == "new"
    r = await client.patch(
        f"/api/v1/affiliates/{s['affiliate']['id']}", json={"name": "Renamed"}, headers=AUTH
    )
    assert r.json()["name"] == "Renamed"
    r = await client.patch(f"/api/v1/links/{s['link']['id']}", json={"active": False}, headers=AUTH)
    assert r.json()["active"] is False
    assert (await client.get(f"/c/{s['link']['code']}")).status_code == 404
    r = await client.patch(f"/api/v1/links/{s['link']['id']}", json={"active": "yes"}, headers=AUTH)
    assert r.status_code == 400
    r = await client.patch(
        f"/api/v1/offers/{s['offer']['id']}",
        headers=AUTH,
        json={"payout_amount": "9.99", "approval": "review"},
    )
    assert r.json()["payout_amount"] == "9.99" and r.json()["approval"] == "review"


async def test_sort_oldest_first(client: httpx.AsyncClient) -> None:
    ids = [(await make_offer(client))["offer"]["id"] for _ in range(3)]
    r = await client.get("/api/v1/offers", params={"sort": "id", "limit": 2}, headers=AUTH)
    page = r.json()
    assert [o["id"] for o in page["items"]] == ids[:2]
    r = await client.get(
        "/api/v1/offers",
        headers=AUTH,
        params={"sort": "id", "limit": 2, "cursor": page["next_cursor"]},
    )
    assert [o["id"] for o in r.json()["items"]] == ids[2:]


async def test_openapi_and_docs_are_public_and_cover_the_routes(
    client: httpx.AsyncClient,
) -> None:
    doc = (await client.get("/api/v1/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    assert "/api/v1/conversions/{id}/status" in doc["paths"]
    assert "post" in doc["paths"]["/api/v1/offers/{id}/rules"]
    refs = set(re.findall(r'"\$ref": ?"#/components/schemas/(\w+)"', orjson.dumps(doc).decode()))
    assert refs and refs <= set(doc["components"]["schemas"]), refs - set(
        doc["components"]["schemas"]
    )
    page = await client.get("/api/v1/docs")
    assert page.status_code == 200 and "/api/v1/rates" in page.text
    # every documented path answers something other than "no such route" (401 without token)
    for path, ops in doc["paths"].items():
        for method in ops:
            r = await client.request(method.upper(), re.sub(r"\{\w+\}", "1", path))
            assert r.status_code == 401, (method, path, r.status_code)


async def test_changing_an_offers_currency_restates_its_fixed_payout(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client, payout_type="cpa", payout_amount="10.00")
    oid = s["offer"]["id"]
    r = await client.patch(f"/api/v1/offers/{oid}", json={"currency": "JPY"}, headers=AUTH)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "currency_needs_amount"
    r = await client.post(
        f"/api/v1/offers/{oid}/rules",
        headers=AUTH,
        json={"commissionid": "vip", "payout_type": "cpa", "payout_amount": "3.50"},
    )
    r = await client.patch(
        f"/api/v1/offers/{oid}", headers=AUTH, json={"currency": "JPY", "payout_amount": "1500"}
    )
    assert (r.json()["currency"], r.json()["payout_amount"]) == ("JPY", "1500")
    assert (await convert(client, s, "J1"))["commission"] == "1500"
    vip = await convert(client, s, "J2", commissionid="vip")  # the rule keeps its own currency
    assert (vip["commission"], vip["currency"]) == ("3.50", "USD")


async def test_totals_payable_leaves_out_test_conversions(client: httpx.AsyncClient) -> None:
    s = await make_offer(client, destination_url="http://127.0.0.1:9/")
    r = await client.post(f"/api/v1/offers/{s['offer']['id']}/integration-tests", headers=AUTH)
    test = r.json()
    r = await client.get(
        "/postback",
        params={"refid": test["refid"], "orderamount": "100", "ordernumber": "TEST-ORDER"},
    )
    assert r.json()["status"] == "accepted"
    [conv] = (await client.get("/api/v1/conversions", headers=AUTH)).json()["items"]
    assert conv["is_test"] is True and conv["status"] == "approved"
    totals = (await client.get("/api/v1/conversions/totals", headers=AUTH)).json()
    # only test traffic so far: nothing is payable (reports and payouts leave test out)
    assert totals["payable"] == "0.00", totals


async def test_an_id_too_large_for_the_database_is_a_4xx_not_a_500(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client)
    huge = 2**63  # one past the largest 64-bit integer
    for path, body in (
        ("/api/v1/links", {"offer_id": huge, "affiliate_id": s["affiliate"]["id"]}),
        ("/api/v1/offers", {**s["offer"], "advertiser_id": huge}),
        (
            f"/api/v1/offers/{s['offer']['id']}/rules",
            {"affiliate_id": huge, "payout_type": "cpa", "payout_amount": "1"},
        ),
    ):
        r = await client.post(path, json=body, headers=AUTH)
        assert 400 <= r.status_code < 500, (path, r.status_code, r.text)


async def test_require_token_takes_a_boolean_when_an_advertiser_is_made(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post(
        "/api/v1/advertisers", json={"name": "Shop", "require_token": "false"}, headers=AUTH
    )
    # as PATCH does: the text "false" was read as true, and every postback refused
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "invalid_bool", r.text
    made = await client.post(
        "/api/v1/advertisers", json={"name": "Shop", "require_token": True}, headers=AUTH
    )
    assert made.status_code == 201 and made.json()["require_token"] is True


async def test_an_offer_is_archived_by_delete_not_by_its_status(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client)
    oid = s["offer"]["id"]
    r = await client.patch(f"/api/v1/offers/{oid}", json={"status": "archived"}, headers=AUTH)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "status", r.text
    paused = await client.patch(f"/api/v1/offers/{oid}", json={"status": "paused"}, headers=AUTH)
    assert paused.status_code == 200 and paused.json()["status"] == "paused"


async def test_a_rate_too_large_to_value_with_is_a_400_not_a_500(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client)
    body = await convert(client, s, "EUR-BIG", currency="EUR")  # waits for a EUR rate
    assert [w["code"] for w in body["warnings"]] == ["missing_rate"]
    r = await client.post(
        "/api/v1/rates",
        headers={**AUTH, "content-type": "text/csv"},
        content=b"2000-01-01,EUR,1e30\n",  # a typo: parse_rates takes any positive Decimal
    )
    assert r.status_code == 400, r.text


async def test_patching_the_same_currency_in_lower_case_is_not_a_currency_change(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client, payout_type="cpa", payout_amount="10.00")  # USD
    r = await client.patch(
        f"/api/v1/offers/{s['offer']['id']}",
        json={"currency": "usd", "name": "Renamed"},
        headers=AUTH,
    )
    # `usd` is accepted as USD everywhere else (create, postbacks)
    assert r.status_code == 200, r.text


async def test_a_rate_that_values_an_amount_beyond_storage_leaves_it_unvalued(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client)
    huge = await convert(client, s, "EUR-HUGE", orderamount="9000000000", currency="EUR")
    small = await convert(client, s, "EUR-SMALL", orderamount="2.00", currency="EUR")
    r = await client.post(
        "/api/v1/rates",
        headers={**AUTH, "content-type": "text/csv"},
        content=b"2000-01-01,EUR,900000000\n",
    )
    assert r.status_code == 200, r.text
    got = {
        c["id"]: c["base_amount"]
        for c in (await client.get("/api/v1/conversions", headers=AUTH)).json()["items"]
    }
    assert got[huge["conversion_id"]] is None  # 8.1e18: kept waiting for a rate, not a 500
    assert got[small["conversion_id"]] == "1800000000.00"


async def test_a_rules_commissionid_is_read_trimmed_as_the_postbacks(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client, payout_type="cps", payout_percent="2")
    body = {"commissionid": " vip ", "payout_type": "cps", "payout_percent": "10"}
    r = await client.post(f"/api/v1/offers/{s['offer']['id']}/rules", json=body, headers=AUTH)
    assert r.status_code == 201 and r.json()["commissionid"] == "vip", r.text
    assert (await convert(client, s, "V1", commissionid="vip"))["commission"] == "10.00"


async def test_a_flag_filter_is_a_flags_name(client: httpx.AsyncClient) -> None:
    s = await make_offer(client)
    await click(client, s["link"])
    # a mistyped name (`over_cpa` for `over_cap`) found nothing, as if none were flagged
    for wildcard in ("%", "bot%", "%bot", "over_cpa", "Bot"):
        for table in ("clicks", "conversions"):
            r = await client.get(f"/api/v1/{table}", params={"flag": wildcard}, headers=AUTH)
            [error] = r.json()["errors"]
            assert r.status_code == 400 and error["field"] == "flag", r.text
            assert "over_cap" in error["message"] and "missing_rate" in error["message"]
    for flag in ("bot", "missing_rate", "screening_failed", "unknown_commissionid"):
        r = await client.get("/api/v1/conversions", params={"flag": flag}, headers=AUTH)
        assert r.status_code == 200 and r.json()["items"] == []


async def test_an_offers_rules_page_like_every_list(client: httpx.AsyncClient) -> None:
    s = await make_offer(client)
    path = f"/api/v1/offers/{s['offer']['id']}/rules"
    made = []
    for i in range(5):
        body = {"commissionid": f"c{i}", "payout_type": "cpa", "payout_amount": "1"}
        made.append((await client.post(path, json=body, headers=AUTH)).json()["id"])
    archived = (await client.delete(f"/api/v1/rules/{made[1]}", headers=AUTH)).json()["id"]
    page = (await client.get(path, params={"limit": 2}, headers=AUTH)).json()
    seen = [r["id"] for r in page["items"]]
    assert len(seen) == 2 and page["next_cursor"]
    while page["next_cursor"]:
        params = {"limit": 2, "cursor": page["next_cursor"]}
        page = (await client.get(path, params=params, headers=AUTH)).json()
        seen += [r["id"] for r in page["items"]]
    assert seen == [m for m in made[::-1] if m != archived]  # the rules in force, newest first
    r = await client.get(path, params={"archived": "true"}, headers=AUTH)
    assert [x["id"] for x in r.json()["items"]] == [archived]
    r = await client.get(path, params={"commissionid": "c3"}, headers=AUTH)
    assert [x["id"] for x in r.json()["items"]] == [made[3]]
    r = await client.get(path, params={"limit": 0}, headers=AUTH)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "invalid_limit"


async def test_an_export_writes_at_most_its_limit(client: httpx.AsyncClient) -> None:
    s = await make_offer(client)
    for n in ("L1", "L2", "L3"):
        await convert(client, s, n)

    async def exported(**params: Any) -> list[str]:
        r = await client.get("/api/v1/conversions/export", params=params, headers=AUTH)
        assert r.status_code == 200, r.text
        return [x["ordernumber"] for x in csv.DictReader(io.StringIO(r.text))]

    assert await exported() == ["L3", "L2", "L1"]
    assert await exported(limit=2) == ["L3", "L2"]  # newest first, as the list
    assert await exported(limit=1, sort="id") == ["L1"]
    assert await exported(limit=5000) == ["L3", "L2", "L1"]  # not a page size: no 1000 cap
    r = await client.get("/api/v1/clicks/export", params={"limit": 1}, headers=AUTH)
    assert len(list(csv.DictReader(io.StringIO(r.text)))) == 1
    for bad in ("0", "-1", "x", "1.5"):
        r = await client.get("/api/v1/conversions/export", params={"limit": bad}, headers=AUTH)
        assert r.status_code == 400 and r.json()["errors"][0]["code"] == "invalid_limit", bad


async def test_a_base_currency_other_than_the_stored_amounts_is_refused_at_start(
    client: httpx.AsyncClient, store: Store
) -> None:
    # nothing valued yet: another base is as good
    euro = Settings(database_url="unused", admin_token="x", base_currency="EUR")
    first = ClickbackApp(euro, store)
    await first.startup()
    await first.shutdown()
    s = await make_offer(client)  # the client's app counts in USD
    body = await convert(client, s, "BASE-1", currency="USD")
    assert body["status"] == "accepted"
    other = ClickbackApp(euro, store)
    with pytest.raises(ConfigError) as refused:
        await other.startup()
    assert refused.value.code == "base_currency_changed"
    assert "CLICKBACK_BASE_CURRENCY=USD" in refused.value.message
    assert await store.get_meta("base_currency") == "USD"
    same = ClickbackApp(Settings(database_url="unused", admin_token="x"), store)
    await same.startup()
    await same.shutdown()


async def test_a_payout_or_revenue_too_large_to_store_is_refused_when_written(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client)  # USD, as the base
    oid = s["offer"]["id"]
    url = f"/api/v1/offers/{oid}"
    for body, field in [
        ({"payout_amount": "99999999999999.99"}, "payout_amount"),
        ({"payout_amount": 100000000000000}, "payout_amount"),
        ({"revenue_type": "cpa", "revenue_amount": "99999999999999.99"}, "revenue_amount"),
        # more digits than any amount has: too large, not a bad format
        ({"payout_amount": "99999999999999999999"}, "payout_amount"),
        ({"payout_amount": "99999999999999999999.5"}, "payout_amount"),
    ]:
        r = await client.patch(url, json=body, headers=AUTH)
        assert r.status_code == 400, (body, r.text)
        [error] = r.json()["errors"]
        assert (error["field"], error["code"]) == (field, "invalid_amount"), body
        assert "too large to store: at most 10000000000000.00 USD" in error["message"], body
    for body, code, says in [
        ({"payout_amount": "1." + "0" * 18 + "1"}, "invalid_amount", "more decimals than USD"),
        ({"payout_type": "cps", "payout_percent": "1." + "0" * 19}, "invalid_percent", "at most 8"),
        ({"payout_type": "cps", "payout_percent": "1" * 20}, "invalid_percent", "at most 100"),
        ({"payout_type": "cps", "payout_percent": "1%"}, "invalid_amount", "non-negative decimal"),
        ({"payout_amount": "12,50"}, "invalid_amount", "non-negative decimal given as a string"),
    ]:
        r = await client.patch(url, json=body, headers=AUTH)
        [error] = r.json()["errors"]
        assert r.status_code == 400 and error["code"] == code and says in error["message"], r.text
    r = await client.patch(url, json={"advertiser_id": 999}, headers=AUTH)
    [error] = r.json()["errors"]
    assert r.status_code == 400 and error["code"] == "unknown_field", r.text
    assert "is given at creation and cannot be changed" in error["message"]
    rule = {"commissionid": "big", "payout_type": "cpa", "payout_amount": "99999999999999.99"}
    r = await client.post(f"/api/v1/offers/{oid}/rules", json=rule, headers=AUTH)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "payout_amount", r.text
    # the largest payout taken is one a postback can still be paid
    r = await client.patch(url, json={"payout_amount": "10000000000000.00"}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert (await convert(client, s, "BIG-1"))["commission"] == "10000000000000.00"


async def test_a_payout_too_large_in_the_base_currency_at_todays_rate_is_refused(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client, currency="EUR", payout_amount="1.00")
    r = await client.post(
        "/api/v1/rates", headers={**AUTH, "content-type": "text/csv"}, content=b"2000-01-01,EUR,2\n"
    )
    assert r.status_code == 200, r.text
    oid = s["offer"]["id"]
    big = {"payout_amount": "6000000000000.00"}  # 1.2e15 cents of USD, the base
    r = await client.patch(f"/api/v1/offers/{oid}", json=big, headers=AUTH)
    assert r.status_code == 400, r.text
    [error] = r.json()["errors"]
    assert (error["field"], error["code"]) == ("payout_amount", "invalid_amount")
    assert "USD" in error["message"]
    rule = {"commissionid": "big", "payout_type": "cpa", **big}
    r = await client.post(f"/api/v1/offers/{oid}/rules", json=rule, headers=AUTH)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "payout_amount", r.text
    r = await client.patch(
        f"/api/v1/offers/{oid}", json={"payout_amount": "4000000000000"}, headers=AUTH
    )
    assert r.status_code == 200, r.text
    assert (await convert(client, s, "EUR-OK"))["commission"] == "4000000000000.00"
