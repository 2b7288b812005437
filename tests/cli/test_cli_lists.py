"""The CLI's lists and exports on a database larger than a page: every row reachable with
the cursor each page prints, and the exports filtered as the lists are."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from clickback.domain import admin, rules
from clickback.domain.ports import Store
from clickback.domain.tracker import open_tracker
from clickback.web.present import EXPORT_COLUMNS
from tests.cli.conftest import CLICKBACK, cli, table_rows
from tests.cli.test_cli_ledger import in_store

N = 7  # rows of each kind: more than a page of 3


def _fill(db: str) -> None:
    """N advertisers, affiliates (with an outbound postback: a delivery each conversion),
    offers, links, rules of offer 1, and N clicks on N links, each converted."""

    async def work(store: Store) -> None:
        await store.migrate()
        for i in range(N):
            await admin.create_advertiser(store, {"name": f"Shop {i}"})
            url = "http://127.0.0.1:9/pb?c={refid}"
            await admin.create_affiliate(store, {"name": f"Pub {i}", "postback_url": url})
            offer = {
                "advertiser_id": 1,
                "name": f"O{i}",
                "destination_url": "https://shop.example/",
                "payout_type": "cps",
                "payout_percent": "10",
            }
            await admin.create_offer(store, offer)
        codes = []
        for i in range(N):
            link = await admin.create_link(store, {"offer_id": 1, "affiliate_id": i + 1})
            row = await store.get_row("links", link)
            assert row is not None
            codes.append(row["code"])
            rule = {"commissionid": f"c{i}", "payout_type": "cpa", "payout_amount": "1"}
            await rules.create_rule(store, 1, rule)
        tracker = await open_tracker(store)
        for i, code in enumerate(codes):
            location = await tracker.click(code, "", "198.51.100.4", "Firefox", "")
            assert location is not None
            refid = parse_qs(urlsplit(location).query)["refid"][0]
            postback = {"refid": refid, "orderamount": "20", "ordernumber": f"N{i}"}
            await tracker.postback("GET", "198.51.100.4", postback)

    in_store(db, work)


def _run(*args: str, db: str) -> tuple[str, str]:
    out = subprocess.run(
        [CLICKBACK, *args, "--db", db], capture_output=True, text=True, timeout=60, check=True
    )
    return out.stdout, out.stderr


def _pages(command: tuple[str, ...], key: str, db: str, as_json: bool) -> list[list[str]]:
    """The keys of each page, following the cursor printed on stderr to the end."""
    pages: list[list[str]] = []
    cursor: list[str] = []
    while True:
        args = (*command, "--limit", "3", *cursor, *(["--json"] if as_json else []))
        stdout, stderr = _run(*args, db=db)
        if as_json:  # stdout holds the rows alone, a JSON object a line
            pages.append([str(orjson.loads(line)[key]) for line in stdout.splitlines()])
        else:
            pages.append([r[key] for r in table_rows(stdout)] if "┃" in stdout else [])
        more = re.search(r"--cursor (\S+)", stderr)
        if more is None:
            return pages
        assert len(pages) < 10, pages
        cursor = ["--cursor", more.group(1)]


LISTS = [
    (("advertiser", "list"), "id"),
    (("affiliate", "list"), "id"),
    (("offer", "list"), "id"),
    (("link", "list"), "id"),
    (("rule", "list", "1"), "id"),
    (("clicks", "list"), "refid"),
    (("conversions", "list"), "id"),
    (("postbacks", "list"), "id"),
    (("deliveries", "list"), "id"),
]


def test_every_list_pages_through_every_row_with_the_printed_cursor(
    sqlite_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each list showed its newest rows only, with no way to reach the older ones."""
    monkeypatch.setenv("COLUMNS", "250")  # RefIDs whole in the table
    _fill(sqlite_db)
    for command, key in LISTS:
        stdout, _ = _run(*command, "--limit", "1000", "--json", db=sqlite_db)
        every = [str(orjson.loads(line)[key]) for line in stdout.splitlines()]
        assert len(every) >= N, (command, every)
        for as_json in (True, False) if command[0] in ("clicks", "postbacks") else (True,):
            pages = _pages(command, key, sqlite_db, as_json)
            assert all(len(p) == 3 for p in pages[:-1]) and pages[-1], (command, pages)
            assert [k for p in pages for k in p] == every, (command, as_json, pages)


