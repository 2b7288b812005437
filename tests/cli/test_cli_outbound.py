"""Outbound postbacks and inbound security set up from the command line."""

from __future__ import annotations

import os
import subprocess

import orjson

from tests.cli.conftest import CLICKBACK, cli


def test_affiliate_postback_and_advertiser_security_by_cli(sqlite_db: str) -> None:
    cli("affiliate", "create", "Pub", db=sqlite_db)
    refused = subprocess.run(
        [
            CLICKBACK,
            "affiliate",
            "postback",
            "1",
            "--url",
            "http://127.0.0.1:9/pb?c={refid}",
            "--db",
            sqlite_db,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "private_address" in refused.stdout
    # the way out is named (rich wraps the line at its console's width)
    assert "CLICKBACK_OUTBOUND_ALLOW_PRIVATE=1" in "".join(refused.stdout.split()), refused.stdout
    env = {**os.environ, "CLICKBACK_OUTBOUND_ALLOW_PRIVATE": "1"}
    subprocess.run(
        [
            CLICKBACK,
            "affiliate",
            "postback",
            "1",
            "--url",
            "http://127.0.0.1:9/pb?c={refid}",
            "--events",
            "conversion,reversed",
            "--secret",
            "s",
            "--db",
            sqlite_db,
        ],
        check=True,
        env=env,
        timeout=60,
    )
    [aff] = [orjson.loads(x) for x in cli("affiliate", "list", "--json", db=sqlite_db).split()]
    assert aff["postback_events"] == ["conversion", "reversed"] and aff["postback_enabled"]
    cli("advertiser", "create", "Shop", db=sqlite_db)
    cli(
        "advertiser",
        "security",
        "1",
        "--ip-allowlist",
        "198.51.100.0/24",
        "--signing-secret",
        "k",
        "--require-signature",
        db=sqlite_db,
    )
    [adv] = [orjson.loads(x) for x in cli("advertiser", "list", "--json", db=sqlite_db).split()]
    assert (adv["ip_allowlist"], adv["require_signature"]) == ("198.51.100.0/24", True)
    cli("advertiser", "security", "1", "--ip-allowlist", "not-an-ip", db=sqlite_db, exit_code=2)
    assert cli("deliveries", "list", "--json", db=sqlite_db) == ""


def test_a_postback_disabled_and_enabled_by_hand(sqlite_db: str) -> None:
    cli("affiliate", "create", "Pub", db=sqlite_db)

    def enabled() -> bool:
        [aff] = [orjson.loads(x) for x in cli("affiliate", "list", "--json", db=sqlite_db).split()]
        return bool(aff["postback_enabled"])

    assert enabled()
    assert "postback disabled" in cli("affiliate", "disable-postback", "1", db=sqlite_db)
    assert not enabled()
    cli("affiliate", "enable-postback", "1", db=sqlite_db)
    assert enabled()


def _postback(db: str, *args: str) -> str:
    env = {**os.environ, "CLICKBACK_OUTBOUND_ALLOW_PRIVATE": "1"}
    out = subprocess.run(
        [CLICKBACK, "affiliate", "postback", *args, "--db", db],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    return out.stdout


def _affiliate_and_offer(db: str) -> None:
    """Affiliate 1 and offer 1 (of advertiser 1), made with the CLI."""
    cli("affiliate", "create", "Pub", db=db)
    cli("advertiser", "create", "Shop", db=db)
    offer = ["offer", "create", "--advertiser", "1", "--name", "O", "--url", "http://x.example/"]
    cli(*offer, "--payout-amount", "2", db=db)


def test_affiliate_postback_keeps_what_an_option_not_given_set(sqlite_db: str) -> None:
    _affiliate_and_offer(sqlite_db)
    first = "http://127.0.0.1:9/a?c={refid}"
    _postback(
        sqlite_db,
        "1",
        "--url",
        first,
        "--events",
        "conversion,reversed",
        "--method",
        "POST",
        "--secret",
        "s",
    )
    out = _postback(sqlite_db, "1", "--url", "http://127.0.0.1:9/b?c={refid}")
    assert "events conversion, reversed" in out and "method POST" in out, out
    assert "secret set" in out, out
    [aff] = [orjson.loads(x) for x in cli("affiliate", "list", "--json", db=sqlite_db).split()]
    assert aff["postback_events"] == ["conversion", "reversed"]
    assert (aff["postback_method"], aff["postback_url"]) == (
        "POST",
        "http://127.0.0.1:9/b?c={refid}",
    )
    # an offer's override starts from the affiliate's, then keeps its own
    out = _postback(
        sqlite_db, "1", "--offer", "1", "--url", "http://127.0.0.1:9/o", "--events", "approved"
    )
    assert "offer 1" in out and "events approved;" in out and "method POST" in out, out
    out = _postback(sqlite_db, "1", "--offer", "1", "--url", "http://127.0.0.1:9/o2")
    assert "events approved;" in out and "method POST" in out, out


def test_affiliate_postback_without_a_url_says_postbacks_go_nowhere(sqlite_db: str) -> None:
    """Clearing the URL, or setting --events/--method/--secret on an affiliate with no URL,
    is stored and said: its postbacks go nowhere until a URL is set (exit 0, no
    traceback); an offer's override still posts back."""
    _affiliate_and_offer(sqlite_db)
    out = _postback(sqlite_db, "1", "--events", "approved", "--method", "POST", "--secret", "s")
    assert "affiliate 1: postbacks go nowhere (no postback URL)" in out, out
    assert "POST; approved; signed" in out, out
    _postback(sqlite_db, "1", "--url", "http://127.0.0.1:9/a?c={refid}")
    _postback(sqlite_db, "1", "--offer", "1", "--url", "http://127.0.0.1:9/o")
    out = _postback(sqlite_db, "1", "--url", "")
    assert "affiliate 1: postbacks go nowhere (no postback URL)" in out, out
    assert "per-offer overrides:" in out and "http://127.0.0.1:9/o" in out, out
    [aff] = [orjson.loads(x) for x in cli("affiliate", "list", "--json", db=sqlite_db).split()]
    assert (aff["postback_url"], aff["postback_method"]) == ("", "POST")
    assert aff["postback_events"] == ["approved"]


def test_an_offer_override_given_a_secret_is_refused(sqlite_db: str) -> None:
    """`affiliate postback 1 --offer 1 --url U --secret S` must not drop S in silence: an
    override has no secret of its own (it signs with the affiliate's), so the command
    refuses --secret with --offer, saying where the secret goes."""
    _affiliate_and_offer(sqlite_db)
    env = {**os.environ, "CLICKBACK_OUTBOUND_ALLOW_PRIVATE": "1"}
    run = subprocess.run(
        [
            CLICKBACK,
            "affiliate",
            "postback",
            "1",
            "--offer",
            "1",
            "--url",
            "http://127.0.0.1:9/o?c={refid}",
            "--secret",
            "s3cret",
            "--db",
            sqlite_db,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert run.returncode == 2, (run.returncode, run.stdout, run.stderr)
    assert "signs with the affiliate's own secret" in run.stdout + run.stderr
    assert "s3cret" not in cli("affiliate", "postback", "1", "--json", db=sqlite_db)


def test_resending_a_delivery_that_does_not_exist(sqlite_db: str) -> None:
    cli("migrate", db=sqlite_db)
    out = subprocess.run(
        [CLICKBACK, "deliveries", "resend", "99", "--db", sqlite_db],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "delivery 99 does not exist" in out.stdout, out.stdout


def test_a_signature_is_not_required_by_cli_without_a_signing_secret(sqlite_db: str) -> None:
    cli("advertiser", "create", "Shop", db=sqlite_db)
    refused = subprocess.run(
        [CLICKBACK, "advertiser", "security", "1", "--require-signature", "--db", sqlite_db],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "signature_needs_secret" in refused.stdout, refused
    [adv] = [orjson.loads(x) for x in cli("advertiser", "list", "--json", db=sqlite_db).split()]
    assert adv["require_signature"] is False
    cli("advertiser", "security", "1", "--signing-secret", "k", "--require-signature", db=sqlite_db)
    cli("advertiser", "security", "1", "--signing-secret", "", db=sqlite_db, exit_code=2)
    [adv] = [orjson.loads(x) for x in cli("advertiser", "list", "--json", db=sqlite_db).split()]
    assert adv["require_signature"] is True


def test_a_url_in_square_brackets_is_printed_as_stored(sqlite_db: str) -> None:
    # an IPv6 host (with its zone) is what a console's markup tag looks like: printed as
    # markup, the host was gone (`postbacks go to http:///pb`)
    cli("affiliate", "create", "Pub", db=sqlite_db)
    url = "http://[fe80::1%25eth0]/pb?c={refid}"
    said = " ".join(_postback(sqlite_db, "1", "--url", url).split())
    assert f"postbacks go to {url}" in said, said
    shown = " ".join(cli("affiliate", "postback", "1", db=sqlite_db, columns=300).split())
    assert f"postbacks go to {url}" in shown, shown
