"""The advertiser's postback helper against a real `clickback serve` process.

One tracker per module, on a free loopback port over a temporary SQLite file, set up
with the CLI as an advertiser's integrator would. Retries are driven by a small real
HTTP server in front of it that fails on purpose, then passes requests through.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from clickback.client import (
    OrderNumberReusedError,
    PostbackError,
    PostbackRejectedError,
    PostbackUnavailableError,
    async_fire_postback,
    fire_postback,
)
from tests.cli.conftest import free_port

pytestmark = pytest.mark.e2e

TOKEN = "s3cret-token"


def clickback_command() -> str:
    beside = Path(sys.executable).parent / "clickback"
    found = str(beside) if beside.exists() else shutil.which("clickback")
    assert found, "the `clickback` command is not installed beside the test interpreter"
    return found


@dataclass
class Tracker:
    base: str
    db: Path
    codes: dict[str, str] = field(default_factory=dict)

    def click(self, link: str = "open") -> str:
        """Follow a tracking link as a visitor; the RefID from the redirect."""
        r = httpx.get(f"{self.base}/c/{self.codes[link]}?sub1=e2e", follow_redirects=False)
        assert r.status_code == 302, r.text
        return parse_qs(urlsplit(r.headers["location"]).query)["refid"][0]

    def conversions(self, ordernumber: str) -> int:
        with sqlite3.connect(self.db) as conn:
            [(n,)] = conn.execute(
                "SELECT count(*) FROM conversions WHERE ordernumber = ?", (ordernumber,)
            )
        return int(n)


@pytest.fixture(scope="module")
def tracker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tracker]:
    tmp = tmp_path_factory.mktemp("tracker")
    db = tmp / "clickback.db"
    url = f"sqlite:///{db}"
    cli = clickback_command()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKBACK_")}

    def run(*args: str) -> None:
        subprocess.run([cli, *args, "--db", url], env=env, check=True, capture_output=True)

    run("advertiser", "create", "Shop")
    run("advertiser", "create", "Locked shop", "--require-token", "--token", TOKEN)
    for advertiser in ("1", "2"):
        run(
            "offer",
            "create",
            "--advertiser",
            advertiser,
            "--name",
            "O",
            "--url",
            "https://shop.example/",
            "--payout-type",
            "cpa",
            "--payout-amount",
            "5",
        )
    run("affiliate", "create", "A")
    run("link", "create", "--offer", "1", "--affiliate", "1")
    run("link", "create", "--offer", "2", "--affiliate", "1")
    with sqlite3.connect(db) as conn:
        codes = dict(conn.execute("SELECT offer_id, code FROM links"))

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp / "serve.log").open("wb")
    server = subprocess.Popen(
        [cli, "serve", "--db", url, "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).text == "ready":
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    "clickback serve did not become ready:\n" + (tmp / "serve.log").read_text()
                )
            time.sleep(0.1)
        yield Tracker(base, db, {"open": codes[1], "locked": codes[2]})
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@dataclass
class Flaky:
    """A real HTTP server that answers `fail_status` to the first `failures` requests.

    Requests after those are passed through to `upstream`; with `deliver_first`, the
    first request is delivered upstream too and only its answer replaced, as when a
    postback is recorded but the answer is lost on its way back.
    """

    upstream: str
    failures: int = 2
    fail_status: int = 503
    deliver_first: bool = False
    seen: list[str] = field(default_factory=list)
    base: str = ""

    def handle(self, path: str) -> tuple[int, bytes]:
        n = len(self.seen)
        self.seen.append(path)
        if n >= self.failures or (n == 0 and self.deliver_first):
            upstream = httpx.get(self.upstream + path)
            if n >= self.failures:
                return upstream.status_code, upstream.content
        return self.fail_status, b'{"status": "error", "errors": []}'


@pytest.fixture
def flaky(tracker: Tracker) -> Iterator[Flaky]:
    state = Flaky(tracker.base)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = state.handle(self.path)
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_postback_is_accepted_with_its_commission(tracker: Tracker) -> None:
    refid = tracker.click()
    answer = fire_postback(
        tracker.base,
        refid=refid,
        orderamount=Decimal("49.90"),
        ordernumber="ORDER-1",
        coupon="SPRING",
        currency="USD",
        geo="US",
        commissionid="c-1",
    )
    assert answer["status"] == "accepted" and answer["refid"] == refid
    assert (answer["commission"], answer["currency"]) == ("5.00", "USD")
    assert tracker.conversions("ORDER-1") == 1


def test_firing_again_returns_duplicate_and_counts_once(tracker: Tracker) -> None:
    refid = tracker.click()
    first = fire_postback(tracker.base, refid=refid, orderamount="10", ordernumber="DUP-1")
    again = fire_postback(tracker.base + "/", refid=refid, orderamount="10", ordernumber="DUP-1")
    assert (again["status"], again["conversion_id"]) == ("duplicate", first["conversion_id"])
    assert again["differs"] == []  # the same order again: a retry
    assert tracker.conversions("DUP-1") == 1


def test_a_used_order_number_for_another_order_raises(tracker: Tracker) -> None:
    """A duplicate unlike the order counted (another amount) was not counted: raised, as
    a refusal, with what differs; the same order again is still a plain duplicate."""
    refid = tracker.click()
    fire_postback(tracker.base, refid=refid, orderamount="10", ordernumber="REUSE-1")
    with pytest.raises(OrderNumberReusedError) as raised:
        fire_postback(tracker.base, refid=refid, orderamount="12.50", ordernumber="REUSE-1")
    assert isinstance(raised.value, PostbackRejectedError)
    assert raised.value.code == "duplicate_ordernumber" and raised.value.status_code == 200
    assert raised.value.differs == [{"field": "orderamount", "stored": "10.00", "sent": "12.50"}]
    assert raised.value.answer["status"] == "duplicate"
    again = fire_postback(tracker.base, refid=refid, orderamount="10.00", ordernumber="REUSE-1")
    assert again["status"] == "duplicate"
    assert tracker.conversions("REUSE-1") == 1


def test_a_cpl_lead_with_amount_zero_is_accepted(tracker: Tracker) -> None:
    refid = tracker.click()
    answer = fire_postback(tracker.base, refid=refid, orderamount=0, ordernumber="LEAD-1")
    assert answer["status"] == "accepted"


def test_bad_fields_are_rejected_with_every_field_code(tracker: Tracker) -> None:
    refid = tracker.click()
    with pytest.raises(PostbackRejectedError) as caught:
        fire_postback(
            tracker.base,
            refid=refid,
            orderamount="12,50",
            ordernumber="",
            currency="EURO",
            geo="XX",
        )
    exc = caught.value
    assert (exc.status_code, exc.code) == (400, "rejected")
    assert {(e["field"], e["code"]) for e in exc.errors} == {
        ("orderamount", "invalid_amount"),
        ("ordernumber", "missing"),
        ("currency", "invalid_currency"),
        ("geo", "invalid_geo"),
    }
    assert all(e["message"] for e in exc.errors)


def test_unknown_refid_is_rejected_not_retried(tracker: Tracker, flaky: Flaky) -> None:
    flaky.failures = 0
    refid = tracker.click()
    forged = refid[:-1] + ("A" if refid[-1] != "A" else "B")
    with pytest.raises(PostbackRejectedError) as caught:
        fire_postback(flaky.base, refid=forged, orderamount="1", ordernumber="FORGED-1")
    assert (caught.value.status_code, caught.value.code) == (404, "unknown_refid")
    assert caught.value.errors[0]["field"] == "refid"
    assert len(flaky.seen) == 1


def test_token_is_sent_when_the_advertiser_requires_it(tracker: Tracker) -> None:
    refid = tracker.click("locked")
    with pytest.raises(PostbackRejectedError) as caught:
        fire_postback(tracker.base, refid=refid, orderamount="1", ordernumber="TOK-1")
    assert (caught.value.status_code, caught.value.code) == (403, "token_missing")
    with pytest.raises(PostbackRejectedError) as caught:
        fire_postback(tracker.base, refid=refid, orderamount="1", ordernumber="TOK-1", token="no")
    assert caught.value.code == "token_invalid"
    answer = fire_postback(
        tracker.base, refid=refid, orderamount="1", ordernumber="TOK-1", token=TOKEN
    )
    assert answer["status"] == "accepted"


def test_float_amounts_are_refused_before_sending() -> None:
    with pytest.raises(TypeError, match="float"):
        fire_postback("http://127.0.0.1:9", refid="r", orderamount=49.9, ordernumber="F")  # type: ignore[arg-type]


def test_503_twice_then_success_is_retried(tracker: Tracker, flaky: Flaky) -> None:
    refid = tracker.click()
    answer = fire_postback(
        flaky.base,
        refid=refid,
        orderamount=Decimal("1E+2"),
        ordernumber="RETRY-1",
        currency="USD",
        backoff=0.01,
    )
    assert answer["status"] == "accepted"
    assert len(flaky.seen) == 3 and len(set(flaky.seen)) == 1  # the same postback each time
    sent = parse_qs(urlsplit(flaky.seen[0]).query)
    assert sent["orderamount"] == ["100"] and sent["ordernumber"] == ["RETRY-1"]
    assert urlsplit(flaky.seen[0]).path == "/postback"
    assert tracker.conversions("RETRY-1") == 1


def test_a_lost_answer_is_retried_and_counted_once(tracker: Tracker, flaky: Flaky) -> None:
    flaky.failures, flaky.fail_status, flaky.deliver_first = 1, 502, True
    refid = tracker.click()
    answer = fire_postback(
        flaky.base, refid=refid, orderamount="7.50", ordernumber="LOST-1", backoff=0.01
    )
    assert answer["status"] == "duplicate" and len(flaky.seen) == 2
    assert tracker.conversions("LOST-1") == 1


def test_429_and_5xx_until_the_end_is_unavailable(tracker: Tracker, flaky: Flaky) -> None:
    flaky.failures, flaky.fail_status = 99, 429
    with pytest.raises(PostbackUnavailableError) as caught:
        fire_postback(
            flaky.base, refid="r", orderamount="1", ordernumber="BUSY", retries=2, backoff=0.01
        )
    assert (caught.value.attempts, caught.value.status_code) == (3, 429)
    assert len(flaky.seen) == 3


def test_unreachable_tracker_is_unavailable_after_the_retries() -> None:
    port = free_port()  # closed again at once: nothing listens there
    started = time.monotonic()
    with pytest.raises(PostbackUnavailableError) as caught:
        fire_postback(
            f"http://127.0.0.1:{port}",
            refid="r",
            orderamount="1",
            ordernumber="DOWN",
            retries=3,
            backoff=0.02,
        )
    assert caught.value.attempts == 4 and caught.value.status_code is None
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    # backoff 0.02 s doubling, jittered to between half and all of it: 0.07 to 0.14 s
    assert 0.07 <= time.monotonic() - started < 5


async def test_async_variant_fires_and_retries(tracker: Tracker, flaky: Flaky) -> None:
    refid = tracker.click()
    answer = await async_fire_postback(
        flaky.base, refid=refid, orderamount=Decimal("3.25"), ordernumber="ASYNC-1", backoff=0.01
    )
    assert answer["status"] == "accepted" and len(flaky.seen) == 3
    again = await async_fire_postback(
        tracker.base, refid=refid, orderamount="3.25", ordernumber="ASYNC-1"
    )
    assert again["status"] == "duplicate"
    assert tracker.conversions("ASYNC-1") == 1


def test_a_negative_zero_decimal_is_a_zero_amount(tracker: Tracker) -> None:
    """`Decimal("0") * -1` is `Decimal("-0")`: a zero amount (a lead), which the helper
    takes as a Decimal, so it must not go out as `-0`, which the tracker refuses."""
    refid = tracker.click()
    answer = fire_postback(
        tracker.base, refid=refid, orderamount=Decimal("0") * -1, ordernumber="NEGZERO-1"
    )
    assert answer["status"] == "accepted"


def test_a_wrong_base_url_is_no_refusal_of_the_order(tracker: Tracker) -> None:
    """A path that is not the postback endpoint answers 404 (the tracker's own JSON): that
    is a wrong `base_url` (`PostbackError`, as documented), not the order refused."""
    refid = tracker.click()
    with pytest.raises(PostbackError) as wrong:
        fire_postback(tracker.base + "/api", refid=refid, orderamount="1", ordernumber="W-1")
    assert not isinstance(wrong.value, PostbackRejectedError)
    with pytest.raises(PostbackRejectedError) as refused:  # a RefID no click has is refused
        fire_postback(tracker.base, refid="x" * 36, orderamount="1", ordernumber="W-2")
    assert refused.value.code == "unknown_refid"


def test_a_wrong_base_url_is_said_without_the_token(tracker: Tracker, flaky: Flaky) -> None:
    """The error for a wrong `base_url` (or an answer no tracker gives) names the URL
    tried, never the query that carried the advertiser's postback token: the message
    goes into logs."""
    refid = tracker.click("locked")
    with pytest.raises(PostbackError) as wrong:
        fire_postback(
            tracker.base + "/api",
            refid=refid,
            orderamount="1",
            ordernumber="W-3",
            token=TOKEN,
        )
    said = str(wrong.value)
    assert tracker.base + "/api/postback" in said and "no postback endpoint" in said
    assert TOKEN not in said and "token=" not in said
    flaky.failures, flaky.fail_status = 1, 301
    with pytest.raises(PostbackError) as wrong:
        fire_postback(flaky.base, refid=refid, orderamount="1", ordernumber="W-4", token=TOKEN)
    said = str(wrong.value)
    assert said.startswith("unexpected answer 301 from " + flaky.base + "/postback")
    assert TOKEN not in said


def test_the_guide_lists_every_argument_of_fire_postback() -> None:
    """docs/integration.md spells out `fire_postback(…)`; docs/outbound.md sends readers
    there for `signing_secret`."""
    import inspect
    import re

    guide = (Path(__file__).resolve().parents[2] / "docs" / "integration.md").read_text()
    [spelled] = re.findall(r"`fire_postback\((base_url, \*,.*?)\)`", guide, re.S)
    named = {p.split("=")[0].strip() for p in spelled.split(",")} - {"*"}
    assert set(inspect.signature(fire_postback).parameters) <= named