def test_the_conversions_and_clicks_lists_page_on_each_engine(any_db: str) -> None:
    _fill(any_db)
    for command, key in (
        (("clicks", "list", "--no-test"), "refid"),
        (("conversions", "list"), "id"),
    ):
        pages = _pages(command, key, any_db, as_json=True)
        assert [len(p) for p in pages] == [3, 3, 1], (command, pages)
        assert len({k for p in pages for k in p}) == N


def test_the_token_and_rates_lists_page_on_each_engine(any_db: str) -> None:
    """They printed every row at once, with no --limit or --cursor."""

    async def work(store: Store) -> None:
        await store.migrate()
        for i in range(N):
            await store.create_token(f"t{i}", f"hash{i}", "read")
        rates = [(c, f"2000-01-0{d}", "1.5") for c in ("EUR", "GBP") for d in range(1, 5)]
        await store.put_rates(rates[:N])

    in_store(any_db, work)
    pages = _pages(("token", "list"), "id", any_db, as_json=True)
    assert pages == [["7", "6", "5"], ["4", "3", "2"], ["1"]]
    assert _pages(("token", "list"), "id", any_db, as_json=False) == pages
    pages = _pages(("rates", "list"), "date", any_db, as_json=True)
    assert [len(p) for p in pages] == [3, 3, 1]
    stdout, stderr = _run("rates", "list", "--limit", "1000", "--json", db=any_db)
    rows = [orjson.loads(line) for line in stdout.splitlines()]
    assert [(r["currency"], r["date"]) for r in rows][2:5] == [
        ("EUR", "2000-01-03"),
        ("EUR", "2000-01-04"),
        ("GBP", "2000-01-01"),
    ]
    assert len(rows) == N and "--cursor" not in stderr
    assert pages[0] == ["2000-01-01", "2000-01-02", "2000-01-03"]  # by currency, then date
    stdout, _ = _run("rates", "list", "--currency", "GBP", "--json", db=any_db)
    assert [orjson.loads(line)["date"] for line in stdout.splitlines()] == [
        "2000-01-01",
        "2000-01-02",
        "2000-01-03",
    ]


def test_a_last_page_prints_no_cursor_and_a_bad_one_is_refused(sqlite_db: str) -> None:
    _fill(sqlite_db)
    stdout, stderr = _run("advertiser", "list", "--limit", str(N), "--json", db=sqlite_db)
    assert len(stdout.splitlines()) == N and "--cursor" not in stderr
    for bad in (("--cursor", "not-one"), ("--limit", "0"), ("--limit", "-1")):
        out = subprocess.run(
            [CLICKBACK, "postbacks", "list", *bad, "--db", sqlite_db],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 2, (bad, out.stdout, out.stderr[-2000:])
        assert "Traceback" not in out.stdout + out.stderr


def _exported(*args: str, db: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(cli(*args, "--out", "-", db=db))))


def test_conversions_export_filters_by_affiliate_and_test(any_db: str) -> None:
    """`conversions export` took --offer and --status, not --affiliate or --test as the
    list does."""
    _fill(any_db)
    cli("integration-test", "1", "--simulate", "--json", db=any_db)
    every = _exported("conversions", "export", db=any_db)
    assert len(every) == N + 1
    [test] = _exported("conversions", "export", "--test", db=any_db)
    assert test["is_test"] == "true"
    real = _exported("conversions", "export", "--no-test", db=any_db)
    assert sorted(r["ordernumber"] for r in real) == [f"N{i}" for i in range(N)]
    [one] = _exported("conversions", "export", "--affiliate", "2", db=any_db)
    assert (one["affiliate_id"], one["ordernumber"]) == ("2", "N1")


