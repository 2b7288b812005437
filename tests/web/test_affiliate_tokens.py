"""Affiliate tokens: an affiliate's own read-only view of the API (its clicks,
conversions, links, deliveries and reports, without the network's revenue), on both
engines."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from typing import Any

import httpx

from tests.conftest import AUTH, click, make_offer
from tests.web.test_ui import login


async def two_affiliates(client: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two affiliates, each on an offer with revenue terms: A with two clicks and one
    conversion, B with one click and one conversion."""
    a = await make_offer(client, revenue_type="cpa", revenue_amount="7.25")
    b = await make_offer(client, revenue_type="cpa", revenue_amount="9.00")
    for s, order in ((a, "A1"), (a, None), (b, "B1")):
        refid = await click(client, s["link"])
        if order:
            r = await client.get(f"/postback?refid={refid}&orderamount=10&ordernumber={order}")
            assert r.json()["status"] == "accepted", r.text
    return a, b


async def affiliate_token(client: httpx.AsyncClient, affiliate_id: int) -> dict[str, str]:
    r = await client.post(
        "/api/v1/tokens",
        json={"name": "partner", "role": "affiliate", "affiliate_id": affiliate_id},
        headers=AUTH,
    )
    assert r.status_code == 201, r.text
    assert r.json()["role"] == "affiliate" and r.json()["affiliate_id"] == affiliate_id
    return {"Authorization": f"Bearer {r.json()['token']}"}


def code(r: httpx.Response) -> str:
    return str(r.json()["errors"][0]["code"])


async def test_an_affiliate_token_sees_only_its_own_clicks_conversions_and_links(
    client: httpx.AsyncClient,
) -> None:
    a, _ = await two_affiliates(client)
    mine = a["affiliate"]["id"]
    tok = await affiliate_token(client, mine)
    clicks = (await client.get("/api/v1/clicks", headers=tok)).json()["items"]
    assert len(clicks) == 2 and {c["affiliate_id"] for c in clicks} == {mine}
    convs = (await client.get("/api/v1/conversions", headers=tok)).json()["items"]
    assert [c["ordernumber"] for c in convs] == ["A1"]
    links = (await client.get("/api/v1/links", headers=tok)).json()["items"]
    assert [x["id"] for x in links] == [a["link"]["id"]]
    r = await client.get(f"/api/v1/links/{a['link']['id']}", headers=tok)
    assert r.status_code == 200 and r.json()["code"] == a["link"]["code"]
    # its own id as a filter is the same view; the admin sees both
    r = await client.get("/api/v1/conversions", params={"affiliate_id": mine}, headers=tok)
    assert [c["ordernumber"] for c in r.json()["items"]] == ["A1"]
    every = (await client.get("/api/v1/conversions", headers=AUTH)).json()["items"]
    assert sorted(c["ordernumber"] for c in every) == ["A1", "B1"]
    for table in ("conversions", "clicks"):
        r = await client.get(f"/api/v1/{table}/export", headers=tok)
        assert r.status_code == 200, r.text
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert rows and {row["affiliate_id"] for row in rows} == {str(mine)}
    rows = list(
        csv.DictReader(
            io.StringIO((await client.get("/api/v1/conversions/export", headers=tok)).text)
        )
    )
    assert [row["ordernumber"] for row in rows] == ["A1"]


async def test_an_affiliate_token_may_not_look_at_another_affiliates_rows(
    client: httpx.AsyncClient,
) -> None:
    a, b = await two_affiliates(client)
    tok = await affiliate_token(client, a["affiliate"]["id"])
    other = b["affiliate"]["id"]
    for path in ("clicks", "conversions", "links", "clicks/export", "conversions/export"):
        r = await client.get(f"/api/v1/{path}", params={"affiliate_id": other}, headers=tok)
        assert r.status_code == 403 and code(r) == "affiliate_token", (path, r.text)
    for params in ({"affiliate": str(other)}, {"affiliate": f"{a['affiliate']['id']},{other}"}):
        for path in ("reports", "reports/export"):
            r = await client.get(f"/api/v1/{path}", params=params, headers=tok)
            assert r.status_code == 403 and code(r) == "affiliate_token", (path, r.text)
    # an id of more digits than a number is read from is another's too, not a 500; its
    # own id with leading zeros is its own
    mine = a["affiliate"]["id"]
    for path in ("reports", "reports/export"):
        r = await client.get(f"/api/v1/{path}", params={"affiliate": "1" * 5000}, headers=tok)
        assert r.status_code == 403 and code(r) == "affiliate_token", (path, r.text)
        r = await client.get(f"/api/v1/{path}", params={"affiliate": f"000{mine}"}, headers=tok)
        assert r.status_code == 200, (path, r.text)
    # another's link is not there, as a link that does not exist
    theirs = await client.get(f"/api/v1/links/{b['link']['id']}", headers=tok)
    unknown = await client.get("/api/v1/links/999999", headers=tok)
    assert theirs.status_code == unknown.status_code == 404
    assert code(theirs) == code(unknown) == "not_found"
    assert theirs.json()["errors"][0]["message"] == f"link {b['link']['id']} does not exist"


