"""The landing-page snippet `refid.js` in a real headless Chromium (Debian's, via Playwright).

A small HTTP server on loopback plays the advertiser's site: a landing page with a form
and the snippet's <script> tag, and the snippet itself as the package ships it. The
browser follows what a tracking link's redirect leads to (`/landing?refid=…`), then
comes back without the parameter, as a visitor does before converting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from clickback.domain.refid import RefIdCodec

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # the advertiser's site under several names (`www.shop.test`, `pay.shop.test`, …)
    "--host-resolver-rules=MAP *.test 127.0.0.1, MAP *.co.uk 127.0.0.1",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SNIPPET = files("clickback.web").joinpath("static").joinpath("refid.js").read_bytes()

LANDING = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>Shop landing</title>
<link rel="icon" href="data:,">
<script src="/kit/refid.js" data-days="7"></script>
</head><body>
<h1>Spring sale</h1>
<form id="order" action="/order" method="post">
  <input type="hidden" name="refid">
  <input type="text" name="email" value="">
</form>
<form id="newsletter"><input type="hidden" name="refid" value="stale"></form>
<a id="next" href="/checkout?step=2#pay">checkout</a>
<p>RefID: <output id="shown"></output></p>
<script>
  document.addEventListener("DOMContentLoaded", function () {
    var next = document.getElementById("next");
    next.href = window.clickback.decorate(next.getAttribute("href"));
    document.getElementById("shown").textContent = window.clickback.refid() || "none";
  });
</script>
</body></html>
"""

# The snippet at the end of the body (the DOM is parsed when it runs) with other names.
LANDING_CUSTOM = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>Shop landing</title>
<link rel="icon" href="data:,"></head><body>
<form><input type="hidden" name="clickid"></form>
<script src="/kit/refid.js" data-param="clickid" data-cookie="shop_ref" data-days="1.5"></script>
</body></html>
"""

# An offer's `--refid-param` may be any name of 1 to 50 characters, `s2s.clickid` too.
LANDING_DOTTED = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>Shop landing</title>
<link rel="icon" href="data:,"></head><body>
<form><input type="hidden" name="s2s.clickid"></form>
<script src="/kit/refid.js" data-param="s2s.clickid"></script>
</body></html>
"""


def landing_with_domain(domain: str) -> bytes:
    """A page whose snippet shares its cookie with `domain`'s subdomains."""
    return b"""<!doctype html>
<html><head><meta charset="utf-8"><title>Shop</title>
<link rel="icon" href="data:,"></head><body>
<form><input type="hidden" name="refid"></form>
<script src="/kit/refid.js" data-domain="%s"></script>
</body></html>
""" % domain.encode()


