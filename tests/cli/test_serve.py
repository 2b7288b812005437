"""End to end as a new user: `clickback serve --demo`, follow the link, fire the postback."""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest

from clickback.domain.ports import Store
from tests.cli.conftest import CLICKBACK, Server, cli, free_port, in_store

PAYOUT = ("--payout-amount", "2")  # an offer is made with its payout, as the API makes it


def test_demo_serve_click_and_postback(server: Server) -> None:
    server.start("--demo")
    out = server.log.read_text()
    tracking = re.search(r"Tracking link: (\S+)", out)
    postback = re.search(r"Postback:\s+(\S+)", out)
    assert tracking and postback, out
    r = httpx.get(tracking.group(1))
    assert r.status_code == 302
    refid = parse_qs(urlsplit(r.headers["location"]).query)["refid"][0]
    r = httpx.get(postback.group(1).replace("REFID", refid))
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    assert r.json()["commission"] == "4.99"  # the demo offer pays 10 % of 49.90
    [conv] = [
        orjson.loads(line)
        for line in cli("conversions", "list", "--json", db=server.db).splitlines()
    ]
    assert (conv["ordernumber"], conv["orderamount"], conv["sub1"]) == ("ORDER-1", "49.90", "demo")


@pytest.mark.parametrize(
    "options", [("--interface", "rsgi"), ("--interface", "asgi"), ("--server", "native")]
)
def test_serve_starts_in_a_directory_holding_modules_named_as_its_own(
    sqlite_db: str, tmp_path: Path, options: tuple[str, str]
) -> None:
    """granian put the working directory first on the import path: a click.py there
    (a script of one's own, named after what it does) stopped every worker at start.
    An interface of granian's is served by granian."""
    here = tmp_path / "scripts"
    here.mkdir()
    for name in ("click", "typer", "clickback", "httpx", "granian"):
        (here / f"{name}.py").write_text("raise SystemExit('the wrong module was imported')\n")
    srv = Server(sqlite_db, tmp_path, cwd=here)
    try:
        srv.start("--demo", *options)
        tracking = re.search(r"Tracking link: (\S+)", srv.log.read_text())
        assert tracking
        assert httpx.get(tracking.group(1)).status_code == 302
    finally:
        srv.stop()
    assert "wrong module" not in srv.log.read_text()
    assert ("Starting granian" in srv.log.read_text()) == (options[0] == "--interface")


def test_the_cli_prints_urls_on_the_port_serve_answers_on(server: Server) -> None:
    assert "CLICKBACK_PUBLIC_URL" not in os.environ
    db = server.db
    cli("advertiser", "create", "Shop", db=db)
    cli(
        "offer",
        "create",
        "--advertiser",
        "1",
        "--name",
        "O",
        "--url",
        "http://x.example/",
        *PAYOUT,
        db=db,
    )
    cli("affiliate", "create", "Pub", db=db)
    before = cli("link", "create", "--offer", "1", "--affiliate", "1", db=db)
    assert "http://127.0.0.1:8080/c/" in before  # no server has run on this database yet
    server.start()  # on a free port, not 8080
    out = cli("link", "create", "--offer", "1", "--affiliate", "1", db=db)
    code = re.search(re.escape(server.base) + r"/c/(\S+)", out)
    assert code, out
    assert httpx.get(f"{server.base}/c/{code.group(1)}").status_code == 302
    links = [orjson.loads(x) for x in cli("link", "list", "--json", db=db).splitlines()]
    assert {x["tracking_url"].rsplit("/c/", 1)[0] for x in links} == {server.base}
    assert cli("postback-url", "1", db=db).startswith(f"{server.base}/postback?")
    test = orjson.loads(cli("integration-test", "1", "--json", db=db))
    assert test["tracking_url"].startswith(f"{server.base}/c/")
    assert test["postback_url"].startswith(f"{server.base}/postback?")


