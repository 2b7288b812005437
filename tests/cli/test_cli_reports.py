"""`clickback report` and `clickback rollup` against a database a real server writes to."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest

from clickback.domain.tracker import Tracker
from tests.cli.conftest import CLICKBACK, Server, cli, click, fire, in_tracker, table_rows

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"


def test_report_by_cli_sees_what_the_server_rolled_up(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # a wide table, as on a terminal
    db = server.db
    cli("advertiser", "create", "Shop", db=db)
    cli(
        "offer",
        "create",
        "--advertiser",
        "1",
        "--name",
        "Shoes",
        "--url",
        "https://s.example/",
        "--payout-amount",
        "3",
        db=db,
    )
    cli("affiliate", "create", "Pub", db=db)
    code = re.search(r"/c/(\S+)", cli("link", "create", "--offer", "1", "--affiliate", "1", db=db))
    assert code
    server.start()
    headers = {"user-agent": FIREFOX}
    refids = []
    for sub in ("a", "a", "b"):
        r = httpx.get(f"{server.base}/c/{code.group(1)}?sub1={sub}", headers=headers)
        refids.append(parse_qs(urlsplit(r.headers["location"]).query)["refid"][0])
    httpx.get(f"{server.base}/c/{code.group(1)}", headers={"user-agent": "Twitterbot/1.0"})
    r = httpx.get(f"{server.base}/postback?refid={refids[2]}&orderamount=5&ordernumber=X1")
    assert r.json()["status"] == "accepted"
    posted = time.monotonic()
    while True:
        # the promise is about what a read started within 5 s sees; the command's own
        # start-up (a new Python process) is not the server's to keep
        asked = time.monotonic()
        out = orjson.loads(cli("report", "--group-by", "sub1", "--format", "json", db=db))
        if out["totals"]["clicks"] == 4 and out["totals"]["conversions"] == 1:
            break
        assert asked - posted < 5, out
        time.sleep(0.2)
    rows = {r["sub1"]: r for r in out["rows"]}
    assert (rows["a"]["clicks"], rows["a"]["unique_clicks"]) == (2, 1)
    assert (rows["b"]["conversions"], rows["b"]["commission"]) == (1, "3.00")
    assert (rows[""]["clicks"], rows[""]["bot_clicks"], rows[""]["unique_clicks"]) == (1, 1, 0)
    table = cli("report", "--group-by", "offer,device", "--tz", "Europe/Berlin", db=db)
    assert "Shoes" in table and "desktop" in table and "total" in table
    lines = list(csv.reader(io.StringIO(cli("report", "--format", "csv", "--offer", "1", db=db))))
    assert lines[0][0] == "day" and int(lines[1][lines[0].index("clicks")]) == 4
    server.stop()
    assert "0 rows rolled up" in cli("rollup", db=db)  # the server left nothing behind


def test_report_table_shows_bot_clicks_and_a_note_for_conversions_without_a_rate(
    any_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("CLICKBACK_ROLLUP_SETTLE", "0")  # fold what was just written
    db = any_db
    cli("advertiser", "create", "Shop", db=db)
    offer = ["--advertiser", "1", "--name", "Shoes", "--url", "https://s.example/"]
    cli("offer", "create", *offer, "--payout-amount", "3", "--currency", "EUR", db=db)
    cli("affiliate", "create", "Pub", db=db)
    code = re.search(r"/c/(\S+)", cli("link", "create", "--offer", "1", "--affiliate", "1", db=db))
    assert code
    refid = click(db, code.group(1), FIREFOX)
    click(db, code.group(1), "Twitterbot/1.0")
    fire(db, {"refid": refid, "orderamount": "5", "ordernumber": "E1"})
    cli("rollup", db=db)  # no EUR rate: the conversion waits for one
    assert in_tracker(db, lease_free)  # a server's job takes over at once
    out = orjson.loads(cli("report", "--format", "json", db=db))
    assert (out["totals"]["bot_clicks"], out["totals"]["missing_rate"]) == (1, 1)
    [note] = out["notes"]
    assert note.startswith("1 conversion(s) wait for an exchange rate into USD")
    table = cli("report", db=db)
    [day, total] = table_rows(table)
    assert day["bot_clicks"] == "1"
    assert (total["clicks"], total["unique_clicks"], total["bot_clicks"]) == ("2", "1", "1")
    assert f"note: {note}" in " ".join(table.split())
    assert "bot_clicks" not in cli("report", "--device", "desktop", db=db)  # none: not shown
    # a CSV's notes (and that groups were left out by the limit) go beside it, to stderr
    args = ["report", "--format", "csv", "--group-by", "device", "--limit", "1", "--db", db]
    out = subprocess.run([CLICKBACK, *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("device,"), out.stdout
    assert f"note: {note}" in out.stderr, out.stderr
    assert "note: the first 1 of 2 groups are shown" in out.stderr, out.stderr
    # an id that does not exist is named, rather than an empty report left unexplained
    missing = orjson.loads(
        cli("report", "--offer", "1,99", "--link", "1,7", "--format", "json", db=db)
    )
    assert missing["totals"]["clicks"] == 2
    assert missing["notes"][1:] == [
        "no offer has id 99: nothing matches it",
        "no link has id 7: nothing matches it",
    ]
    # grouped by nothing, the report is its totals: one row, not the same row twice
    [only] = table_rows(cli("report", "--group-by", "", db=db))
    assert (only["clicks"], only["unique_clicks"], only["bot_clicks"]) == ("2", "1", "1")


async def lease_free(tracker: Tracker) -> bool:
    """Whether another process can take the rollup's lease now (and gives it back)."""
    if await tracker.store.rollup_claim("another", time.time_ns() // 1000, 15_000_000) is None:
        return False
    await tracker.store.rollup_release("another")
    return True


def test_tables_show_what_visitors_sent_as_it_is(
    any_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sub-ID is whatever a visitor sent: the tables show it as sent,
    never as markup (`[/]` failed every table holding it, `[bold]spring` showed
    `spring`)."""
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("CLICKBACK_ROLLUP_SETTLE", "0")
    db = any_db
    cli("advertiser", "create", "Shop", db=db)
    cli("offer", "create", "--advertiser", "1", "--name", "Shoes", "--url", "https://s.example/",
        "--payout-amount", "3", db=db)  # fmt: skip
    cli("affiliate", "create", "Pub", db=db)
    code = re.search(r"/c/(\S+)", cli("link", "create", "--offer", "1", "--affiliate", "1", db=db))
    assert code
    query = "sub1=%5Bbold%5Dspring&sub2=%5B%2F%5D"
    in_tracker(db, lambda t: t.click(code.group(1), query, "198.51.100.4", "Firefox", ""))
    assert table_rows(cli("clicks", "list", db=db))[0]["sub1"] == "[bold]spring"
    cli("rollup", db=db)
    report = table_rows(cli("report", "--group-by", "sub1,sub2", db=db))
    assert (report[0]["sub1"], report[0]["sub2"], report[0]["clicks"]) == (
        "[bold]spring",
        "[/]",
        "1",
    )