def test_clicks_export_writes_every_matching_click_oldest_first(any_db: str) -> None:
    _fill(any_db)
    cli("integration-test", "1", "--simulate", "--json", db=any_db)
    every = _exported("clicks", "export", db=any_db)
    assert len(every) == N + 1 and list(every[0]) == EXPORT_COLUMNS["clicks"]
    listed, _ = _run("clicks", "list", "--limit", "1000", "--json", db=any_db)
    newest_first = [orjson.loads(line)["refid"] for line in listed.splitlines()]
    assert [r["refid"] for r in every] == newest_first[::-1]
    assert [r["is_test"] for r in _exported("clicks", "export", "--test", db=any_db)] == ["true"]
    assert len(_exported("clicks", "export", "--no-test", db=any_db)) == N
    [one] = _exported("clicks", "export", "--affiliate", "3", db=any_db)
    assert one["affiliate_id"] == "3"
    assert len(_exported("clicks", "export", "--limit", "2", db=any_db)) == 2
    out = subprocess.run(
        [CLICKBACK, "clicks", "export", "--out", "-", "--no-test", "--db", any_db],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert f"{N} clicks written" in out.stderr


def test_a_list_piped_without_columns_is_not_squeezed_into_80(sqlite_db: str) -> None:
    """`clickback clicks list | less`: not a terminal, no COLUMNS told. The table was cut
    to 80 columns, each RefID folded over many lines and every header cut (`rece…`)."""
    _fill(sqlite_db)
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    out = subprocess.run(
        [CLICKBACK, "clicks", "list", "--db", sqlite_db], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    [row, *_] = table_rows(out.stdout)
    assert len(row["refid"]) == 36 and "created_at" in row, row


def test_lists_say_what_is_archived(sqlite_db: str) -> None:
    """An archived advertiser, affiliate or link looked like a live one in the tables."""
    from tests.cli.test_cli_ledger import setup

    setup(sqlite_db)
    cli("affiliate", "create", "Other", db=sqlite_db)

    async def archive(store: Store) -> None:
        await admin.archive(store, "affiliates", 1)
        await admin.archive(store, "advertisers", 1)

    in_store(sqlite_db, archive)
    for what in ("advertiser", "affiliate"):
        rows = table_rows(cli(what, "list", db=sqlite_db, columns=400))
        names = {r["id"]: r["name"] for r in rows}
        assert names["1"].endswith(" (archived)"), (what, rows)
        if what == "affiliate":
            assert names["2"] == "Other", rows
    [link] = table_rows(cli("link", "list", db=sqlite_db, columns=400))
    assert link["active"] == "archived", link
    # the tracking URL, what is copied from the list, whole at 80 columns (folded)
    [link] = [orjson.loads(x) for x in cli("link", "list", "--json", db=sqlite_db).splitlines()]
    [row] = table_rows(cli("link", "list", db=sqlite_db, columns=80))
    assert row["tracking_url"].replace(" ", "") == link["tracking_url"], row


def test_archive_commands_archive_what_belongs_too(sqlite_db: str) -> None:
    """The CLI archives as the API's DELETE does (it was the only way): an advertiser
    with its offers and links; an unknown id is refused."""
    from tests.cli.test_cli_ledger import setup

    setup(sqlite_db)
    said = " ".join(cli("advertiser", "archive", "1", db=sqlite_db).split())
    assert "advertiser 1 archived, with its offers and their links" in said, said
    [offer] = [orjson.loads(x) for x in cli("offer", "list", "--json", db=sqlite_db).splitlines()]
    assert offer["status"] == "archived", offer
    [link] = [orjson.loads(x) for x in cli("link", "list", "--json", db=sqlite_db).splitlines()]
    assert link["archived_at"], link
    out = subprocess.run(
        [CLICKBACK, "link", "archive", "99", "--db", sqlite_db],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "link 99 does not exist" in out.stdout, out