def test_the_served_url_of_an_address_on_every_interface_is_loopback() -> None:
    from clickback.cli import served_url

    assert served_url("0.0.0.0", 8150) == "http://127.0.0.1:8150"
    assert served_url("::", 8150) == "http://[::1]:8150"
    assert served_url("fd00::5", 81) == "http://[fd00::5]:81"
    assert served_url("track.example.com", 80) == "http://track.example.com:80"


def _demo_urls(server: Server) -> tuple[str, str]:
    """The last printed demo link and postback URL (with `REFID` to replace)."""
    out = server.log.read_text()
    return re.findall(r"Tracking link: (\S+)", out)[-1], re.findall(r"Postback:\s+(\S+)", out)[-1]


def _demo_conversion(server: Server) -> tuple[str, dict[str, object]]:
    """Follows the last printed demo link and fires its postback; the link and the answer."""
    tracking, postback = _demo_urls(server)
    r = httpx.get(tracking)
    assert r.status_code == 302, r.text
    refid = parse_qs(urlsplit(r.headers["location"]).query)["refid"][0]
    return tracking, httpx.get(postback.replace("REFID", refid)).json()


def test_a_second_demo_start_prints_the_demo_link_and_a_new_order(server: Server) -> None:
    server.start("--demo")
    first, answer = _demo_conversion(server)
    assert answer["status"] == "accepted", answer
    db = server.db
    cli("advertiser", "create", "Other", "--require-token", db=db)
    cli(
        "offer",
        "create",
        "--advertiser",
        "2",
        "--name",
        "O",
        "--url",
        "http://x.example/",
        *PAYOUT,
        db=db,
    )
    cli("link", "create", "--offer", "2", "--affiliate", "1", db=db)  # newer than the demo's
    server.stop()
    server.start("--demo")
    again, answer = _demo_conversion(server)
    assert again == first
    assert answer["status"] == "accepted", answer  # not `duplicate`, not `token_missing`
    orders = [
        orjson.loads(line)["ordernumber"]
        for line in cli("conversions", "list", "--json", db=db).splitlines()
    ]
    assert orders == ["ORDER-2", "ORDER-1"]


def test_the_demo_postback_carries_the_token_once_one_is_required(server: Server) -> None:
    """The demo advertiser made to require its token since: the printed postback carries
    it, and is counted (it was refused `token_missing`)."""
    server.start("--demo")
    server.stop()

    async def require_token(store: Store) -> None:
        await store.update_row("advertisers", 1, {"require_token": 1})

    in_store(server.db, require_token)
    server.start("--demo")
    _, answer = _demo_conversion(server)
    assert answer["status"] == "accepted", answer


def test_plain_serve_on_an_empty_database_creates_nothing(server: Server) -> None:
    server.start()
    assert httpx.get(f"{server.base}/healthz").status_code == 200
    assert cli("offer", "list", "--json", db=server.db) == ""


def test_setup_by_cli_and_a_running_server_sees_it(server: Server) -> None:
    server.start()
    db = server.db
    cli("advertiser", "create", "Shop", "--require-token", "--token", "tok", db=db)
    cli(
        "offer",
        "create",
        "--advertiser",
        "1",
        "--name",
        "O",
        "--url",
        "https://shop.example/p?x=1",
        "--payout-type",
        "cpa",
        "--payout-amount",
        "2.50",
        db=db,
    )
    cli("affiliate", "create", "Pub", db=db)
    out = cli("link", "create", "--offer", "1", "--affiliate", "1", db=db)
    code = re.search(r"/c/(\S+)", out)
    assert code, out
    r = httpx.get(f"{server.base}/c/{code.group(1)}?sub1=cli")
    assert r.status_code == 302, r.text
    refid = parse_qs(urlsplit(r.headers["location"]).query)["refid"][0]
    r = httpx.get(f"{server.base}/postback?refid={refid}&orderamount=10&ordernumber=Q")
    assert r.status_code == 403
    r = httpx.post(
        f"{server.base}/postback",
        data={"refid": refid, "orderamount": "10", "ordernumber": "Q", "token": "tok"},
    )
    assert r.json()["commission"] == "2.50"
    cli("offer", "pause", "1", db=db)
    # other processes see a change within CLICKBACK_CACHE_CHECK_SECONDS (1 s)
    deadline = time.monotonic() + 5
    while httpx.get(f"{server.base}/c/{code.group(1)}").status_code != 404:
        assert time.monotonic() < deadline, "the pause never reached the running server"
        time.sleep(0.1)
    r = httpx.get(f"{server.base}/postback?refid={refid}&orderamount=1&ordernumber=Q2&token=tok")
    assert r.status_code == 422 and r.json()["code"] == "offer_paused"