PAGES = {
    "/shared": (b"text/html; charset=utf-8", landing_with_domain("shop.test")),
    "/shared-dot": (b"text/html; charset=utf-8", landing_with_domain(".Shop.test")),
    "/shared-elsewhere": (b"text/html; charset=utf-8", landing_with_domain("other.test")),
    "/shared-suffix": (b"text/html; charset=utf-8", landing_with_domain("co.uk")),
    "/landing": (b"text/html; charset=utf-8", LANDING),
    "/custom": (b"text/html; charset=utf-8", LANDING_CUSTOM),
    "/dotted": (b"text/html; charset=utf-8", LANDING_DOTTED),
    "/kit/refid.js": (b"application/javascript; charset=utf-8", SNIPPET),
}


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            # a landing page with the RefID in its path (`/landing/{refid}/…`)
            page = PAGES.get("/landing" if path.startswith("/landing/") else path)
            if page is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("content-type", page[0].decode())
            self.send_header("content-length", str(len(page[1])))
            self.end_headers()
            self.wfile.write(page[1])

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def watch(page: Page) -> list[str]:
    """Console errors and uncaught page errors, collected as they happen."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return problems


def hidden(page: Page, form: str = "#order", name: str = "refid") -> str:
    return page.input_value(f"{form} input[name={name}]")


def test_refid_is_kept_in_cookie_hidden_fields_and_links(browser: Browser, site: str) -> None:
    context = browser.new_context()
    page = context.new_page()
    problems = watch(page)

    page.goto(f"{site}/landing?utm_source=aff&refid=ABC_123-x")
    [cookie] = [c for c in context.cookies() if c["name"] == "clickback_refid"]
    assert cookie["value"] == "ABC_123-x"
    assert abs(cookie["expires"] - (time.time() + 7 * 86400)) < 120
    assert (cookie["path"], cookie["sameSite"], cookie["secure"]) == ("/", "Lax", False)
    assert hidden(page) == "ABC_123-x"
    assert hidden(page, "#newsletter") == "ABC_123-x"  # a stale value is replaced
    assert page.input_value("input[name=email]") == ""
    assert page.get_attribute("#next", "href") == "/checkout?step=2&refid=ABC_123-x#pay"
    assert page.text_content("#shown") == "ABC_123-x"
    assert page.evaluate("window.clickback.refid()") == "ABC_123-x"
    decorate = "u => window.clickback.decorate(u)"
    assert (
        page.evaluate(decorate, "https://x.example/a?b=1")
        == "https://x.example/a?b=1&refid=ABC_123-x"
    )
    assert page.evaluate(decorate, "/checkout?step=2#pay") == "/checkout?step=2&refid=ABC_123-x#pay"
    assert page.evaluate(decorate, "https://x.example/?refid=old&b=") == (
        "https://x.example/?b=&refid=ABC_123-x"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "kit-refid-landing.png"), full_page=True)

    # Back later without the parameter: the RefID comes from the cookie.
    page.goto(f"{site}/landing")
    assert hidden(page) == "ABC_123-x" and hidden(page, "#newsletter") == "ABC_123-x"
    assert page.evaluate("window.clickback.refid()") == "ABC_123-x"

    # A malformed RefID in the URL is neither stored nor used.
    page.goto(f"{site}/landing?refid=" + "x" * 65)
    page.goto(f"{site}/landing?refid=%3Cscript%3E")
    assert hidden(page) == "ABC_123-x"
    [cookie] = [c for c in context.cookies() if c["name"] == "clickback_refid"]
    assert cookie["value"] == "ABC_123-x"

    # A newer click replaces the older RefID; `clickid` is read too.
    page.goto(f"{site}/landing?clickid=NEWER-1")
    assert hidden(page) == "NEWER-1"
    assert [c["value"] for c in context.cookies() if c["name"] == "clickback_refid"] == ["NEWER-1"]
    assert problems == []
    context.close()


def test_a_refid_in_the_path_is_kept(browser: Browser, site: str) -> None:
    """An offer's URL `https://shop.example/landing/{refid}/spring`: the RefID the tracker
    put in the path is kept as one in the query is; a 36-character segment that is no
    RefID issued within the cookie's lifetime (7 days here) is not taken for one."""
    codec = RefIdCodec(["kit-test-key"])
    now_ms = int(time.time() * 1000)
    refid = codec.issue(5, now_ms)
    stale = codec.issue(5, now_ms - 9 * 86_400_000)  # older than 7 days and a day's leeway
    context = browser.new_context()
    page = context.new_page()
    problems = watch(page)

    page.goto(f"{site}/landing/{stale}/spring")
    assert hidden(page) == "" and context.cookies() == []
    page.goto(f"{site}/landing/{'z' * 36}/spring")  # a far future time: a name, not a RefID
    assert hidden(page) == "" and context.cookies() == []

    page.goto(f"{site}/landing/{refid}/spring")
    assert hidden(page) == refid and page.text_content("#shown") == refid
    assert [c["value"] for c in context.cookies() if c["name"] == "clickback_refid"] == [refid]
    # back later on another page of the site: from the cookie
    page.goto(f"{site}/landing")
    assert hidden(page) == refid
    # the query's RefID, when both are there, is the one the link put in the parameter
    page.goto(f"{site}/landing/{refid}/spring?refid=QUERY-1")
    assert hidden(page) == "QUERY-1"
    assert problems == []
    context.close()


def test_no_refid_leaves_fields_links_and_cookies_alone(browser: Browser, site: str) -> None:
    context = browser.new_context()
    page = context.new_page()
    problems = watch(page)
    page.goto(f"{site}/landing?utm_source=direct")
    assert context.cookies() == []
    assert hidden(page) == "" and hidden(page, "#newsletter") == "stale"
    assert page.evaluate("window.clickback.refid()") is None
    assert page.get_attribute("#next", "href") == "/checkout?step=2#pay"
    assert page.evaluate("window.clickback.decorate('/a?b=1')") == "/a?b=1"
    assert problems == []
    context.close()


def test_data_attributes_rename_the_parameter_cookie_and_lifetime(
    browser: Browser, site: str
) -> None:
    context = browser.new_context()
    page = context.new_page()
    problems = watch(page)
    page.goto(f"{site}/custom?clickid=Zz9-_")
    [cookie] = context.cookies()
    assert (cookie["name"], cookie["value"]) == ("shop_ref", "Zz9-_")
    assert abs(cookie["expires"] - (time.time() + 1.5 * 86400)) < 120
    assert hidden(page, "form", "clickid") == "Zz9-_"
    assert page.evaluate("window.clickback.decorate('https://x.example/')") == (
        "https://x.example/?clickid=Zz9-_"
    )
    # a RefID the URL had under another name is replaced too: one RefID, under clickid
    decorate = "u => window.clickback.decorate(u)"
    assert page.evaluate(decorate, "https://x.example/?refid=old&a=1&clickid=older#f") == (
        "https://x.example/?a=1&clickid=Zz9-_#f"
    )
    page.goto(f"{site}/custom")
    assert hidden(page, "form", "clickid") == "Zz9-_"
    assert problems == []
    context.close()