async def test_an_affiliate_token_may_not_write_nor_read_the_rest(
    client: httpx.AsyncClient,
) -> None:
    a, _ = await two_affiliates(client)
    tok = await affiliate_token(client, a["affiliate"]["id"])
    conv = (await client.get("/api/v1/conversions", headers=AUTH)).json()["items"][0]
    link, offer = a["link"]["id"], a["offer"]["id"]
    refused = [
        ("GET", "/api/v1/offers", None),
        ("GET", f"/api/v1/offers/{offer}", None),
        ("GET", "/api/v1/advertisers", None),
        ("GET", "/api/v1/affiliates", None),
        ("GET", f"/api/v1/affiliates/{a['affiliate']['id']}", None),
        ("GET", "/api/v1/tokens", None),
        ("GET", "/api/v1/rates", None),
        ("GET", "/api/v1/postbacks", None),
        ("GET", "/api/v1/conversions/totals", None),
        ("GET", f"/api/v1/conversions/{conv['id']}", None),
        ("GET", f"/api/v1/offers/{offer}/rules", None),
        ("POST", "/api/v1/links", {"offer_id": offer, "affiliate_id": a["affiliate"]["id"]}),
        ("PATCH", f"/api/v1/links/{link}", {"active": False}),
        ("DELETE", f"/api/v1/links/{link}", None),
        ("POST", "/api/v1/tokens", {"name": "more", "role": "admin"}),
        ("POST", f"/api/v1/conversions/{conv['id']}/status", {"status": "rejected"}),
    ]
    for method, path, body in refused:
        r = await client.request(method, path, json=body, headers=tok)
        assert r.status_code == 403 and code(r) == "affiliate_token", (method, path, r.text)
    assert (await client.get(f"/api/v1/links/{link}", headers=AUTH)).json()["active"] is True


async def test_an_affiliate_report_is_its_own_and_leaves_out_revenue_and_profit(
    client: httpx.AsyncClient,
) -> None:
    a, _ = await two_affiliates(client)
    mine = a["affiliate"]["id"]
    tok = await affiliate_token(client, mine)
    params = {"group_by": "affiliate"}
    deadline = time.monotonic() + 15
    while True:  # the running rollup job folds the traffic in
        admin = (await client.get("/api/v1/reports", params=params, headers=AUTH)).json()
        if admin["totals"]["clicks"] == 3 and admin["totals"]["conversions"] == 2:
            break
        assert time.monotonic() < deadline, admin
        await asyncio.sleep(0.2)
    assert admin["totals"]["revenue"] == "16.25"  # the network's view has it
    r = await client.get("/api/v1/reports", params=params, headers=tok)
    assert r.status_code == 200, r.text
    report = r.json()
    [row] = report["rows"]
    assert row["affiliate"] == mine and (row["clicks"], row["conversions"]) == (2, 1)
    assert row["commission"] == "5.00" and row["payable"] == "5.00"
    for shown in (row, report["totals"]):
        assert "revenue" not in shown and "profit" not in shown
    assert report["totals"]["clicks"] == 2
    r = await client.get("/api/v1/reports", params={"affiliate": str(mine)}, headers=tok)
    assert r.status_code == 200 and r.json()["totals"]["conversions"] == 1
    # which offer ids exist is the network's: the note naming a missing one is not shown
    absent = {"offer": "9999"}
    r = await client.get("/api/v1/reports", params=absent, headers=AUTH)
    assert "no offer has id 9999: nothing matches it" in r.json()["notes"]
    r = await client.get("/api/v1/reports", params=absent, headers=tok)
    assert r.status_code == 200 and not any("9999" in n for n in r.json()["notes"]), r.text
    for sort in ("revenue", "-profit"):
        r = await client.get("/api/v1/reports", params={"sort": sort}, headers=tok)
        assert r.status_code == 400 and code(r) == "invalid_sort", r.text
    # who is behind an offer is the network's: no report by advertiser, nor filtered by one
    advertiser = str(a["advertiser"]["id"])
    for asked in ({"group_by": "offer,advertiser"}, {"advertiser": advertiser}):
        for path in ("/api/v1/reports", "/api/v1/reports/export"):
            r = await client.get(path, params=asked, headers=tok)
            assert r.status_code == 403 and code(r) == "affiliate_token", (asked, r.text)
    r = await client.get("/api/v1/reports", params={"group_by": "advertiser"}, headers=AUTH)
    assert r.status_code == 200  # the network's view has them
    r = await client.get("/api/v1/reports/export", params=params, headers=tok)
    assert r.status_code == 200, r.text
    [line] = list(csv.DictReader(io.StringIO(r.text)))
    assert line["affiliate"] == str(mine) and line["clicks"] == "2"
    assert "revenue" not in line and "profit" not in line and line["commission"] == "5.00"
    r = await client.get("/api/v1/reports/export", params=params, headers=AUTH)
    assert "revenue" in r.text.splitlines()[0].split(",")


