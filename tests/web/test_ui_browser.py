"""The dashboard in a real headless Chromium (Debian's, via Playwright) against a real
`clickback serve`: log in, open every page, use the filters, approve a conversion,
replay a postback, copy the postback URL; no JavaScript error on the way. Screenshots
go to test-artifacts/."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.cli.conftest import Server
from tests.web.test_kit_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

TOKEN = "ui-admin-token"
API = {"Authorization": f"Bearer {TOKEN}"}
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tracker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with an advertiser, a review offer, clicks, two conversions (one pending)
    and a refused postback, all rolled up."""
    tmp: Path = tmp_path_factory.mktemp("ui")
    server = Server(f"sqlite:///{tmp / 'ui.db'}", tmp, env={"CLICKBACK_ADMIN_TOKEN": TOKEN})
    server.start()
    with httpx.Client(base_url=server.base, headers=API) as c:
        adv = c.post("/api/v1/advertisers", json={"name": "Shoe Shop"}).json()
        offer = c.post(
            "/api/v1/offers",
            json={
                "advertiser_id": adv["id"],
                "name": "Spring sale",
                "destination_url": "https://shoes.example/land",
                "payout_type": "cps",
                "payout_percent": "10",
                "approval": "review",
            },
        ).json()
        aff = c.post("/api/v1/affiliates", json={"name": "Deal Blog"}).json()
        link = c.post("/api/v1/links", json={"offer_id": offer["id"], "affiliate_id": aff["id"]})
        code = link.json()["code"]
        refids = []
        for sub in ("spring", "spring", "news"):
            r = c.get(f"/c/{code}?sub1={sub}", headers={"user-agent": FIREFOX})
            refids.append(parse_qs(urlsplit(r.headers["location"]).query)["refid"][0])
        for i, refid in enumerate(refids[:2]):
            r = c.get("/postback", params={"refid": refid, "orderamount": "80", "ordernumber": i})
            assert r.json()["status"] == "accepted", r.text
        c.get("/postback", params={"refid": refids[2], "orderamount": "-1", "ordernumber": "x"})
        deadline = time.monotonic() + 10
        # the rollup folds clicks and conversions in passes of their own: wait for both
        while _totals(c) != (3, 2):
            assert time.monotonic() < deadline
            time.sleep(0.2)
    yield server
    server.stop()


def _totals(c: httpx.Client) -> tuple[int, int]:
    totals = c.get("/api/v1/reports").json()["totals"]
    return totals["clicks"], totals["conversions"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"ui-{name}.png"), full_page=True)


def test_dashboard_pages_filters_and_approval(tracker: Server, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=tracker.base)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("dialog", lambda d: d.accept())

    page.goto(f"{tracker.base}/ui/")
    assert "/ui/login" in page.url
    page.fill("input[name=token]", "wrong")
    page.click("button[type=submit]")
    assert page.locator(".flash.error").is_visible()
    shot(page, "login")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_selector("#chart canvas")
    assert page.text_content("#kpi-clicks") == "3"
    assert page.locator(".tops table").first.text_content() is not None
    assert "Spring sale" in (page.text_content(".tops") or "")
    shot(page, "overview")
    page.fill("#range input[name=tz]", "Europe/Berlin")
    page.click("#range button[type=submit]")
    page.wait_for_selector("#chart canvas")
    assert "tz=Europe%2FBerlin" in page.url and "Europe/Berlin" in (
        page.text_content(".range") or ""
    )

    page.click("nav >> text=Reports")
    page.check("input[name=group][value=offer]")
    page.check("input[name=group][value=sub1]")
    page.select_option("select[name=time]", "")
    page.fill("input[name=sub1]", "spring")
    page.click("#builder button[type=submit]")
    rows = page.locator("#report tbody tr")
    expect(rows).to_have_count(1)
    assert "spring" in (rows.first.text_content() or "")
    assert "Spring sale" in (rows.first.text_content() or "")
    assert "2" in (page.text_content("#report tfoot") or "")
    with page.expect_download() as download:
        page.click("#csv")
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0].startswith("offer,offer_name,sub1,clicks") and len(lines) == 2
    shot(page, "reports")

    page.click("nav >> text=Conversions")
    page.select_option("#conversion-filters select[name=status]", "pending")
    page.click("#conversion-filters button[type=submit]")
    expect(page.locator("#conversions tbody tr")).to_have_count(2)
    page.click("#conversions tbody tr:first-child a")
    assert page.locator("#click").is_visible() and "GB" not in (page.text_content("#click") or "")
    shot(page, "conversion")
    page.click("#to-approved")
    assert page.locator(".flash.done").text_content() == "approved"
    assert "pending → approved" in (page.text_content("#history") or "")
    assert page.locator("#to-reversed").is_visible()
    shot(page, "conversion-approved")

    page.click("nav >> text=Postbacks")
    page.select_option("#postback-filters select[name=outcome]", "rejected")
    page.click("#postback-filters button[type=submit]")
    expect(page.locator("#postbacks tbody tr")).to_have_count(1)
    page.locator("#postbacks tbody tr button").click()
    # its amount is still -1: refused again, said as an error with why, on the replay's page
    said = page.locator(".flash.error").text_content() or ""
    assert "replayed as" in said and "refused again (invalid_amount" in said, said
    assert "/ui/postbacks/" in page.url
    shot(page, "postbacks")

    page.click("nav >> text=Offers")
    page.click("#offers >> text=Spring sale")
    value = page.input_value("#postback-url")
    assert value.startswith(f"{tracker.base}/postback?refid={{refid}}&orderamount=")
    page.click("#copy")
    expect(page.locator("#copy")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == value
    shot(page, "offer")

    page.click(".logout button")
    assert "/ui/login" in page.url
    page.goto(f"{tracker.base}/ui/conversions")
    assert "/ui/login" in page.url
    assert problems == []
    context.close()

    with httpx.Client(base_url=tracker.base, headers=API) as c:
        statuses = sorted(x["status"] for x in c.get("/api/v1/conversions").json()["items"])
        assert statuses == ["approved", "pending"]