def test_an_offers_dotted_refid_param_is_read(browser: Browser, site: str) -> None:
    """The tracker takes `--refid-param s2s.clickid` and redirects with `?s2s.clickid=…`;
    the snippet told `data-param="s2s.clickid"` must read, store and fill it."""
    context = browser.new_context()
    page = context.new_page()
    problems = watch(page)
    page.goto(f"{site}/dotted?s2s.clickid=Dot-9")
    assert page.evaluate("window.clickback.refid()") == "Dot-9"
    assert hidden(page, "form", '"s2s.clickid"') == "Dot-9"
    decorate = "u => window.clickback.decorate(u)"
    assert page.evaluate(decorate, "/a?clickid=o1&b=2&s2s.clickid=o2&refid=o3") == (
        "/a?b=2&s2s.clickid=Dot-9"
    )
    assert problems == []
    context.close()


def test_decorate_leaves_anchors_and_other_schemes_alone(browser: Browser, site: str) -> None:
    """`#faq` is a place on this page: `?refid=…#faq` would reload it, losing its query;
    `mailto:` and `tel:` links are no web pages."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{site}/landing?utm_source=aff&refid=ABC_123-x")
    decorate = "u => window.clickback.decorate(u)"
    for url in ("#faq", "mailto:shop@example.com", "tel:+4930123", ""):
        assert page.evaluate(decorate, url) == url
    assert page.evaluate(decorate, "/cart#top") == "/cart?refid=ABC_123-x#top"
    # fill() takes a fragment too (a <template>'s content, before it is put in the page)
    filled = page.evaluate(
        """() => { const t = document.createElement("template");
        t.innerHTML = '<form><input type="hidden" name="refid"></form>';
        return [window.clickback.fill(t.content), t.content.querySelector("input").value]; }"""
    )
    assert filled == [1, "ABC_123-x"]
    context.close()


def test_decorate_takes_a_web_url_whatever_the_case_of_its_scheme(
    browser: Browser, site: str
) -> None:
    """A scheme is case-insensitive (RFC 3986 3.1): `HTTPS://shop.example/cart` is a web
    page like `https://shop.example/cart`, and carries the RefID on."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{site}/landing?refid=ABC_123-x")
    decorate = "u => window.clickback.decorate(u)"
    assert page.evaluate(decorate, "https://shop.example/cart") == (
        "https://shop.example/cart?refid=ABC_123-x"
    )
    assert page.evaluate(decorate, "HTTPS://shop.example/cart") == (
        "HTTPS://shop.example/cart?refid=ABC_123-x"
    )
    context.close()


def test_data_domain_shares_the_refid_with_the_sites_other_subdomains(
    browser: Browser, site: str
) -> None:
    """A visitor lands on www.shop.test and orders on pay.shop.test: with
    `data-domain="shop.test"` the order page reads the RefID the landing page stored. A
    host-only cookie left by the snippet before `data-domain` was set goes, or its older
    RefID would be read first."""
    port = site.rsplit(":", 1)[1]
    www, pay = f"http://www.shop.test:{port}", f"http://pay.shop.test:{port}"
    for path in ("/shared", "/shared-dot"):
        context = browser.new_context()
        page = context.new_page()
        problems = watch(page)
        page.goto(f"{www}/landing?refid=Old-1")  # no data-domain: www.shop.test's own cookie
        page.goto(f"{www}{path}?refid=New-2")
        cookies = [(c["domain"], c["value"]) for c in context.cookies()]
        assert cookies == [(".shop.test", "New-2")]
        page.goto(f"{www}{path}")
        assert page.evaluate("window.clickback.refid()") == "New-2"
        page.goto(f"{pay}{path}")
        assert page.evaluate("window.clickback.refid()") == "New-2"
        assert hidden(page, "form") == "New-2"
        assert problems == []
        context.close()


