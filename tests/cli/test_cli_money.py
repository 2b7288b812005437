"""An operator sets up a token-protected advertiser with a commissionid rule, and manages
the money, from the command line alone."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest

from tests.cli.conftest import CLICKBACK, Server, cli, click, fire, table_rows


def test_second_advertiser_with_token_and_rule_by_cli(server: Server, tmp_path: Path) -> None:
    db = server.db
    cli("advertiser", "create", "First", db=db)
    cli("advertiser", "create", "Second", "--require-token", "--token", "s3cret", db=db)
    cli(
        "offer",
        "create",
        "--advertiser",
        "2",
        "--name",
        "Shoes",
        "--url",
        "https://shoes.example/",
        "--payout-type",
        "cps",
        "--payout-percent",
        "3",
        "--currency",
        "EUR",
        db=db,
    )
    cli(
        "rule",
        "create",
        "--offer",
        "1",
        "--commissionid",
        "new_customer",
        "--payout-type",
        "cps",
        "--payout-percent",
        "10",
        db=db,
    )
    [rule] = [orjson.loads(x) for x in cli("rule", "list", "1", "--json", db=db).split()]
    assert (rule["commissionid"], rule["payout_percent"]) == ("new_customer", "10")
    # the same rule again (a payout raised so would never apply: the older one would) is
    # refused, naming the rule to archive first; archived, the new one is made
    raised = ("rule", "create", "--offer", "1", "--commissionid", "new_customer")
    raised += ("--payout-type", "cps", "--payout-percent", "12")
    out = cli(*raised, db=db, exit_code=2)
    assert "rule_exists" in out and "clickback rule archive 1" in out, out
    assert "rule 1 archived" in cli("rule", "archive", "1", db=db)
    cli(*raised, db=db)
    cli("rule", "archive", "2", db=db)
    cli(*raised[:-1], "10", db=db)  # as before: 10 %
    cli("affiliate", "create", "Pub", db=db)
    code = re.search(r"/c/(\S+)", cli("link", "create", "--offer", "1", "--affiliate", "1", db=db))
    assert code
    server.start()

    refid = parse_qs(
        urlsplit(httpx.get(f"{server.base}/c/{code.group(1)}").headers["location"]).query
    )["refid"][0]
    base = f"{server.base}/postback?refid={refid}&orderamount=80.00&currency=EUR"
    assert httpx.get(f"{base}&ordernumber=N1&commissionid=new_customer").status_code == 403
    r = httpx.get(f"{base}&ordernumber=N1&commissionid=new_customer&token=s3cret")
    assert r.json()["commission"] == "8.00"
    r = httpx.get(f"{base}&ordernumber=N2&commissionid=returning&token=s3cret")
    assert r.json()["commission"] == "2.40" and r.json()["warnings"][0]["code"] == (
        "unknown_commissionid"
    )

    out = cli(
        "rates",
        "import",
        str(_file(tmp_path, "rates.csv", "date,currency,rate\n2000-01-01,EUR,1.25\n")),
        db=db,
    )
    assert "2 conversions valued" in out
    out = cli("conversions", "status", "1", "reversed", "--reason", "chargeback", db=db)
    assert "reversed" in out
    out = cli(
        "conversions",
        "import-statuses",
        str(_file(tmp_path, "v.csv", "N2,reversed,refund\nN1,approved,ok\nN9,approved,ok\n")),
        "--advertiser",
        "2",
        db=db,
        exit_code=1,  # N9 is no order of the advertiser's: a line refused
    )
    assert "1 changed, 2 not" in out

    target = tmp_path / "conversions.csv"
    cli("conversions", "export", "--out", str(target), db=db)
    rows = {r["ordernumber"]: r for r in csv.DictReader(io.StringIO(target.read_text()))}
    assert rows["N1"]["status"] == rows["N2"]["status"] == "reversed"
    assert (rows["N1"]["base_amount"], rows["N1"]["base_commission"]) == ("100.00", "10.00")


def _file(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def test_csv_imports_read_a_file_saved_with_a_byte_order_mark(any_db: str, tmp_path: Path) -> None:
    """Excel's "CSV UTF-8" starts the file with a byte-order mark: the header (or the
    first order number) is read without it, as the API reads an upload."""
    from tests.cli.test_cli_ledger import setup

    refid = click(any_db, setup(any_db))
    fire(
        any_db,
        *({"refid": refid, "orderamount": "10", "ordernumber": n} for n in ("B1", "B2")),
    )

    def bom(name: str, text: str) -> str:
        path = tmp_path / name
        path.write_bytes(text.encode("utf-8-sig"))
        return str(path)

    rates = bom("rates.csv", "date,currency,rate\n2026-11-01,EUR,1.08\n")
    assert "1 rates stored" in cli("rates", "import", rates, db=any_db)
    for text in ("ordernumber,status,reason\nB1,reversed,refund\n", "B2,reversed,refund\n"):
        out = cli(
            "conversions", "import-statuses", bom("v.csv", text), "--advertiser", "1", db=any_db
        )
        assert "1 changed, 0 not" in out, out
    statuses = {
        c["ordernumber"]: c["status"]
        for c in map(orjson.loads, cli("conversions", "list", "--json", db=any_db).split())
    }
    assert statuses == {"B1": "reversed", "B2": "reversed"}
    latin = tmp_path / "latin.csv"
    latin.write_bytes("B1,approved,d\xe9j\xe0 pay\xe9\n".encode("latin-1"))
    statuses_of = ["conversions", "import-statuses", str(latin), "--advertiser", "1"]
    out = subprocess.run(
        [CLICKBACK, *statuses_of, "--db", any_db],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "(invalid_encoding)" in out.stdout, out
    assert "Traceback" not in out.stderr


def test_offer_create_checks_the_revenue_against_the_base_currency(sqlite_db: str) -> None:
    cli("advertiser", "create", "Shop", db=sqlite_db)
    offer = ["offer", "create", "--advertiser", "1", "--name", "O", "--url", "https://s.example/"]
    offer += ["--payout-amount", "1", "--revenue-type", "cpa", "--db", sqlite_db]
    env = {**os.environ, "CLICKBACK_BASE_CURRENCY": "JPY"}
    out = subprocess.run(
        [CLICKBACK, *offer, "--revenue-amount", "1.5"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 2 and "invalid_amount" in out.stdout, out.stdout + out.stderr
    assert "JPY" in out.stdout
    out = subprocess.run(
        [CLICKBACK, *offer, "--revenue-amount", "150"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    [made] = [orjson.loads(x) for x in cli("offer", "list", "--json", db=sqlite_db).split()]
    assert (made["revenue_type"], made["revenue_amount"]) == ("cpa", "150")


def test_conversions_export_writes_at_most_its_limit(sqlite_db: str) -> None:
    from tests.cli.test_cli_ledger import setup

    setup(sqlite_db)
    for _ in range(3):  # a test conversion each, made without a server
        cli("integration-test", "1", "--simulate", "--json", db=sqlite_db)

    def exported(*args: str) -> list[str]:
        out = cli("conversions", "export", "--out", "-", *args, db=sqlite_db)
        return [r["id"] for r in csv.DictReader(io.StringIO(out))]

    assert exported() == ["1", "2", "3"]
    assert exported("--limit", "2") == ["1", "2"]  # oldest first
    assert exported("--limit", "5000") == ["1", "2", "3"]
    out = subprocess.run(
        [CLICKBACK, "conversions", "export", "--out", "-", "--limit", "0", "--db", sqlite_db],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "--limit" in out.stderr, out.stderr


def test_conversions_export_reads_a_spaced_offset_as_plus(sqlite_db: str) -> None:
    from tests.cli.test_cli_ledger import setup

    setup(sqlite_db)
    cli("integration-test", "1", "--simulate", "--json", db=sqlite_db)

    def exported(*args: str) -> list[str]:
        out = cli("conversions", "export", "--out", "-", *args, db=sqlite_db)
        return [r["id"] for r in csv.DictReader(io.StringIO(out))]

    # as pasted from a decoded URL: the offset's `+` became a space
    assert exported("--since", "2000-01-01T00:30:00 01:00") == ["1"]
    assert exported("--until", "2000-01-01T00:30:00 01:00") == []


def test_token_create_prints_the_token_alone_and_says_on_stderr_it_is_shown_once(
    any_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    made = subprocess.run(
        [CLICKBACK, "token", "create", "--role", "read", "--name", "dash", "--db", any_db],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    token = made.stdout.strip()
    assert made.stdout == token + "\n" and " " not in token  # `$(clickback token create)`
    assert "token 1 (read, 'dash') created: it is shown this once, store it now" in made.stderr
    assert token not in made.stderr
    cli("token", "revoke", "1", db=any_db)
    [row] = table_rows(cli("token", "list", db=any_db))
    assert (row["id"], row["name"], row["role"]) == ("1", "dash", "read")
    for at in (row["created_at"], row["revoked_at"]):  # ISO 8601, as every other list
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", at), at


def test_token_create_for_an_affiliate_needs_the_affiliate_and_lists_it(
    any_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    cli("affiliate", "create", "Partner", db=any_db)

    def create(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CLICKBACK, "token", "create", *args, "--db", any_db],
            capture_output=True,
            text=True,
            timeout=60,
        )

    refusals = [
        (("--role", "affiliate"), "affiliate_required", "--role affiliate needs --affiliate"),
        (("--affiliate", "1"), "affiliate_not_allowed", "--affiliate goes with --role affiliate"),
        (("--role", "read", "--affiliate", "1"), "affiliate_not_allowed", "--role affiliate"),
        (("--role", "affiliate", "--affiliate", "7"), "not_found", "affiliate 7 does not exist"),
    ]
    for args, error, says in refusals:
        out = create(*args)
        assert out.returncode == 2 and out.stdout.count("\n") <= 2, (args, out)
        assert error in out.stdout and says in " ".join(out.stdout.split()), (args, out.stdout)
    assert table_rows(cli("token", "list", db=any_db)) == []
    made = create("--role", "affiliate", "--affiliate", "1", "--name", "partner")
    assert made.returncode == 0, made.stderr
    assert "token 1 (affiliate 1's, 'partner') created" in made.stderr
    [row] = table_rows(cli("token", "list", db=any_db))
    assert (row["id"], row["role"], row["affiliate"]) == ("1", "affiliate", "1")


def test_commands_refuse_a_base_currency_other_than_the_stored_rates(
    sqlite_db: str, tmp_path: Path
) -> None:
    rates = _file(tmp_path, "rates.csv", "2026-11-02,EUR,1.08\n")
    assert "base USD" in cli("rates", "import", str(rates), db=sqlite_db)
    env = {**os.environ, "CLICKBACK_BASE_CURRENCY": "EUR"}
    out = subprocess.run(
        [CLICKBACK, "conversions", "list", "--db", sqlite_db],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert "base_currency_changed" in out.stdout and "CLICKBACK_BASE_CURRENCY=USD" in out.stdout
    assert "EUR" in cli("rates", "list", db=sqlite_db)  # USD, as the rates, is still taken
