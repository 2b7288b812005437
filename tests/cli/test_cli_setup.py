"""Setting up and looking at offers, affiliates and conversions from the command line, as
an operator meets them: every command says what it does, an offer can be changed after
it is made, lists filter as the admin API's do."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
import typer

from clickback.cli import app
from clickback.domain.ports import Store
from tests.cli.conftest import CLICKBACK, cli, click, fire, in_store, table_rows
from tests.conftest import PG_URL


def _help(*words: str) -> str:
    out = subprocess.run(
        [CLICKBACK, *words, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    return out.stdout


def test_every_subcommand_has_a_help_line() -> None:
    top = typer.main.get_command(app)
    groups: dict[str, Any] = {
        name: command
        for name, command in top.commands.items()  # type: ignore[attr-defined]
        if hasattr(command, "commands")
    }
    assert {"offer", "affiliate", "advertiser", "link"} <= set(groups)
    for group, command in groups.items():
        commands = command.list_commands(None)
        rows = {
            line.strip("│ ").split(" ", 1)[0]: line.strip("│ ")
            for line in _help(group).splitlines()
            if line.startswith("│ ") and not line.startswith("│ --")
        }
        for name in commands:
            assert name in rows, (group, name)
            described = rows[name].removeprefix(name).strip()
            assert described, f"`clickback {group} {name}` has no help line"


def _fails(*args: str, db: str) -> str:
    """A command that must fail: its exit status is 2, its output (no traceback)."""
    out = subprocess.run([CLICKBACK, *args, "--db", db], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, (args, out.stdout, out.stderr[-2000:])
    assert "Traceback" not in out.stdout + out.stderr
    return " ".join((out.stdout + out.stderr).split())


def _offer(db: str, *extra: str) -> None:
    cli("advertiser", "create", "Shop", db=db)
    cli(
        "offer",
        "create",
        "--advertiser",
        "1",
        "--name",
        "Spring sale",
        "--url",
        "https://shop.example/landing",
        "--payout-amount",
        "5",
        "--currency",
        "EUR",
        *extra,
        db=db,
    )


def _shown(db: str, *args: str) -> dict[str, Any]:
    lines = cli(*args, "--json", db=db).splitlines()
    assert len(lines) == 1, lines
    result: dict[str, Any] = orjson.loads(lines[0])
    return result


def test_offer_create_takes_what_the_api_takes(any_db: str) -> None:
    _offer(
        any_db,
        "--approval",
        "review",
        "--status",
        "paused",
        "--fraud-rules",
        '{"bot": "reject", "fast_conversion": "hold"}',
        "--daily-cap",
        "25",
        "--cap-redirect",
    )
    offer = _shown(any_db, "offer", "show", "1")
    assert (offer["approval"], offer["status"], offer["daily_cap"]) == ("review", "paused", 25)
    assert offer["cap_redirect"] is True
    assert offer["fraud_rules"] == {"bot": "reject", "fast_conversion": "hold"}
    out = _fails(
        "offer",
        "create",
        "--advertiser",
        "1",
        "--name",
        "X",
        "--url",
        "https://x.example/",
        "--payout-amount",
        "5",
        "--approval",
        "later",
        db=any_db,
    )
    assert "invalid_approval" in out
    out = _fails(
        "offer",
        "create",
        "--advertiser",
        "1",
        "--name",
        "X",
        "--url",
        "https://x.example/",
        "--payout-amount",
        "5",
        "--fraud-rules",
        "{bot",
        db=any_db,
    )
    assert "invalid_fraud_rules" in out
    assert len(cli("offer", "list", "--json", db=any_db).splitlines()) == 1


def test_offer_and_rule_create_without_their_payout_are_refused_as_the_api_refuses(
    any_db: str,
) -> None:
    """A CPS offer or rule without its percent, a CPA one without its amount, revenue
    without its amount: refused `invalid_amount` (nothing made), not made paying 0."""
    _offer(any_db)
    create = ["offer", "create", "--advertiser", "1", "--name", "X", "--url", "https://x.example/"]
    for args, field in (
        (("--payout-type", "cps"), "payout_percent"),
        (("--payout-type", "cpa"), "payout_amount"),
        (("--payout-amount", "5", "--revenue-type", "cpa"), "revenue_amount"),
        (("--payout-amount", "5", "--revenue-type", "cps"), "revenue_percent"),
    ):
        out = _fails(*create, *args, db=any_db)
        assert "(invalid_amount)" in out and f"`{field}`" in out, (args, out)
    assert len(cli("offer", "list", "--json", db=any_db).splitlines()) == 1
    rule = ["rule", "create", "--offer", "1", "--commissionid", "vip"]
    for ptype, field in (("cps", "payout_percent"), ("cpa", "payout_amount")):
        out = _fails(*rule, "--payout-type", ptype, db=any_db)
        assert "(invalid_amount)" in out and f"`{field}`" in out, (ptype, out)
    assert cli("rule", "list", "1", "--json", db=any_db) == ""
    cli(*rule, "--payout-type", "cps", "--payout-percent", "12", db=any_db)
    [made] = [orjson.loads(x) for x in cli("rule", "list", "1", "--json", db=any_db).split()]
    assert (made["payout_type"], made["payout_percent"]) == ("cps", "12")


def test_offer_update_changes_what_it_is_given_and_prints_the_offer(
    any_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    _offer(any_db, "--fallback-url", "https://shop.example/")
    out = cli(
        "offer",
        "update",
        "1",
        "--name",
        "Summer sale",
        "--payout-amount",
        "7.5",
        "--revenue-type",
        "cps",
        "--revenue-percent",
        "12.5",
        "--window-days",
        "7",
        db=any_db,
    )
    shown = {r["field"]: r["value"] for r in table_rows(out)}
    assert shown["name"] == "Summer sale" and shown["payout_amount"] == "7.50", out
    assert (shown["revenue_type"], shown["revenue_percent"]) == ("cps", "12.5")
    assert shown["attribution_window_days"] == "7"
    assert shown["fallback_url"] == "https://shop.example/"  # not given: kept
    assert shown["destination_url"] == "https://shop.example/landing"
    offer = _shown(any_db, "offer", "update", "1", "--fallback-url", "")  # '' clears it
    assert offer["fallback_url"] == "" and offer["name"] == "Summer sale"
    offer = _shown(
        any_db,
        "offer",
        "update",
        "1",
        "--approval",
        "review",
        "--status",
        "paused",
        "--fraud-rules",
        '{"bot": "hold"}',
        "--url",
        "https://shop.example/new",
        "--refid-param",
        "click_ref",
    )
    assert (offer["approval"], offer["status"], offer["fraud_rules"]) == (
        "review",
        "paused",
        {"bot": "hold"},
    )
    assert (offer["destination_url"], offer["refid_param"]) == (
        "https://shop.example/new",
        "click_ref",
    )
    offer = _shown(any_db, "offer", "update", "1", "--fraud-rules", "{}", "--revenue-type", "")
    assert offer["fraud_rules"] == {} and offer["revenue_type"] == ""
    assert _shown(any_db, "offer", "show", "1") == offer
    assert _shown(any_db, "offer", "update", "1", "--daily-cap", "40")["daily_cap"] == 40
    assert _shown(any_db, "offer", "update", "1", "--daily-cap", "")["daily_cap"] is None
    offer = _shown(any_db, "offer", "update", "1", "--auto-approve-days", "30")
    assert offer["auto_approve_days"] == 30
    # capped clicks go to a fallback URL: without one, --cap-redirect is said to do nothing
    env = {k: v for k, v in os.environ.items() if k != "CLICKBACK_FALLBACK_URL"}
    update = [CLICKBACK, "offer", "update", "1", "--db", any_db, "--json"]
    for extra, said in (([], True), (["--fallback-url", "https://shop.example/full"], False)):
        out = subprocess.run(
            [*update, "--cap-redirect", *extra], capture_output=True, text=True, env=env
        )
        assert orjson.loads(out.stdout)["cap_redirect"] is True, out.stderr
        assert ("--cap-redirect does nothing" in " ".join(out.stderr.split())) is said, out.stderr
    assert _shown(any_db, "offer", "update", "1", "--no-cap-redirect")["cap_redirect"] is False
    assert "0 conversions approved" in cli("conversions", "approve-due", db=any_db)


def test_offer_update_is_checked_as_the_api_checks_it(any_db: str) -> None:
    _offer(any_db)
    before = _shown(any_db, "offer", "show", "1")
    for args, code in (
        (("--payout-amount", "1.234"), "invalid_amount"),  # EUR has two decimals
        (("--currency", "JPY"), "currency_needs_amount"),
        (("--url", "javascript:alert(1)"), "invalid_url"),
        (("--window-days", "0"), "invalid_window"),
        (("--status", "archived"), "invalid_status"),
        (("--name", "New", "--fallback-url", "ftp://x"), "invalid_url"),
        (("--daily-cap", "0"), "invalid_cap"),
    ):
        assert f"({code})" in _fails("offer", "update", "1", *args, db=any_db), args
    assert _shown(any_db, "offer", "show", "1") == before  # nothing changed
    offer = _shown(any_db, "offer", "update", "1", "--currency", "JPY", "--payout-amount", "700")
    assert (offer["currency"], offer["payout_amount"]) == ("JPY", "700")


def test_offer_update_with_a_payout_field_of_the_other_type_says_to_send_payout_type(
    any_db: str,
) -> None:
    _offer(any_db)  # CPA
    before = _shown(any_db, "offer", "show", "1")
    out = _fails("offer", "update", "1", "--payout-percent", "10", db=any_db)
    assert "(needs_payout_type)" in out and "CPS offers" in out and "is CPA" in out, out
    assert "payout_type" in out and "payout_amount" not in out, out
    assert _shown(any_db, "offer", "show", "1") == before
    offer = _shown(any_db, "offer", "update", "1", "--payout-type", "cps", "--payout-percent", "10")
    assert (offer["payout_type"], offer["payout_percent"]) == ("cps", "10")


def test_an_unknown_offer_is_a_clear_error(any_db: str) -> None:
    _offer(any_db)
    for args in (("update", "99", "--name", "X"), ("show", "99")):
        out = _fails("offer", *args, db=any_db)
        assert "offer 99 does not exist" in out, out
    assert "nothing to change" in _fails("offer", "update", "1", db=any_db)


def test_conversions_list_filters_by_test_affiliate_and_status(any_db: str) -> None:
    _offer(any_db)
    cli("affiliate", "create", "Pub", db=any_db)
    cli("affiliate", "create", "Other", db=any_db)
    for affiliate in ("1", "2"):
        cli("link", "create", "--offer", "1", "--affiliate", affiliate, db=any_db)
    codes = [
        orjson.loads(line)["code"]
        for line in reversed(cli("link", "list", "--json", db=any_db).splitlines())
    ]
    orders = {"N1": codes[0], "N2": codes[1], "N3": codes[1]}
    for order, code in orders.items():
        refid = click(any_db, code)
        fire(any_db, {"refid": refid, "orderamount": "20", "ordernumber": order})
    cli("conversions", "status", "3", "reversed", "--reason", "chargeback", db=any_db)
    cli("integration-test", "1", "--simulate", "--json", db=any_db)

    def listed(*args: str) -> list[tuple[str, str, bool]]:
        rows = [
            orjson.loads(x) for x in cli("conversions", "list", *args, "--json", db=any_db).split()
        ]
        return sorted((r["ordernumber"], r["status"], r["is_test"]) for r in rows)

    every = listed()
    assert len(every) == 4 and sum(r[2] for r in every) == 1  # both, by default
    assert [r[0] for r in listed("--no-test")] == ["N1", "N2", "N3"]
    assert [r[2] for r in listed("--test")] == [True]
    assert [r[0] for r in listed("--affiliate", "2")] == ["N2", "N3"]
    assert listed("--status", "reversed") == [("N3", "reversed", False)]
    assert [r[0] for r in listed("--status", "approved", "--no-test")] == ["N1", "N2"]
    assert listed("--status", "pending") == []
    # refused as every list refuses a value its column does not take (`invalid_filter`),
    # naming the values it does
    out = _fails("conversions", "list", "--status", "aproved", db=any_db)
    assert "(invalid_filter)" in out, out
    assert "`status` must be one of pending, approved, rejected, reversed" in out, out


def test_affiliate_show_lists_its_per_offer_overrides(
    any_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLICKBACK_OUTBOUND_ALLOW_PRIVATE", "1")
    monkeypatch.setenv("COLUMNS", "200")
    _offer(any_db)
    cli("affiliate", "create", "Pub", db=any_db)
    shown = _shown(any_db, "affiliate", "show", "1")
    assert shown["name"] == "Pub" and shown["postback_overrides"] == []
    cli(
        "affiliate", "postback", "1", "--url", "http://127.0.0.1:9/own", "--secret", "s3", db=any_db
    )
    cli(
        "affiliate",
        "postback",
        "1",
        "--offer",
        "1",
        "--url",
        "http://127.0.0.1:9/o1",
        "--events",
        "approved",
        db=any_db,
    )
    shown = _shown(any_db, "affiliate", "show", "1")
    [override] = shown["postback_overrides"]
    assert (override["offer_id"], override["postback_url"], override["postback_events"]) == (
        1,
        "http://127.0.0.1:9/o1",
        ["approved"],
    )
    assert shown["postback_url"] == "http://127.0.0.1:9/own"
    assert shown["postback_secret"] == "(hidden)"  # as `affiliate postback`: never printed
    out = cli("affiliate", "show", "1", db=any_db)
    assert "s3" not in out.split()
    [row] = table_rows(out.split("per-offer postback overrides")[1])
    assert (row["offer_id"], row["postback_url"], row["postback_events"]) == (
        "1",
        "http://127.0.0.1:9/o1",
        "approved",
    )
    assert "affiliate 9 does not exist" in _fails("affiliate", "show", "9", db=any_db)


def test_a_list_filter_on_a_column_of_set_values_refuses_any_other(sqlite_db: str) -> None:
    """`--outcome acepted` listed nothing, as if no postback had been accepted."""
    cli("migrate", db=sqlite_db)
    for args, name in (
        (("postbacks", "list", "--outcome", "acepted"), "outcome"),
        (("postbacks", "replay", "--outcome", "paused"), "outcome"),
        (("postbacks", "replay", "--code", "offer_pasued"), "code"),
        (("postbacks", "list", "--code", "tokn_invalid"), "code"),
        (("deliveries", "list", "--state", "sent"), "state"),
        (("conversions", "export", "--out", "-", "--status", "aproved"), "status"),
    ):
        out = _fails(*args, db=sqlite_db)
        assert "(invalid_filter)" in out and f"`{name}` must be one of" in out, out
    assert cli("postbacks", "list", "--outcome", "accepted", "--json", db=sqlite_db) == ""
    assert cli("postbacks", "list", "--code", "token_invalid", "--json", db=sqlite_db) == ""


def test_clicks_list_filters_by_test_affiliate_link_and_sub1(sqlite_db: str) -> None:
    from tests.cli.conftest import in_tracker

    _offer(sqlite_db)
    cli("affiliate", "create", "Pub", db=sqlite_db)
    cli("affiliate", "create", "Other", db=sqlite_db)
    for affiliate in ("1", "2"):
        cli("link", "create", "--offer", "1", "--affiliate", affiliate, db=sqlite_db)
    links = {
        r["affiliate_id"]: (r["id"], r["code"])
        for r in map(orjson.loads, cli("link", "list", "--json", db=sqlite_db).split())
    }
    made = {}
    for name, (affiliate, query) in {
        "a": (1, "sub1=fb"),
        "b": (2, "sub1=fb"),
        "c": (2, ""),
    }.items():
        code = links[affiliate][1]
        made[name] = in_tracker(
            sqlite_db, lambda t, c=code, q=query: t.click(c, q, "198.51.100.4", "Firefox", "")
        )
    cli("integration-test", "1", "--simulate", "--json", db=sqlite_db)
    refids = {n: loc.split("refid=")[1].split("&")[0] for n, loc in made.items()}

    def listed(*args: str) -> list[str]:
        rows = map(orjson.loads, cli("clicks", "list", *args, "--json", db=sqlite_db).split())
        by_refid = {v: k for k, v in refids.items()}
        return sorted(by_refid.get(r["refid"], "test" if r["is_test"] else "?") for r in rows)

    assert listed() == ["a", "b", "c", "test"]
    assert listed("--no-test") == ["a", "b", "c"]
    assert listed("--test") == ["test"]
    assert listed("--affiliate", "2") == ["b", "c"]
    assert listed("--link", str(links[1][0])) == ["a"]
    assert listed("--sub1", "fb") == ["a", "b"]
    assert listed("--sub1", "", "--no-test") == ["c"]


def test_offer_cap_sets_lists_and_removes_an_affiliates_daily_cap(any_db: str) -> None:
    _offer(any_db)
    cli("affiliate", "create", "Pub", db=any_db)
    out = cli("offer", "cap", "1", "--affiliate", "1", "--daily-cap", "15", db=any_db)
    assert "affiliate 1's daily cap on offer 1: 15" in " ".join(out.split())
    [row] = [orjson.loads(x) for x in cli("offer", "caps", "1", "--json", db=any_db).splitlines()]
    assert (row["affiliate_id"], row["daily_cap"]) == (1, 15)
    assert "(invalid_cap)" in _fails(
        "offer", "cap", "1", "--affiliate", "1", "--daily-cap", "x", db=any_db
    )
    assert "affiliate 9 does not exist" in _fails(
        "offer", "cap", "1", "--affiliate", "9", "--daily-cap", "3", db=any_db
    )
    cli("offer", "cap", "1", "--affiliate", "1", "--daily-cap", "", db=any_db)
    assert cli("offer", "caps", "1", "--json", db=any_db).strip() == ""
    assert "no daily cap of its own" in _fails(
        "offer", "cap", "1", "--affiliate", "1", "--daily-cap", "", db=any_db
    )


def test_advertiser_list_masks_postback_tokens_unless_asked(any_db: str) -> None:
    """A list on screen (or pasted into a ticket) no longer shows the secrets an
    advertiser's server signs and authenticates with: the first 4 characters of a token,
    then `…` (a short one not even those); `--show-tokens` prints them whole, to copy."""
    cli("advertiser", "create", "Shop", "--token", "s3cret-token-of-shop", db=any_db)
    cli("advertiser", "create", "Tiny", "--token", "t0k", db=any_db)
    cli("advertiser", "security", "1", "--signing-secret", "hmac-key-of-the-shop", db=any_db)
    table = cli("advertiser", "list", db=any_db)
    assert "s3cret-token-of-shop" not in table and "t0k" not in table
    rows = {r["name"]: r for r in table_rows(table)}
    assert rows["Shop"]["postback_token"] == "s3cr…"
    assert rows["Tiny"]["postback_token"] == "…"
    listed = [
        orjson.loads(x) for x in cli("advertiser", "list", "--json", db=any_db).split("\n") if x
    ]
    assert [(a["postback_token"], a["signing_secret"]) for a in listed] == [
        ("…", ""),  # none set: nothing to hide
        ("s3cr…", "hmac…"),
    ]
    whole = cli("advertiser", "list", "--show-tokens", db=any_db)
    assert {r["name"]: r["postback_token"] for r in table_rows(whole)} == {
        "Shop": "s3cret-token-of-shop",
        "Tiny": "t0k",
    }
    listed = [
        orjson.loads(x)
        for x in cli("advertiser", "list", "--json", "--show-tokens", db=any_db).split("\n")
        if x
    ]
    assert listed[1]["postback_token"] == "s3cret-token-of-shop"
    assert listed[1]["signing_secret"] == "hmac-key-of-the-shop"
    # a token as generated, on a terminal of 80 columns or piped: whole, folded, to copy
    cli("advertiser", "create", "A shop with a long name to narrow the table", db=any_db)
    made = orjson.loads(
        cli("advertiser", "list", "--json", "--show-tokens", db=any_db).split("\n")[0]
    )
    narrow = cli("advertiser", "list", "--show-tokens", db=any_db, columns=80)
    assert max(len(line) for line in narrow.splitlines()) <= 80
    shown = {r["id"]: r["postback_token"] for r in table_rows(narrow)}
    assert len(made["postback_token"]) > 20 and shown[str(made["id"])] == made["postback_token"]


def test_an_archived_offer_reads_archived_in_offer_list_and_show(any_db: str) -> None:
    _offer(any_db)

    async def archive(store: Store) -> None:
        assert await store.archive_row("offers", 1)

    in_store(any_db, archive)
    assert _shown(any_db, "offer", "show", "1")["status"] == "archived"
    [listed] = [orjson.loads(x) for x in cli("offer", "list", "--json", db=any_db).splitlines()]
    assert listed["status"] == "archived"
    # the table may cut the cell to the console's width (`archi…`), never `active`
    assert table_rows(cli("offer", "list", db=any_db))[0]["status"].startswith("archi")
    assert "offer_archived" in _fails("offer", "activate", "1", db=any_db)


def test_a_postgresql_schema_that_does_not_exist_is_said_in_one_line() -> None:
    """It was a traceback (InvalidSchemaNameError) from the first statement."""
    db = f"{PG_URL}?schema=no_such_schema_x"
    out = cli("offer", "list", db=db, exit_code=2)
    assert "has no schema 'no_such_schema_x'" in out and "Traceback" not in out
    assert 'CREATE SCHEMA "no_such_schema_x"' in out.replace("\n", " ")


def test_a_command_on_a_sqlite_file_not_there_says_it_made_a_new_one(tmp_path: Path) -> None:
    """`conversions export` without its --db made an empty database where it ran and
    wrote `0 conversions`, which looked like an answer."""
    db = f"sqlite:///{tmp_path}/nowhere.db"
    args = ["conversions", "export", "--out", "-", "--db", db]
    out = subprocess.run([CLICKBACK, *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    said = " ".join(out.stderr.split())
    assert f"note: there was no database at {tmp_path}/nowhere.db: a new one was made" in said
    again = subprocess.run([CLICKBACK, *args], capture_output=True, text=True, timeout=60)
    assert "no database" not in again.stderr, again.stderr
    # `migrate` is asked to make one: not said
    made = [CLICKBACK, "migrate", "--db", f"sqlite:///{tmp_path}/made.db"]
    out = subprocess.run(made, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "no database" not in out.stderr, out.stderr
