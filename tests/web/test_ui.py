"""The dashboard's login, session cookie, CSRF protection and roles, through the real app."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, unquote_plus, urlsplit

import httpx
import orjson

from clickback.domain.ports import Store
from clickback.domain.rollup import RollupJob
from clickback.domain.timefmt import from_datetime
from tests.conftest import ADMIN, AUTH, click, make_offer, status
from tests.reports_world import UAS, build_world


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:300]
    return found.group(1)


async def login(client: httpx.AsyncClient, token: str) -> httpx.Response:
    form = await client.get("/ui/login")
    return await client.post(
        "/ui/login", data={"token": token, "csrf": csrf_of(form.text), "next": "/ui/conversions"}
    )


async def test_pages_need_a_login_and_the_cookie_is_locked_down(client: httpx.AsyncClient) -> None:
    r = await client.get("/ui/reports")
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")
    r = await client.get("/ui/conversions?status=pending&offer_id=1")  # a bookmarked list
    asked = "%2Fui%2Fconversions%3Fstatus%3Dpending%26offer_id%3D1"
    assert r.headers["location"] == f"/ui/login?next={asked}"
    r = await client.post("/ui/login", data={"token": ADMIN, "csrf": "forged"})
    assert r.headers["location"] == "/ui/login?failed=expired"
    assert (await login(client, "not-a-token")).headers["location"] == "/ui/login?failed=token"
    r = await login(client, ADMIN)
    assert r.status_code == 303 and r.headers["location"] == "/ui/conversions"
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("clickback_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert ADMIN not in cookie
    page = await client.get("/ui/")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for path in ("/ui/reports", "/ui/conversions", "/ui/postbacks", "/ui/offers"):
        assert (await client.get(path)).status_code == 200, path
    # what is not there is said in the dashboard's frame, not as the API's JSON
    for path, said in (
        ("/ui/conversions/12345", "conversion 12345 does not exist"),
        ("/ui/no-such-page", "there is no page /ui/no-such-page"),
    ):
        r = await client.get(path)
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html"), path
        assert said in r.text and 'href="/ui/reports"' in r.text, r.text
    r = await client.get("/ui/logout")  # a form's address, followed as a link
    assert r.status_code == 405 and "takes a form sent from the dashboard" in r.text, r.text
    sealed = client.cookies["clickback_session"]
    client.cookies.clear()
    client.cookies.set("clickback_session", sealed[:-2] + ("AA" if sealed[-2:] != "AA" else "BB"))
    assert (await client.get("/ui/")).status_code == 303  # a cookie altered is no session


async def test_a_login_form_too_large_is_not_read_past_its_limit(
    client: httpx.AsyncClient,
) -> None:
    """The login form is posted before any session: a body past the form's limit is
    refused having read no more than that (it was read whole into memory first: a few
    dozen 60 MB posts took a worker to about 1 GB), sent with its length or without."""
    sent: list[int] = []

    async def huge() -> AsyncIterator[bytes]:
        for _ in range(64):
            sent.append(1)
            yield b"token=" + b"x" * (1 << 20)

    form = {"content-type": "application/x-www-form-urlencoded"}
    r = await client.post("/ui/login", content=huge(), headers=form)  # chunked: no length
    assert r.status_code == 303 and "failed" in r.headers["location"]
    assert len(sent) <= 2, len(sent)
    declared = {**form, "content-length": str(64 << 20)}
    r = await client.post("/ui/login", content=b"token=x", headers=declared)
    assert r.status_code == 303 and "failed" in r.headers["location"]


async def test_changes_need_the_csrf_value_and_an_admin(client: httpx.AsyncClient) -> None:
    s = await make_offer(client, approval="review")
    # the affiliate hears of approvals: a decision in the dashboard queues it too
    r = await client.patch(
        f"/api/v1/affiliates/{s['affiliate']['id']}",
        json={"postback_url": "https://aff.example/pb?e={event}", "postback_events": ["approved"]},
        headers=AUTH,
    )
    assert r.status_code == 200, r.text
    refid = await click(client, s["link"])
    r = await client.get(
        "/postback", params={"refid": refid, "orderamount": "5", "ordernumber": "1"}
    )
    cid = r.json()["conversion_id"]
    token = (await client.post("/api/v1/tokens", json={"role": "read"}, headers=AUTH)).json()
    await login(client, token["token"])
    page = await client.get(f"/ui/conversions/{cid}")
    assert page.status_code == 200 and "to-approved" not in page.text
    body = {"csrf": csrf_of(page.text), "status": "approved", "reason": "ok"}
    r = await client.post(f"/ui/conversions/{cid}/status", data=body)
    assert r.status_code == 303 and "error=" in r.headers["location"]
    client.cookies.clear()
    await login(client, ADMIN)
    page = await client.get(f"/ui/conversions/{cid}")
    body["csrf"] = "wrong"
    r = await client.post(f"/ui/conversions/{cid}/status", data=body)
    assert r.status_code == 403 and "this form is stale" in r.text, r.text
    assert r.headers["content-type"].startswith("text/html")
    body["csrf"] = csrf_of(page.text)
    r = await client.post(f"/ui/conversions/{cid}/status", data=body)
    assert r.headers["location"] == f"/ui/conversions/{cid}?done=approved"
    detail = (await client.get(f"/api/v1/conversions/{cid}", headers=AUTH)).json()
    assert detail["status"] == "approved" and detail["history"][0]["actor"] == "ui:admin_token"
    deliveries = (await client.get("/api/v1/deliveries", headers=AUTH)).json()["items"]
    assert [(d["conversion_id"], d["event"]) for d in deliveries] == [(cid, "approved")]
    # already approved: said, not a crash, on the page it came from, whatever origin the
    # browser saw it at (a public https URL in front of the tracker)
    page_url = f"https://public.example/ui/conversions/{cid}?from=list"
    r = await client.post(f"/ui/conversions/{cid}/status", data=body, headers={"referer": page_url})
    assert r.headers["location"].startswith(f"/ui/conversions/{cid}?error="), r.headers
    # a rejected conversion's page offers to approve it (a rejection taken back), alone
    refid = await click(client, s["link"])
    r = await client.get(
        "/postback", params={"refid": refid, "orderamount": "5", "ordernumber": "2"}
    )
    rejected = r.json()["conversion_id"]
    assert (await status(client, rejected, "rejected", "advertiser_rejected")).status_code == 200
    page = await client.get(f"/ui/conversions/{rejected}")
    assert 'id="to-approved"' in page.text and 'id="to-rejected"' not in page.text
    assert 'id="to-reversed"' not in page.text


async def test_revoking_the_token_ends_its_sessions(client: httpx.AsyncClient) -> None:
    made = (await client.post("/api/v1/tokens", json={"role": "admin"}, headers=AUTH)).json()
    await login(client, made["token"])
    assert (await client.get("/ui/offers")).status_code == 200
    await client.delete(f"/api/v1/tokens/{made['id']}", headers=AUTH)
    assert (await client.get("/ui/offers")).status_code == 303


async def test_logging_out_ends_the_session_for_a_copy_of_its_cookie(
    client: httpx.AsyncClient,
) -> None:
    await login(client, ADMIN)
    page = await client.get("/ui/")
    assert page.status_code == 200
    copied = client.cookies["clickback_session"]
    await login(client, ADMIN)  # another session of the same token, elsewhere
    other = client.cookies["clickback_session"]
    client.cookies.clear()
    client.cookies.set("clickback_session", copied, path="/ui")
    r = await client.post("/ui/logout", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    client.cookies.clear()
    client.cookies.set("clickback_session", copied, path="/ui")  # the cookie replayed
    r = await client.get("/ui/offers")
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")
    r = await client.post("/ui/logout", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 401 and "log in again" in r.text, r.text
    assert 'href="/ui/login"' in r.text, r.text
    client.cookies.clear()
    client.cookies.set("clickback_session", other, path="/ui")
    assert (await client.get("/ui/offers")).status_code == 200  # only that session ended


async def test_a_read_session_sees_the_postback_url_without_the_advertisers_token(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(
        client,
        destination_url="http://127.0.0.1:9/",
        advertiser={"require_token": True, "postback_token": "s3cret"},
    )
    oid = s["offer"]["id"]
    await client.post(f"/api/v1/offers/{oid}/integration-tests", headers=AUTH)
    token = (await client.post("/api/v1/tokens", json={"role": "read"}, headers=AUTH)).json()
    await login(client, token["token"])
    page = await client.get(f"/ui/offers/{oid}")
    assert page.status_code == 200 and "&amp;token={token}" in page.text
    assert "s3cret" not in page.text
    client.cookies.clear()
    await login(client, ADMIN)
    page = await client.get(f"/ui/offers/{oid}")
    assert "&amp;token=s3cret" in page.text and "must be signed" not in page.text
    # signatures required: the page says so, and how to sign
    body = {"signing_secret": "K", "require_signature": True}
    await client.patch(f"/api/v1/advertisers/{s['advertiser']['id']}", json=body, headers=AUTH)
    assert "must be signed" in (await client.get(f"/ui/offers/{oid}")).text


async def test_every_offer_can_be_reached_from_the_offers_page(client: httpx.AsyncClient) -> None:
    """With more offers than one page holds, the oldest are still listed or paged to."""
    s = await make_offer(client)
    first = s["offer"]["id"]
    body = {
        "advertiser_id": s["advertiser"]["id"],
        "name": "More",
        "payout_type": "cpa",
        "payout_amount": "1.00",
        "destination_url": "https://shop.example/land",
    }
    for _ in range(200):
        assert (await client.post("/api/v1/offers", json=body, headers=AUTH)).status_code == 201
    await login(client, ADMIN)
    page = await client.get("/ui/offers")
    assert page.status_code == 200 and f'href="/ui/offers/{first}"' not in page.text
    older = re.search(r'href="\?([^"]+)" id="older"', page.text)
    assert older, page.text[-500:]
    page = await client.get("/ui/offers?" + older.group(1).replace("&amp;", "&"))
    assert page.status_code == 200 and f'href="/ui/offers/{first}"' in page.text


async def test_the_offer_page_shows_where_a_click_goes_while_not_serving(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client, fallback_url="https://shop.example/other-offer")
    plain = await make_offer(client)
    await login(client, ADMIN)
    page = await client.get(f"/ui/offers/{s['offer']['id']}")
    assert page.status_code == 200
    assert re.search(r'id="fallback"><code>https://shop.example/other-offer</code>', page.text)
    page = await client.get(f"/ui/offers/{plain['offer']['id']}")
    assert re.search(r'id="fallback">none: the 404 page', page.text)
    assert 'id="daily-cap">none' in page.text
    assert 'id="cap-redirect">no: clicks are redirected as before' in page.text


async def test_the_offer_page_shows_its_daily_cap_and_what_comes_past_it(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(
        client,
        daily_cap=40,
        fraud_rules={"over_cap": "reject"},
        auto_approve_days=30,
        cap_redirect=True,
    )
    offer_id, affiliate_id = s["offer"]["id"], s["affiliate"]["id"]
    await login(client, ADMIN)
    page = await client.get(f"/ui/offers/{offer_id}")
    assert 'id="daily-cap">40 conversions a UTC day; past it, reject' in page.text
    assert 'id="affiliate-caps">none' in page.text
    # no fallback URL anywhere: the links keep redirecting once capped
    assert 'id="cap-redirect">yes, but there is no fallback URL' in page.text
    fallback = {"fallback_url": "https://shop.example/other"}
    await client.patch(f"/api/v1/offers/{offer_id}", json=fallback, headers=AUTH)
    page = await client.get(f"/ui/offers/{offer_id}")
    assert 'id="cap-redirect">yes: clicks go to the fallback URL' in page.text
    assert 'id="approval">auto; still pending after 30 days (not flagged): approved' in page.text
    cap = {"daily_cap": 6}
    await client.put(f"/api/v1/offers/{offer_id}/caps/{affiliate_id}", json=cap, headers=AUTH)
    page = await client.get(f"/ui/offers/{offer_id}")
    assert f'id="affiliate-caps">affiliate #{affiliate_id}: 6 a day' in page.text
    # what an affiliate is paid but the payout: the rules in force
    assert 'id="rules">none: every affiliate is paid the payout' in page.text
    for body in (
        {"affiliate_id": affiliate_id, "payout_type": "cps", "payout_percent": "12"},
        {"commissionid": "fix", "payout_type": "cpa", "payout_amount": "3.33"},
    ):
        r = await client.post(f"/api/v1/offers/{offer_id}/rules", json=body, headers=AUTH)
        assert r.status_code == 201, r.text
    page = await client.get(f"/ui/offers/{offer_id}")
    assert f"affiliate #{affiliate_id}: cps 12 %" in page.text, page.text
    assert "<code>commissionid=fix</code>: cpa 3.33 USD" in page.text, page.text


async def test_the_postback_ledger_page_says_what_a_duplicate_repeats(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client)
    refid = await click(client, s["link"])
    for amount in ("10", "12"):
        await client.get(f"/postback?refid={refid}&orderamount={amount}&ordernumber=U1")
    await login(client, ADMIN)
    page = (await client.get("/ui/postbacks")).text
    assert "duplicate_ordernumber" in page
    # shown on the page, not only in a code's tooltip
    assert re.search(r">[^<>]*stored orderamount 10\.00 USD, this one 12\.00 USD[^<>]*<", page)


async def test_a_postback_page_shows_what_was_sent_and_why(client: httpx.AsyncClient) -> None:
    """Linked from the ledger: every parameter as sent (a repeated one's values, the
    token hidden from a read session), every error with its message, its replays."""
    s = await make_offer(client, advertiser={"require_token": True, "postback_token": "s3cret"})
    refid = await click(client, s["link"])
    await client.get(
        f"/postback?refid={refid}&OrderAmount=10&ordernumber=V1&sku=A&sku=B&token=s3cret"
    )
    await client.get(f"/postback?refid={refid}&orderamount=10&ordernumber=V2&api_key=s3cret")
    await login(client, ADMIN)
    ledger = (await client.get("/ui/postbacks")).text
    # (the ids from the API: a RefID may hold "V2", and PostgreSQL's ids have gaps)
    pid, other = [
        (await client.get("/api/v1/postbacks", params={"ordernumber": o}, headers=AUTH)).json()[
            "items"
        ][0]["id"]
        for o in ("V1", "V2")
    ]
    assert f'<a href="/ui/postbacks/{pid}">' in ledger, ledger[-500:]
    await client.post(f"/api/v1/postbacks/{pid}/replay", headers=AUTH)
    replay_id = (await client.get("/api/v1/postbacks", headers=AUTH)).json()["items"][0]["id"]
    page = (await client.get(f"/ui/postbacks/{pid}")).text
    for shown in (
        "<code>OrderAmount</code></td><td><code>10</code>",
        "<code>A · B</code>",
        "<code>s3cret</code>",
        "`OrderAmount` was sent, which is not read",
        f'href="/ui/postbacks/{replay_id}"',
    ):
        assert shown in page.replace("&#96;", "`"), shown
    token = (await client.post("/api/v1/tokens", json={"role": "read"}, headers=AUTH)).json()
    client.cookies.clear()
    await login(client, token["token"])
    page = (await client.get(f"/ui/postbacks/{pid}")).text + (
        await client.get(f"/ui/postbacks/{other}")  # V2: the token sent as `api_key`
    ).text
    at = page.find("s3cret")
    assert at < 0, page[at - 300 : at + 50]
    assert "<code>(hidden)</code>" in page
    assert (await client.get("/ui/postbacks/999999")).status_code == 404


async def test_a_report_limit_too_long_for_int_is_a_400_page(client: httpx.AsyncClient) -> None:
    await login(client, ADMIN)
    r = await client.get("/ui/reports.csv", params={"limit": "9" * 5000})
    assert r.status_code == 400 and "limit" in r.text, r.text[:300]
    # the page: shown again without it, the error said above its form
    r = await client.get("/ui/reports", params={"limit": "9" * 5000}, follow_redirects=True)
    assert r.status_code == 200 and "`limit` must be 1 to" in r.text.replace("&#96;", "`")


async def test_the_report_pages_csv_is_the_report_on_the_page(client: httpx.AsyncClient) -> None:
    """With time "(none)" and no dimension the page shows totals alone: so does its CSV
    (it fell back to one row a day)."""
    await login(client, ADMIN)
    for query, header in [
        ("time=", ["clicks"]),
        ("time=&group=country", ["country", "clicks"]),
        ("time=week", ["week", "clicks"]),
        ("", ["day", "clicks"]),
    ]:
        page = await client.get(f"/ui/reports?{query}")
        found = re.search(r'id="csv" href="([^"]+)"', page.text)
        assert found, page.text[-500:]
        r = await client.get(found.group(1).replace("&amp;", "&"))
        assert (
            r.status_code == 200 and r.text.splitlines()[0].split(",")[: len(header)] == header
        ), (
            query,
            r.text[:200],
        )


async def test_the_overview_chart_draws_every_day_its_totals_count(
    client: httpx.AsyncClient, store: Store
) -> None:
    """A click a day for 1001 days: the chart asked for the default 1000 rows, oldest
    first, and drew the last day as 0 while the totals counted it."""
    world = await build_world(store, 7)
    first = datetime(2023, 1, 1, 12, tzinfo=UTC)
    for day in range(1001):
        world.clock.now = from_datetime(first + timedelta(days=day))
        await world.tracker.click(world.links[0]["code"], "", "81.2.69.160", UAS[0], "")
    await RollupJob(store, settle=0).catch_up()
    last = (first + timedelta(days=1000)).date().isoformat()
    assert last == "2025-09-27"
    params = {"from": "2023-01-01", "to": last}
    deadline = time.monotonic() + 20
    while True:  # the app's own rollup job may hold the lease
        r = await client.get("/api/v1/reports", params={**params, "group_by": ""}, headers=AUTH)
        if r.json()["totals"]["clicks"] == 1001:
            break
        assert time.monotonic() < deadline, r.json()["totals"]
        await asyncio.sleep(0.2)
    await login(client, ADMIN)
    page = await client.get("/ui/", params=params)
    found = re.search(r'id="chart-data">([^<]+)<', page.text)
    assert found, page.text[:500]
    chart = orjson.loads(found.group(1))
    assert (len(chart["labels"]), chart["labels"][-1]) == (1001, last)
    assert chart["clicks"] == [1] * 1001


async def test_lists_name_and_keep_filters_of_affiliates_past_the_newest_thousand(
    client: httpx.AsyncClient, store: Store
) -> None:
    """With more than the thousand newest affiliates the filters offer, a conversion of
    an older one still shows its name, and a filter on it stays chosen (it was dropped
    on the next submit, its <option> missing)."""
    s = await make_offer(client)  # its affiliate is the oldest
    refid = await click(client, s["link"])
    await client.get(f"/postback?refid={refid}&orderamount=10&ordernumber=OLD1")
    for n in range(1000):
        await store.create_affiliate(f"Newer {n}")
    await login(client, ADMIN)
    aff = s["affiliate"]["id"]
    page = (await client.get(f"/ui/conversions?affiliate_id={aff}")).text
    assert re.search(rf'<option value="{aff}" selected>Aff #{aff}</option>', page), page[:2000]
    assert re.search(rf"<td>Aff <small>#{aff}</small></td>", page)


async def test_the_deliveries_pages_list_show_and_resend_outbound_postbacks(
    client: httpx.AsyncClient,
) -> None:
    """An affiliate asking why a sale did not reach its tracker: the dashboard lists the
    outbound postbacks by state, shows one with its attempts, and resends it, saying
    why not when it cannot (here: the affiliate's postback is disabled); a read session
    sees them, without the resend."""
    s = await make_offer(client)
    aff = s["affiliate"]["id"]
    r = await client.patch(
        f"/api/v1/affiliates/{aff}",
        json={"postback_url": "https://aff.example/pb?e={event}", "postback_enabled": False},
        headers=AUTH,
    )
    assert r.status_code == 200, r.text
    refid = await click(client, s["link"])
    r = await client.get(
        "/postback", params={"refid": refid, "orderamount": "5", "ordernumber": "D1"}
    )
    cid = r.json()["conversion_id"]
    [d] = (await client.get("/api/v1/deliveries", headers=AUTH)).json()["items"]
    assert d["state"] == "held"
    await login(client, ADMIN)
    listed = await client.get("/ui/deliveries", params={"state": "held", "affiliate_id": aff})
    assert listed.status_code == 200
    assert f'href="/ui/deliveries/{d["id"]}"' in listed.text
    assert f'href="/ui/conversions/{cid}"' in listed.text and ">held<" in listed.text
    conversion = (await client.get(f"/ui/conversions/{cid}")).text
    assert f'href="/ui/deliveries?conversion_id={cid}"' in conversion
    other = await client.get("/ui/deliveries", params={"state": "delivered"})
    assert f'href="/ui/deliveries/{d["id"]}"' not in other.text
    r = await client.get("/ui/deliveries", params={"state": "lost"})
    assert r.status_code == 303 and "error=" in r.headers["location"], r.headers
    page = await client.get(f"/ui/deliveries/{d['id']}")
    assert page.status_code == 200 and 'id="resend"' in page.text and "none yet" in page.text
    url = f"http://t/ui/deliveries/{d['id']}"
    r = await client.post(
        f"/ui/deliveries/{d['id']}/resend",
        data={"csrf": csrf_of(page.text)},
        headers={"referer": url},
    )
    assert r.status_code == 303, r.text
    assert r.headers["location"].startswith(f"/ui/deliveries/{d['id']}?error="), r.headers
    assert "disabled" in unquote_plus(r.headers["location"])
    assert (await client.get("/ui/deliveries/99999")).status_code == 404
    client.cookies.clear()
    token = (await client.post("/api/v1/tokens", json={"role": "read"}, headers=AUTH)).json()
    await login(client, token["token"])
    page = await client.get(f"/ui/deliveries/{d['id']}")
    assert page.status_code == 200 and 'id="resend"' not in page.text


async def test_a_replay_refused_again_is_said_so_with_why_on_the_replays_own_page(
    client: httpx.AsyncClient,
) -> None:
    """A replay from the dashboard that is refused again was said in green as 'replayed
    as N: rejected', with no reason, on the unfiltered ledger."""
    s = await make_offer(client, advertiser={"require_token": True, "postback_token": "s3cret"})
    refid = await click(client, s["link"])
    r = await client.get(f"/postback?refid={refid}&orderamount=3&ordernumber=R1&token=wrong")
    assert r.status_code == 403
    r = await client.get(f"/postback?refid={refid}&orderamount=3&ordernumber=R2&token=s3cret")
    counted = r.json()["conversion_id"]
    [refused, accepted] = [
        (await client.get("/api/v1/postbacks", params={"ordernumber": o}, headers=AUTH)).json()[
            "items"
        ][0]["id"]
        for o in ("R1", "R2")
    ]
    await login(client, ADMIN)
    csrf = csrf_of((await client.get(f"/ui/postbacks/{refused}")).text)
    r = await client.post(f"/ui/postbacks/{refused}/replay", data={"csrf": csrf})
    where = unquote_plus(r.headers["location"])
    again = (await client.get("/api/v1/postbacks", headers=AUTH)).json()["items"][0]["id"]
    assert where.startswith(f"/ui/postbacks/{again}?error=postback {refused} replayed as"), where
    assert "refused again (token_invalid: the token sent does not match" in where, where
    r = await client.post(f"/ui/postbacks/{accepted}/replay", data={"csrf": csrf})
    assert unquote_plus(r.headers["location"]).endswith(": duplicate"), r.headers
    # the conversion's page lists the postbacks of its order, however many its RefID fired
    for n in range(55):
        await client.get(f"/postback?refid={refid}&orderamount=1&ordernumber=M{n}&token=s3cret")
    page = (await client.get(f"/ui/conversions/{counted}")).text
    assert f'<a href="/ui/postbacks/{accepted}">{accepted}</a>' in page, page[-2000:]
    assert ">M54<" not in page


async def test_an_integration_test_is_rerun_from_the_offer_page_and_waits_only_while_it_can(
    client: httpx.AsyncClient,
) -> None:
    """The click test's message sends the operator to the dashboard's Rerun: there is one
    for each test. The page refreshes while a test's postback can still come: not for a
    test whose click made no RefID (the offer paused), nor on an archived offer."""
    s = await make_offer(client, destination_url="http://127.0.0.1:9/")
    oid = s["offer"]["id"]
    await client.patch(f"/api/v1/offers/{oid}", json={"status": "paused"}, headers=AUTH)
    test = (await client.post(f"/api/v1/offers/{oid}/integration-tests", headers=AUTH)).json()
    assert test["refid"] == "" and "dashboard's Rerun" in str(test["conversion_test"])
    await login(client, ADMIN)
    page = (await client.get(f"/ui/offers/{oid}")).text
    assert f'id="rerun-{test["id"]}"' in page and "data-refresh" not in page
    await client.patch(f"/api/v1/offers/{oid}", json={"status": "active"}, headers=AUTH)
    r = await client.post(f"/ui/integration-tests/{test['id']}/rerun", data={"csrf": csrf_of(page)})
    assert r.status_code == 303 and r.headers["location"].startswith(f"/ui/offers/{oid}?done=")
    rerun = (await client.get(f"/api/v1/integration-tests/{test['id']}", headers=AUTH)).json()
    assert rerun["refid"] and rerun["click_test"]["status"] == "passed"
    assert 'data-refresh="5"' in (await client.get(f"/ui/offers/{oid}")).text
    r = await client.delete(f"/api/v1/offers/{oid}", headers=AUTH)  # archived: none can come
    assert r.status_code in (200, 204), r.text
    page = (await client.get(f"/ui/offers/{oid}")).text
    assert "data-refresh" not in page and 'id="start-test"' not in page
    assert f'id="rerun-{test["id"]}"' not in page


async def test_a_filter_refused_keeps_the_page_and_its_other_filters(
    client: httpx.AsyncClient,
) -> None:
    """A typo in a filter box (`country=XX`, a code that no error has) showed a page of
    the error alone, whose Back the operator had to find the box again from."""
    await make_offer(client)
    await login(client, ADMIN)
    for path, query, dropped, kept in (
        ("/ui/reports", "country=XX&group=offer", "country", "group=offer"),
        ("/ui/postbacks", "code=token_invaild&outcome=forbidden", "code", "outcome=forbidden"),
        ("/ui/conversions", "status=aproved&offer_id=1", "status", "offer_id=1"),
    ):
        r = await client.get(f"{path}?{query}")
        assert r.status_code == 303, (path, r.status_code, r.text[:300])
        where = urlsplit(r.headers["location"])
        asked = parse_qs(where.query)
        assert where.path == path and dropped not in asked, where
        assert kept.split("=")[0] in asked and asked["error"], asked
        page = await client.get(r.headers["location"])
        assert page.status_code == 200 and "<form" in page.text, path
        assert asked["error"][0][:20] in page.text.replace("&#96;", "`"), asked