async def test_an_affiliate_token_is_made_for_an_affiliate_that_exists(
    client: httpx.AsyncClient,
) -> None:
    a, _ = await two_affiliates(client)
    mine = a["affiliate"]["id"]
    tokens = "/api/v1/tokens"
    r = await client.post(tokens, json={"role": "affiliate"}, headers=AUTH)
    assert r.status_code == 400 and code(r) == "affiliate_required", r.text
    assert r.json()["errors"][0]["field"] == "affiliate_id"
    for body, field in (({"name": "n" * 300}, "name"), ({"role": "root"}, "role")):
        r = await client.post(tokens, json=body, headers=AUTH)
        assert r.status_code == 400 and r.json()["errors"][0]["field"] == field, r.text
    for role in ("read", "admin"):
        r = await client.post(tokens, json={"role": role, "affiliate_id": mine}, headers=AUTH)
        assert r.status_code == 400 and code(r) == "affiliate_not_allowed", r.text
    r = await client.post(tokens, json={"role": "affiliate", "affiliate_id": 999}, headers=AUTH)
    unknown_link = await client.post(
        "/api/v1/links", json={"offer_id": a["offer"]["id"], "affiliate_id": 999}, headers=AUTH
    )
    assert r.status_code == unknown_link.status_code == 404  # as elsewhere in the API
    assert r.json()["errors"] == unknown_link.json()["errors"]
    r = await client.post(tokens, json={"role": "affiliate", "affiliate_id": "x"}, headers=AUTH)
    assert r.status_code == 400 and code(r) == "invalid_id"
    await affiliate_token(client, mine)
    listed = (await client.get(tokens, headers=AUTH)).json()["items"]
    assert [(t["role"], t["affiliate_id"]) for t in listed] == [("affiliate", mine)]


async def test_the_dashboard_refuses_an_affiliate_token(client: httpx.AsyncClient) -> None:
    a, _ = await two_affiliates(client)
    tok = await affiliate_token(client, a["affiliate"]["id"])
    r = await login(client, tok["Authorization"].removeprefix("Bearer "))
    assert r.status_code == 303 and r.headers["location"] == "/ui/login?failed=affiliate"
    assert not any(c.startswith("clickback_session=") for c in r.headers.get_list("set-cookie"))
    page = await client.get("/ui/login?failed=affiliate")
    assert "affiliate" in page.text and "operator" in page.text


async def test_the_openapi_document_marks_what_an_affiliate_token_may_call(
    client: httpx.AsyncClient,
) -> None:
    doc = (await client.get("/api/v1/openapi.json")).json()
    marked = {
        (method.upper(), path)
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if op.get("x-affiliate-token")
    }
    assert marked == {
        ("GET", f"/api/v1/{path}")
        for path in (
            "reports",
            "reports/export",
            "conversions",
            "conversions/export",
            "clicks",
            "clicks/export",
            "links",
            "links/{id}",
            "deliveries",
            "deliveries/{id}",
        )
    }
    assert "affiliate_token" in doc["info"]["description"]
    assert "affiliate_id" in doc["components"]["schemas"]["TokenCreate"]["properties"]


async def test_an_archived_affiliates_token_is_refused_and_none_is_made_for_it(
    client: httpx.AsyncClient,
) -> None:
    a, _ = await two_affiliates(client)
    mine = a["affiliate"]["id"]
    tok = await affiliate_token(client, mine)
    assert (await client.get("/api/v1/clicks", headers=tok)).status_code == 200
    r = await client.delete(f"/api/v1/affiliates/{mine}", headers=AUTH)
    assert r.status_code in (200, 204), r.text
    r = await client.get("/api/v1/clicks", headers=tok)
    assert r.status_code == 401 and code(r) == "token_invalid", r.text
    assert "archived" in r.json()["errors"][0]["message"]
    r = await client.post(
        "/api/v1/tokens", json={"role": "affiliate", "affiliate_id": mine}, headers=AUTH
    )
    assert r.status_code == 409 and code(r) == "archived_affiliate", r.text


async def test_an_affiliate_token_is_not_shown_nor_filters_by_the_advertiser(
    client: httpx.AsyncClient,
) -> None:
    """As in its reports: networks keep who is behind an offer from their affiliates."""
    a, _ = await two_affiliates(client)
    tok = await affiliate_token(client, a["affiliate"]["id"])
    [conv] = (await client.get("/api/v1/conversions", headers=tok)).json()["items"]
    assert conv["ordernumber"] == "A1" and "advertiser_id" not in conv
    r = await client.get("/api/v1/conversions/export", headers=tok)
    [row] = list(csv.DictReader(io.StringIO(r.text)))
    assert row["ordernumber"] == "A1" and "advertiser_id" not in row
    for path in ("conversions", "conversions/export"):
        params = {"advertiser_id": a["advertiser"]["id"]}
        r = await client.get(f"/api/v1/{path}", params=params, headers=tok)
        assert r.status_code == 403 and code(r) == "affiliate_token", (path, r.text)
    # the network's own tokens see it
    [admin_view] = (
        await client.get("/api/v1/conversions", params={"ordernumber": "A1"}, headers=AUTH)
    ).json()["items"]
    assert admin_view["advertiser_id"] == a["advertiser"]["id"]