def test_data_domain_of_another_site_keeps_the_cookie_on_this_host(
    browser: Browser, site: str
) -> None:
    """A browser drops a cookie whose Domain is not this host's: the snippet leaves such
    a `data-domain` out rather than lose the RefID."""
    port = site.rsplit(":", 1)[1]
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"http://www.shop.test:{port}/shared-elsewhere?refid=Kept-3")
    assert [(c["domain"], c["value"]) for c in context.cookies()] == [("www.shop.test", "Kept-3")]
    page.goto(f"http://www.shop.test:{port}/shared-elsewhere")
    assert page.evaluate("window.clickback.refid()") == "Kept-3"
    page.goto(f"http://pay.shop.test:{port}/shared-elsewhere")
    assert page.evaluate("window.clickback.refid()") is None
    context.close()


def test_data_domain_a_newer_click_wins_over_an_older_cookie_of_the_order_host(
    browser: Browser, site: str
) -> None:
    """A visitor once landed on pay.shop.test, before `data-domain` was set (that host's
    own cookie, Old-1); a newer click lands on www.shop.test with `data-domain`: the
    order page on pay.shop.test must fill in the newer RefID, not the older click's."""
    port = site.rsplit(":", 1)[1]
    www, pay = f"http://www.shop.test:{port}", f"http://pay.shop.test:{port}"
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{pay}/landing?refid=Old-1")  # no data-domain yet: pay.shop.test's own
    page.goto(f"{www}/shared?refid=New-2")
    page.goto(f"{pay}/shared")
    assert page.evaluate("window.clickback.refid()") == "New-2"
    assert hidden(page, "form") == "New-2"
    context.close()


def test_data_domain_a_browser_refuses_keeps_the_refid_on_this_host(
    browser: Browser, site: str
) -> None:
    """`data-domain="co.uk"` names a public suffix, for which a browser sets no cookie:
    the RefID is kept in this host's own cookie instead of nowhere."""
    port = site.rsplit(":", 1)[1]
    context = browser.new_context()
    page = context.new_page()
    problems = watch(page)
    page.goto(f"http://www.shop.co.uk:{port}/shared-suffix?refid=Psl-4")
    assert [(c["domain"], c["value"]) for c in context.cookies()] == [("www.shop.co.uk", "Psl-4")]
    page.goto(f"http://www.shop.co.uk:{port}/shared-suffix")
    assert page.evaluate("window.clickback.refid()") == "Psl-4"
    assert problems == []
    context.close()


def test_an_older_refid_in_the_url_does_not_replace_a_newer_click(
    browser: Browser, site: str
) -> None:
    """A visitor clicks a link (RefID of an hour ago), then a newer one (now); then
    opens an old tab or a bookmark with the older `?refid=`: the newer click's RefID is
    kept, in the cookie, the form and `refid()`. A RefID of another shape, which carries
    no time, replaces as before."""
    codec = RefIdCodec(["kit-test-key"])
    now_ms = int(time.time() * 1000)
    first, newer = codec.issue(5, now_ms - 3_600_000), codec.issue(6, now_ms)
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{site}/landing?refid={first}")
    page.goto(f"{site}/landing?refid={newer}")
    page.goto(f"{site}/landing?refid={first}")  # the old tab
    assert page.evaluate("window.clickback.refid()") == newer
    assert hidden(page) == newer
    assert [c["value"] for c in context.cookies() if c["name"] == "clickback_refid"] == [newer]
    page.goto(f"{site}/landing?refid=OTHER-1")
    assert hidden(page) == "OTHER-1"
    context.close()


def test_a_refid_is_kept_until_its_window_ends_and_not_taken_past_it(
    browser: Browser, site: str
) -> None:
    """With a 7-day window: a `?refid=` issued 3 days ago is kept 4 days more (until its
    window ends, not 7 days from the visit); one issued 9 days ago (past its window and
    a day's leeway: an old bookmark) is not taken, and what the cookie keeps stays."""
    codec = RefIdCodec(["kit-test-key"])
    now_ms = int(time.time() * 1000)
    recent = codec.issue(5, now_ms - 3 * 86_400_000)
    stale = codec.issue(5, now_ms - 9 * 86_400_000)
    context = browser.new_context()
    page = context.new_page()
    problems = watch(page)

    page.goto(f"{site}/landing?refid={stale}")  # no cookie yet
    assert hidden(page) == "" and context.cookies() == []
    assert page.evaluate("window.clickback.refid()") is None

    page.goto(f"{site}/landing?refid={recent}")
    [cookie] = [c for c in context.cookies() if c["name"] == "clickback_refid"]
    assert cookie["value"] == recent
    assert abs(cookie["expires"] - (now_ms / 1000 + 4 * 86400)) < 120

    page.goto(f"{site}/landing?refid={stale}")
    assert hidden(page) == recent and page.evaluate("window.clickback.refid()") == recent
    assert [c["value"] for c in context.cookies() if c["name"] == "clickback_refid"] == [recent]
    assert problems == []
    context.close()