def _clean_failure(args: list[str], env: dict[str, str] | None = None) -> None:
    out = subprocess.run(
        [CLICKBACK, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    text = out.stdout + out.stderr
    assert out.returncode != 0, text[-500:]
    assert "Traceback" not in text and len(text.splitlines()) < 10, text[-1500:]


def test_a_database_that_cannot_be_reached_is_a_clean_error(tmp_path: Path) -> None:
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/test"  # nothing listens there
    _clean_failure(["migrate", "--db", dead])
    _clean_failure(["migrate", "--db", f"sqlite:///{tmp_path / 'no-such-dir' / 'x.db'}"])


def test_serve_on_a_port_in_use_is_a_clean_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        _clean_failure(["serve", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--port", str(port)])


@pytest.mark.parametrize(
    "setting",
    [
        "CLICKBACK_TRUSTED_PROXIES=not-a-cidr",
        "CLICKBACK_DATACENTER_RANGES=/no/such/ranges.txt",
        "CLICKBACK_GEOIP_MMDB=/no/such/country.mmdb",
    ],
)
def test_serve_with_a_bad_setting_is_a_clean_error(tmp_path: Path, setting: str) -> None:
    name, _, value = setting.partition("=")
    _clean_failure(
        ["serve", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--port", str(free_port())],
        env={name: value},
    )


def test_fallback_redirects_of_a_served_tracker_set_up_by_cli(
    sqlite_db: str, tmp_path: Path
) -> None:
    """`serve` (RSGI): a paused offer's link goes to the offer's fallback, an unknown code
    to CLICKBACK_FALLBACK_URL; neither stores a click."""
    db = sqlite_db
    cli("advertiser", "create", "Shop", db=db)
    offer = ["offer", "create", "--advertiser", "1", "--name", "O", *PAYOUT]
    cli(*offer, "--url", "https://shop.example/", "--fallback-url", "https://shop.example/x", db=db)
    cli("affiliate", "create", "Pub", db=db)
    code = re.search(r"/c/(\S+)", cli("link", "create", "--offer", "1", "--affiliate", "1", db=db))
    assert code
    cli("offer", "pause", "1", db=db)
    server = Server(db, tmp_path, {"CLICKBACK_FALLBACK_URL": "https://network.example/"})
    try:
        server.start()
        r = httpx.get(f"{server.base}/c/{code.group(1)}")
        assert (r.status_code, r.headers["location"]) == (302, "https://shop.example/x")
        r = httpx.get(f"{server.base}/c/unknown")
        assert (r.status_code, r.headers["location"]) == (302, "https://network.example/")
    finally:
        server.stop()
    assert cli("clicks", "list", "--json", db=db) == ""


def test_a_demo_made_before_the_upgrade_is_not_made_a_second_time(server: Server) -> None:
    """A database whose demo a `serve --demo` of 9980c4c made has no `demo_link_id` in
    meta (that code found the demo by its newest link): the first `serve --demo` after
    the upgrade must serve that demo, not make a second Demo Shop, offer and affiliate."""
    import sqlite3

    server.start("--demo")
    first, answer = _demo_conversion(server)
    assert answer["status"] == "accepted", answer
    server.stop()
    with sqlite3.connect(server.db.removeprefix("sqlite:///")) as conn:
        conn.execute("DELETE FROM meta WHERE key IN ('demo_link_id', 'demo_orders')")
    server.start("--demo")
    again, answer = _demo_conversion(server)
    advertisers = cli("advertiser", "list", "--json", db=server.db).splitlines()
    assert len(advertisers) == 1, advertisers
    assert again == first
    assert answer["status"] == "accepted", answer


def test_a_demo_that_stopped_serving_gets_a_new_link_and_says_why(server: Server) -> None:
    """The remembered demo link, once its offer is paused or the link archived, would
    lead to the 404 page: `serve --demo` makes (and remembers) a new one that serves,
    says why, and leaves the paused offer as it is."""
    db = server.db
    server.start("--demo")
    first, answer = _demo_conversion(server)
    assert answer["status"] == "accepted", answer
    server.stop()
    cli("offer", "pause", "1", db=db)
    server.start("--demo")
    second, answer = _demo_conversion(server)
    assert second != first
    assert answer["status"] == "accepted", answer  # on the new demo offer
    log = " ".join(server.log.read_text().split())
    assert "the demo link 1 does not serve: its offer 1 is paused" in log, log
    assert "made a new demo link 2, of offer 2 and affiliate 1" in log, log
    offers = [orjson.loads(x) for x in cli("offer", "list", "--json", db=db).splitlines()]
    assert sorted((o["id"], o["status"]) for o in offers) == [(1, "paused"), (2, "active")]
    server.stop()
    server.start("--demo")  # remembered: the same new link, nothing more made
    again, answer = _demo_conversion(server)
    assert again == second and answer["status"] == "accepted", answer
    assert len(cli("offer", "list", "--json", db=db).splitlines()) == 2
    server.stop()
    # the link archived, its offer still serving: a new link on that offer
    token = cli("token", "create", "--role", "admin", db=db).strip()
    server.start()
    links = [orjson.loads(x) for x in cli("link", "list", "--json", db=db).splitlines()]
    [demo] = [x for x in links if x["tracking_url"] == second.split("?")[0]]
    r = httpx.delete(
        f"{server.base}/api/v1/links/{demo['id']}", headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 200 and r.json()["archived_at"], r.text
    server.stop()
    server.start("--demo")
    third, answer = _demo_conversion(server)
    assert third not in (first, second) and answer["status"] == "accepted", answer
    log = " ".join(server.log.read_text().split())
    assert f"the demo link {demo['id']} does not serve: it is archived" in log, log
    assert len(cli("offer", "list", "--json", db=db).splitlines()) == 2


def test_a_database_file_replaced_under_the_server_is_not_written_to(
    server: Server, tmp_path: Path
) -> None:
    """A backup moved over the database file while the server runs (or the file deleted):
    what the server wrote then would go to a file no one opens again, lost at the next
    start, or through the WAL file still at the path into the file moved there. Clicks,
    postbacks and the admin API get 503 instead, /readyz says not ready, and the file
    moved there is left as it was."""
    server.env["CLICKBACK_ADMIN_TOKEN"] = "gone-admin"
    server.start("--demo")
    tracking, postback = _demo_urls(server)
    r = httpx.get(tracking)
    assert r.status_code == 302
    refid = parse_qs(urlsplit(r.headers["location"]).query)["refid"][0]
    path = Path(server.db.removeprefix("sqlite:///"))
    restored = tmp_path / "restored.db"
    restored.write_bytes(path.read_bytes())
    os.replace(restored, path)
    time.sleep(0.2)  # the file is looked at every 0.1 s at most
    assert httpx.get(tracking).status_code == 503
    r = httpx.get(postback.replace("REFID", refid))
    assert r.status_code == 503, r.text
    auth = {"Authorization": "Bearer gone-admin"}
    r = httpx.post(f"{server.base}/api/v1/affiliates", json={"name": "Z"}, headers=auth)
    assert r.status_code == 503, r.text
    assert httpx.get(f"{server.base}/api/v1/offers", headers=auth).status_code == 503
    assert httpx.get(f"{server.base}/readyz").status_code == 503
    assert httpx.get(f"{server.base}/healthz").status_code == 200
    assert server.log.read_text().count("ERROR clickback.storage the database file") == 1
    import time as _t

    _t.sleep(3)
    server.stop()
    with sqlite3.connect(path) as moved_there:
        names = [n for (n,) in moved_there.execute("SELECT name FROM affiliates")]
    assert "Z" not in names and names, names
