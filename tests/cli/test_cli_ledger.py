"""The integration test, postback URL and replay from the command line."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson

from tests.cli.conftest import Server, cli


def setup(db: str, url: str = "http://127.0.0.1:9/landing") -> str:
    cli("advertiser", "create", "Shop", db=db)
    cli(
        "offer",
        "create",
        "--advertiser",
        "1",
        "--name",
        "O",
        "--url",
        url,
        "--payout-type",
        "cps",
        "--payout-percent",
        "10",
        db=db,
    )
    cli("affiliate", "create", "Pub", db=db)
    out = cli("link", "create", "--offer", "1", "--affiliate", "1", db=db)
    found = re.search(r"/c/(\S+)", out)
    assert found
    return found.group(1)


def test_integration_test_with_simulate_passes_both(sqlite_db: str) -> None:
    setup(sqlite_db)
    test = orjson.loads(cli("integration-test", "1", "--simulate", "--json", db=sqlite_db))
    assert test["click_test"]["status"] == "passed"
    assert test["click_test"]["reasons"][0]["code"] == "landing_unreachable"
    assert test["conversion_test"]["status"] == "passed"
    convs = [orjson.loads(x) for x in cli("conversions", "list", "--json", db=sqlite_db).split()]
    assert [c["is_test"] for c in convs] == [True]


def test_postback_url_command(sqlite_db: str) -> None:
    setup(sqlite_db)
    out = cli("postback-url", "1", db=sqlite_db)
    assert out.splitlines()[0].endswith(
        "/postback?refid={refid}&orderamount=&ordernumber=&coupon=&currency=&geo=&commissionid="
    )


def test_replay_by_outcome_after_reactivation(server: Server) -> None:
    code = setup(server.db)
    server.start()
    r = httpx.get(f"{server.base}/c/{code}")
    refid = parse_qs(urlsplit(r.headers["location"]).query)["refid"][0]
    cli("offer", "pause", "1", db=server.db)
    deadline = time.monotonic() + 5  # the pause reaches the server within a second
    while httpx.get(f"{server.base}/c/{code}").status_code != 404:
        assert time.monotonic() < deadline, "the pause never reached the server"
        time.sleep(0.1)
    url = f"{server.base}/postback?refid={refid}&orderamount=30&ordernumber=R1"
    assert httpx.get(url).status_code == 422
    cli("offer", "activate", "1", db=server.db)
    out = cli("postbacks", "replay", "--outcome", "offer_paused", db=server.db)
    assert "accepted" in out and "1 replayed" in out
    out = cli("postbacks", "replay", "--outcome", "offer_paused", db=server.db)
    assert "duplicate" in out
    convs = cli("conversions", "list", "--json", db=server.db).split()
    assert len(convs) == 1 and orjson.loads(convs[0])["commission"] == "3.00"
