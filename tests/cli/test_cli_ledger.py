"""The integration test, postback URL and replay from the command line."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest
import typer

from clickback.cli import app
from clickback.domain.ports import Store
from clickback.domain.security import sign
from clickback.domain.tracker import open_tracker
from tests.cli.conftest import (
    CLICKBACK,
    Server,
    cli,
    click,
    fire,
    in_store,
    in_tracker,
    table_rows,
)


def setup(db: str, url: str = "http://127.0.0.1:9/landing", *advertiser: str) -> str:
    cli("advertiser", "create", "Shop", *advertiser, db=db)
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


def test_postbacks_list_shows_errors_and_refids_whole_and_filters_by_code_and_since(
    any_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    forged = "A" * 36 + "x"  # one character too many
    fire(
        any_db,
        {"refid": forged, "orderamount": "abc", "ordernumber": "F1"},
        {"orderamount": "5"},
    )
    rows = {r["id"]: r for r in table_rows(cli("postbacks", "list", db=any_db))}
    assert rows["1"]["refid"] == forged
    errors = {i: r["errors"].replace(" ", "") for i, r in rows.items()}  # as wrapped
    assert errors["1"] == "invalid_amount(orderamount),unknown_refid(refid)"
    assert errors["2"] == "missing(refid),missing(ordernumber)"
    [only] = table_rows(cli("postbacks", "list", "--code", "invalid_amount", db=any_db))
    assert only["id"] == "1"
    [missing] = cli("postbacks", "list", "--code", "missing", "--json", db=any_db).splitlines()
    assert orjson.loads(missing)["id"] == 2
    assert cli("postbacks", "list", "--since", "2999-01-01", "--json", db=any_db) == ""
    lines = cli("postbacks", "list", "--since", "2020-01-01", "--json", db=any_db)
    assert len(lines.splitlines()) == 2


def test_a_value_holding_terminal_controls_is_printed_escaped(
    sqlite_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anyone may send a postback: an order number that clears the screen and retitles
    the window (ESC sequences) is shown as text, not acted on by the operator's
    terminal, in the lists of postbacks and clicks."""
    monkeypatch.setenv("COLUMNS", "200")
    code = setup(sqlite_db)
    fire(sqlite_db, {"refid": "nope", "orderamount": "1", "ordernumber": "\x1b]0;PWNED\x07\x1b[2J"})
    out = cli("postbacks", "list", db=sqlite_db)
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b]0;PWNED\\x07\\x1b[2J" in out
    in_tracker(sqlite_db, lambda t: t.click(code, "sub1=%1B[2Jx%C2%9B", "198.51.100.4", "", ""))
    out = cli("clicks", "list", db=sqlite_db)
    assert "\x1b" not in out and "\x9b" not in out and "\\x1b[2Jx\\x9b" in out


def test_postbacks_list_shows_a_refusal_with_no_field_as_its_code_alone(
    any_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refusal of the whole request (rate_limited, request_too_large) names no field:
    it is shown as its code, not `rate_limited (*)`."""
    monkeypatch.setenv("COLUMNS", "160")
    refid = click(any_db, setup(any_db))

    async def work(store: Store) -> None:
        tracker = await open_tracker(store, postback_rate_limit=0.5)  # a burst of one
        for order in ("L1", "L2"):
            await tracker.postback(
                "GET", "198.51.100.4", {"refid": refid, "orderamount": "1", "ordernumber": order}
            )

    in_store(any_db, work)
    rows = table_rows(cli("postbacks", "list", db=any_db))
    assert [(r["outcome"], r["errors"]) for r in rows] == [
        ("rate_limited", "rate_limited"),
        ("accepted", ""),
    ]


def test_postbacks_list_says_what_a_duplicate_repeats_and_what_differs(
    any_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    refid = click(any_db, setup(any_db))
    fire(
        any_db,
        {"refid": refid, "orderamount": "30", "ordernumber": "D1"},
        {"refid": refid, "orderamount": "30.00", "ordernumber": "D1"},
        {"refid": refid, "orderamount": "31", "ordernumber": "D1"},
    )
    rows = table_rows(cli("postbacks", "list", db=any_db))
    assert [(r["outcome"], r["conversion_id"]) for r in rows] == [
        ("duplicate", "1"),
        ("duplicate", "1"),
        ("accepted", "1"),
    ]
    errors = [r["errors"].replace(" ", "") for r in rows]  # as wrapped
    assert errors == [
        e.replace(" ", "")
        for e in [
            "duplicate_ordernumber (ordernumber): ordernumber 'D1' was counted already, as"
            " conversion 1; this one differs: stored orderamount 30.00 USD, this one 31.00 USD",
            "duplicate_ordernumber (ordernumber): ordernumber 'D1' was counted already, as"
            " conversion 1",
            "",
        ]
    ]


def test_bulk_replay_skips_what_a_replay_counted_and_exits_1_when_any_is_refused(
    any_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    refid = click(any_db, setup(any_db))
    paused = cli("offer", "pause", "1", db=any_db)
    assert "offer 1 paused; running servers follow within 1 s" in paused.replace("\n", " ")
    fire(any_db, {"refid": refid, "orderamount": "30", "ordernumber": "R1"})
    fire(any_db, {"refid": "A" * 36, "orderamount": "30", "ordernumber": "R2"})
    cli("offer", "activate", "1", db=any_db)
    replay = ["postbacks", "replay", "--outcome", "offer_paused", "--since", "2020-01-01"]
    [row] = table_rows(out := cli(*replay, db=any_db))
    assert (row["status"], row["conversion id"], row["code"]) == ("accepted", "1", "")
    assert "1 replayed, 0 refused again" in out
    for _ in range(2):  # neither run adds a ledger row
        out = cli(*replay, db=any_db)
        assert "0 replayed, 0 refused again, 1 skipped" in out
    assert len(cli("postbacks", "list", "--json", db=any_db).splitlines()) == 3
    # replaying one postback by its id is asked for: it answers, and is stored
    [row] = table_rows(cli("postbacks", "replay", "1", db=any_db))
    assert (row["status"], row["conversion id"]) == ("duplicate", "1")
    assert "0 replayed, 0 refused again, 1 skipped" in cli(*replay, db=any_db)
    refused = subprocess.run(
        [CLICKBACK, "postbacks", "replay", "--outcome", "unknown_refid", "--db", any_db],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1, refused
    [row] = table_rows(refused.stdout)
    assert (row["status"], row["code"]) == ("rejected", "unknown_refid")
    assert "1 replayed, 1 refused again" in refused.stdout
    # an id with filters: the filters were passed over, and the id replayed
    both = cli("postbacks", "replay", "2", "--code", "x", db=any_db, exit_code=2)
    assert "not both" in both
    assert len(cli("postbacks", "list", "--json", db=any_db).splitlines()) == 5


def test_replay_judges_a_signature_by_the_servers_skew_setting(
    any_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signed postback 600 s off, within a server's skew of 900 s, refused for a paused
    offer: replayed from the command line under the same settings, it is accepted (not
    `signature_expired` by the default skew of 300 s)."""
    monkeypatch.setenv("COLUMNS", "160")
    monkeypatch.setenv("CLICKBACK_SIGNATURE_SKEW_SECONDS", "900")
    refid = click(any_db, setup(any_db))
    cli("advertiser", "security", "1", "--signing-secret", "k", "--require-signature", db=any_db)
    cli("offer", "pause", "1", db=any_db)
    params = {"refid": refid, "orderamount": "30", "ordernumber": "S1"}
    params["ts"] = str(int(time.time()) - 600)
    params["sig"] = sign("k", params)

    async def work(store: Store) -> None:
        tracker = await open_tracker(store, signature_skew_s=900)  # as the server runs
        answer = await tracker.postback("GET", "198.51.100.4", params)
        assert answer.body["code"] == "offer_paused", answer.body

    in_store(any_db, work)
    cli("offer", "activate", "1", db=any_db)
    [row] = table_rows(cli("postbacks", "replay", "1", db=any_db))
    assert (row["status"], row["conversion id"], row["code"]) == ("accepted", "1", "")
    listed = table_rows(cli("postbacks", "list", db=any_db, columns=250))
    assert [(r["id"], r["replay_of"]) for r in listed] == [("2", "1"), ("1", "")]


def test_integration_test_with_simulate_passes_both(sqlite_db: str) -> None:
    setup(sqlite_db)
    test = orjson.loads(cli("integration-test", "1", "--simulate", "--json", db=sqlite_db))
    assert test["click_test"]["status"] == "passed"
    assert test["click_test"]["reasons"][0]["code"] == "landing_unreachable"
    assert test["conversion_test"]["status"] == "passed"
    convs = [orjson.loads(x) for x in cli("conversions", "list", "--json", db=sqlite_db).split()]
    assert [c["is_test"] for c in convs] == [True]


def test_an_integration_test_says_what_to_do_next(sqlite_db: str) -> None:
    """Signatures required: the test's answer says so, and how to sign. The offer
    paused: the click test says to activate it, and neither a URL to fire nor a
    simulated postback is offered without a RefID."""
    setup(sqlite_db)
    cli("advertiser", "security", "1", "--signing-secret", "K", "--require-signature", db=sqlite_db)
    test = orjson.loads(cli("integration-test", "1", "--json", db=sqlite_db))
    assert test["signature_required"] is True
    out = " ".join(cli("integration-test", "1", db=sqlite_db, columns=200).split())
    assert "Fire the postback URL above" in out and "must be signed" in out
    # the result looked at again later, as the API's GET shows it
    second = out.split("integration test ", 1)[1].split()[0]
    assert f"clickback integration-result {second}" in out
    again = " ".join(cli("integration-result", second, db=sqlite_db, columns=200).split())
    assert f"integration test {second} for offer 1" in again
    assert "conversion test: pending" in again and "Fire the postback URL above" in again
    shown = orjson.loads(cli("integration-result", str(test["id"]), "--json", db=sqlite_db))
    assert shown["id"] == test["id"] and shown["click_test"] == test["click_test"]
    cli("integration-result", "99", db=sqlite_db, exit_code=2)
    cli("offer", "pause", "1", db=sqlite_db)
    run = subprocess.run(
        [CLICKBACK, "integration-test", "1", "--simulate", "--db", sqlite_db],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    out = " ".join(run.stdout.split())
    assert run.returncode == 1 and "clickback offer activate 1" in out, out
    assert "nothing fired" in out and "Fire the postback URL" not in out
    assert "waiting for the click test" in out


def test_simulate_passes_with_the_postback_rate_limit_set_low(
    sqlite_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLICKBACK_POSTBACK_RATE_LIMIT", "0.01")  # one postback per 100 s
    setup(sqlite_db)
    for _ in range(2):
        test = orjson.loads(cli("integration-test", "1", "--simulate", "--json", db=sqlite_db))
        assert test["conversion_test"]["status"] == "passed", test["conversion_test"]


def test_conversions_list_shows_which_are_test_conversions(
    any_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    refid = click(any_db, setup(any_db))
    sale = {"refid": refid, "orderamount": "30", "ordernumber": "REAL-1", "currency": "JPY"}
    fire(any_db, sale)
    cli("integration-test", "1", "--simulate", db=any_db)
    rows = table_rows(cli("conversions", "list", db=any_db))
    assert [(r["ordernumber"], r["is_test"]) for r in rows] == [
        (rows[0]["ordernumber"], "True"),
        ("REAL-1", "False"),
    ]
    # the commission's own currency (the offer's or the order's, by the payout), beside
    # the order's
    [shown] = [orjson.loads(x) for x in cli("conversions", "list", "--json", db=any_db).split()][1:]
    assert rows[1]["currency"] == "JPY"
    assert rows[1]["commission_currency"] == shown["commission_currency"] != "", rows[1]
    assert rows[0]["ordernumber"].startswith("SIMULATED-")
    # by when, and by the link and the advertiser
    made = shown["created_at"]
    empty = ["conversions", "list", "--since", made, "--until", made, "--db", any_db]
    out = subprocess.run([CLICKBACK, *empty], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "invalid_range" in out.stdout + out.stderr, out
    [same] = listed(any_db, "--since", made, "--no-test", "--link", "1", "--advertiser", "1")
    assert same["ordernumber"] == "REAL-1"
    assert listed(any_db, "--until", made, "--test") == []  # the test's came after
    assert listed(any_db, "--advertiser", "2") == []
    # the ledger says which postbacks were the tests', and lists them apart
    [simulated] = [c["ordernumber"] for c in listed(any_db, "--test")]
    ledger = table_rows(cli("postbacks", "list", db=any_db, columns=400))
    assert [(r["ordernumber"], r["is_test"]) for r in ledger] == [
        (simulated, "True"),
        ("REAL-1", "False"),
    ]
    assert [p["ordernumber"] for p in listed(any_db, "--test", kind="postbacks")] == [simulated]
    assert [p["ordernumber"] for p in listed(any_db, "--no-test", kind="postbacks")] == ["REAL-1"]
    [clicked] = [orjson.loads(x) for x in cli("clicks", "list", "--json", db=any_db).split()][-1:]
    assert len(listed(any_db, "--since", clicked["created_at"], kind="clicks")) == 2
    assert listed(any_db, "--until", clicked["created_at"], kind="clicks") == []


def listed(db: str, *args: str, kind: str = "conversions") -> list[dict[str, Any]]:
    return [orjson.loads(x) for x in cli(kind, "list", "--json", *args, db=db).splitlines()]


def test_postback_url_command(sqlite_db: str) -> None:
    setup(sqlite_db)
    out = cli("postback-url", "1", db=sqlite_db)
    assert out.splitlines()[0].endswith(
        "/postback?refid={refid}&orderamount=&ordernumber=&coupon=&currency=&geo=&commissionid="
    )
    assert "must be signed" not in out


def test_an_advertiser_taking_postbacks_from_anyone_is_said_and_its_token_required(
    sqlite_db: str,
) -> None:
    """An advertiser made without its token required takes a postback from whoever holds
    a RefID: `advertiser create` says so and how to require it; `advertiser security
    --require-token` does, and the postback URL then carries the token."""
    out = " ".join(cli("advertiser", "create", "Shop", db=sqlite_db).split())
    assert "taken from anyone who holds a RefID" in out, out
    assert "clickback advertiser security 1 --require-token" in out, out
    quiet = cli("advertiser", "create", "Safe", "--require-token", db=sqlite_db)
    assert "anyone" not in quiet
    offer = ["--advertiser", "1", "--name", "O", "--url", "https://s.example/"]
    cli("offer", "create", *offer, "--payout-amount", "3", db=sqlite_db)
    assert "&token=" not in cli("postback-url", "1", db=sqlite_db)
    cli("advertiser", "security", "1", "--require-token", db=sqlite_db)
    assert "&token=" in cli("postback-url", "1", db=sqlite_db)
    assert "nothing to change" in cli("advertiser", "security", "1", db=sqlite_db, exit_code=2)


def test_postback_url_command_says_a_signature_is_required(sqlite_db: str) -> None:
    setup(sqlite_db)
    cli("advertiser", "security", "1", "--signing-secret", "k", db=sqlite_db)
    assert "must be signed" not in cli("postback-url", "1", db=sqlite_db)  # sig optional
    cli("advertiser", "security", "1", "--require-signature", db=sqlite_db)
    out = " ".join(cli("postback-url", "1", db=sqlite_db).split())
    assert "must be signed" in out and "`ts`" in out and "`sig`" in out, out
    assert "docs/outbound.md" in out, out


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
    assert "0 replayed" in out and "1 skipped" in out  # the replay above counted it
    convs = cli("conversions", "list", "--json", db=server.db).split()
    assert len(convs) == 1 and orjson.loads(convs[0])["commission"] == "3.00"


def test_simulate_fires_as_the_advertiser_with_its_token_and_signature(sqlite_db: str) -> None:
    setup(sqlite_db, "http://127.0.0.1:9/landing", "--require-token", "--token", "t0k")
    test = orjson.loads(cli("integration-test", "1", "--simulate", "--json", db=sqlite_db))
    assert test["click_test"]["status"] == "passed"
    assert test["conversion_test"]["status"] == "passed", test["conversion_test"]
    cli("advertiser", "security", "1", "--signing-secret", "k", "--require-signature", db=sqlite_db)
    test = orjson.loads(cli("integration-test", "1", "--simulate", "--json", db=sqlite_db))
    assert test["conversion_test"]["status"] == "passed", test["conversion_test"]


def test_bad_input_read_before_the_database_is_a_clean_error(
    sqlite_db: str, tmp_path: Path
) -> None:
    setup(sqlite_db)
    rates = tmp_path / "rates.csv"
    rates.write_text("2026-11-01,EUR,abc\n")
    for args in (
        ["conversions", "export", "--out", "-", "--since", "yesterday"],
        ["rates", "import", str(rates)],
    ):
        out = subprocess.run(
            [CLICKBACK, *args, "--db", sqlite_db], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 2, out.stderr[-500:]
        assert "Traceback" not in out.stderr + out.stdout and "error (" in out.stdout, out


def test_cli_export_writes_the_same_csv_cells_as_the_api(sqlite_db: str) -> None:
    setup(sqlite_db)
    cli("integration-test", "1", "--simulate", "--json", db=sqlite_db)
    [row] = csv.DictReader(io.StringIO(cli("conversions", "export", "--out", "-", db=sqlite_db)))
    # the API export (`present.csv_cell`) writes booleans as true/false and lists as JSON
    assert (row["is_test"], row["click_missing"], row["flags"]) == ("true", "false", "[]"), row


def test_every_command_the_docs_spell_is_a_command() -> None:
    """Each `clickback …` in the README and docs/ names a command, not a group (README
    and the integration guide once said `clickback postbacks`, a usage error)."""
    root = Path(__file__).resolve().parents[2]
    history = root / "docs" / "performance-log.md"  # what was measured then, as it was
    texts = [root / "README.md", *sorted(set((root / "docs").glob("*.md")) - {history})]
    spelled = set()
    for path in texts:
        for line in re.findall(r"(?:`|^ +|\| )clickback ([a-z][-a-z| ]*)", path.read_text(), re.M):
            spelled.add(tuple(w for w in line.split() if w != "|"))
    assert ("postbacks", "list") in spelled and len(spelled) > 15
    top = typer.main.get_command(app)
    for words in spelled:
        command: Any = top
        for word in words:
            if not hasattr(command, "list_commands"):  # a command, not a group
                break
            names = word.split("|")  # `deliveries list|show|resend`
            assert set(names) <= set(command.list_commands(None)), (words, word)
            command = command.commands[names[0]]
        assert not hasattr(command, "list_commands"), f"`clickback {' '.join(words)}` is a group"


def test_every_command_line_in_the_docs_runs_as_pasted() -> None:
    """A `clickback …` line of a README or docs/ code block, pasted into a shell, runs that
    one command: no `a | b` meaning "or" (it once ran `clickback offer pause 1`), no
    `[--optional]` brackets (passed on as words)."""
    import shlex

    root = Path(__file__).resolve().parents[2]
    history = root / "docs" / "performance-log.md"
    for path in [root / "README.md", *sorted(set((root / "docs").glob("*.md")) - {history})]:
        text = path.read_text().replace("\\\n", " ")
        for line in re.findall(r"^ {4,}(clickback .*)$", text, re.M):
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            words = list(lexer)
            # (an empty word, `--fallback-url ''`, is an argument: not an operator)
            assert not any(w and set(w) <= set("|&;<>()") for w in words), (path.name, line)
            assert not any(w.startswith("[") for w in words), (path.name, line)


def test_an_integration_test_that_fails_exits_1(sqlite_db: str) -> None:
    setup(sqlite_db)
    cli("advertiser", "security", "1", "--ip-allowlist", "203.0.113.0/24", db=sqlite_db)
    command = [CLICKBACK, "integration-test", "1", "--simulate", "--db", sqlite_db]
    for extra in ([], ["--json"]):
        out = subprocess.run(command + extra, capture_output=True, text=True, timeout=60)
        assert out.returncode == 1, out.stdout + out.stderr  # a script can tell
        assert "failed" in out.stdout
    cli("advertiser", "security", "1", "--ip-allowlist", "", db=sqlite_db)
    assert "passed" in cli("integration-test", "1", "--simulate", db=sqlite_db)  # exit 0
