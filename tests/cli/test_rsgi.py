"""`clickback serve` answers through granian's RSGI interface (the hot paths in
`web/rsgi.py`) or, with `--server native`, its own HTTP/1.1 front (`web/native.py`);
everything else through a bridge to the ASGI app. These drive a real server of each
kind on loopback with what differs from ASGI: bodies (whole, chunked, too large, cut
short), client addresses and forwarded ones, streamed answers, repeated headers."""

from __future__ import annotations

import gzip
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from clickback.web.export import EXPORT_PAGE
from tests.cli.conftest import Server
from tests.web.test_postback_input import multipart

TOKEN = "rsgi-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


SERVERS = ["granian", "native"]


@pytest.fixture(params=SERVERS)
def tracker(request: pytest.FixtureRequest, sqlite_db: str, tmp_path: Path) -> Iterator[Server]:
    srv = Server(
        sqlite_db,
        tmp_path,
        {"CLICKBACK_ADMIN_TOKEN": TOKEN, "CLICKBACK_TRUSTED_PROXIES": "10.9.0.0/16,127.0.0.1/32"},
    )
    srv.start("--server", request.param)
    srv.kind = request.param
    yield srv
    srv.stop()


def api(srv: Server, method: str, path: str, **kw: object) -> httpx.Response:
    return httpx.request(method, f"{srv.base}/api/v1{path}", headers=AUTH, **kw)  # type: ignore[arg-type]


def setup_link(srv: Server) -> str:
    adv = api(srv, "POST", "/advertisers", json={"name": "Shop"}).json()
    offer = api(
        srv,
        "POST",
        "/offers",
        json={
            "advertiser_id": adv["id"],
            "name": "O",
            "payout_type": "cpa",
            "payout_amount": "3.00",
            "destination_url": "https://shop.example/land",
        },
    ).json()
    aff = api(srv, "POST", "/affiliates", json={"name": "Pub"}).json()
    link = api(srv, "POST", "/links", json={"offer_id": offer["id"], "affiliate_id": aff["id"]})
    assert link.status_code == 201, link.text
    return str(link.json()["code"])


def refid_of(r: httpx.Response) -> str:
    assert r.status_code == 302, r.text
    return parse_qs(urlsplit(r.headers["location"]).query)["refid"][0]


def ledger(srv: Server) -> list[dict]:
    return api(srv, "GET", "/postbacks").json()["items"]  # type: ignore[no-any-return]


def test_click_answers_and_stores_what_the_request_carried(tracker: Server) -> None:
    code = setup_link(tracker)
    r = httpx.get(
        f"{tracker.base}/c/{code}?sub1=news%20letter&sub2=b",
        headers={
            "User-Agent": "UA/1",
            "Referer": "https://pub.example/",
            "X-Forwarded-For": "10.9.0.1",
        },
    )
    refid = refid_of(r)
    assert r.headers["cache-control"] == "no-store" and r.content == b""
    [c] = api(tracker, "GET", "/clicks", params={"refid": refid}).json()["items"]
    assert (c["sub1"], c["sub2"]) == ("news letter", "b")
    assert (c["user_agent"], c["referer"]) == ("UA/1", "https://pub.example/")
    assert c["ip"] == "10.9.0.1"  # every hop a trusted proxy: the first one
    r = httpx.get(f"{tracker.base}/c/{code}", headers={"X-Forwarded-For": "198.51.100.4, 10.9.0.1"})
    [c] = api(tracker, "GET", "/clicks", params={"refid": refid_of(r)}).json()["items"]
    assert c["ip"] == "198.51.100.4"
    assert httpx.head(f"{tracker.base}/c/{code}").status_code == 302
    r = httpx.post(f"{tracker.base}/c/{code}")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
    r = httpx.get(f"{tracker.base}/c/nope")
    assert r.status_code == 404 and "location" not in r.headers and b"Not found" in r.content


def test_a_trailing_slash_forwarded_for_lines_and_json(tracker: Server) -> None:
    code = setup_link(tracker)
    refid_of(httpx.get(f"{tracker.base}/c/{code}/"))  # a link pasted with a slash: 302
    # a proxy that adds its own line after the client's: the client's is not believed
    lines = [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "198.51.100.4")]
    refid = refid_of(httpx.get(f"{tracker.base}/c/{code}", headers=lines))
    [c] = api(tracker, "GET", "/clicks", params={"refid": refid}).json()["items"]
    assert c["ip"] == "198.51.100.4"
    # a JSON body, read by its content type
    r = httpx.post(
        f"{tracker.base}/postback", json={"refid": refid, "orderamount": 3, "ordernumber": "J"}
    )
    assert r.json()["status"] == "accepted", r.text
    # a multipart form (PHP's cURL), its boundary read in the case it was sent
    body, kind = multipart({"refid": refid, "orderamount": "2", "ordernumber": "MP"})
    r = httpx.post(f"{tracker.base}/postback/", content=body, headers={"content-type": kind})
    assert r.json()["status"] == "accepted", r.text  # a postback URL with a slash after it
    # the ASGI app gets the query as UTF-8 bytes, whatever its characters (sent unescaped)
    with socket.create_connection(("127.0.0.1", tracker.port)) as s:
        s.sendall(
            "GET /api/v1/postbacks?ordernumber=M\u00fcller\u20ac HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n".encode()
        )
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def test_postback_bodies_whole_chunked_too_large_and_cut_short(tracker: Server) -> None:
    code = setup_link(tracker)
    refids = [refid_of(httpx.get(f"{tracker.base}/c/{code}")) for _ in range(4)]
    url = f"{tracker.base}/postback"
    r = httpx.get(f"{url}?refid={refids[0]}&orderamount=10&ordernumber=G1")
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    assert r.headers["content-type"] == "application/json"
    r = httpx.get(f"{url}?refid={refids[0]}&orderamount=10&ordernumber=G1")
    assert r.json()["status"] == "duplicate"
    r = httpx.post(url, data={"refid": refids[1], "orderamount": "5", "ordernumber": "P1"})
    assert r.json()["status"] == "accepted"

    def chunks() -> Iterator[bytes]:
        yield f"refid={refids[2]}&orderamount=7".encode()
        yield b"&ordernumber=C1"

    r = httpx.post(
        url, content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert "content-length" not in r.request.headers
    assert r.json()["status"] == "accepted", r.text
    r = httpx.post(url, content=b"refid=" + b"x" * 40000)
    assert r.status_code == 413 and r.json()["errors"][0]["code"] == "request_too_large"
    gz = gzip.compress(f"refid={refids[3]}&orderamount=7&ordernumber=Z1".encode())
    r = httpx.post(url, content=gz, headers={"content-encoding": "gzip"})
    assert r.status_code == 415, r.text
    assert "unsupported_encoding" in {e["code"] for e in r.json()["errors"]}

    body = f"refid={refids[3]}&ordernumber=CUT&orderamount=149.90".encode()
    with socket.create_connection(("127.0.0.1", tracker.port)) as s:
        s.sendall(
            b"POST /postback HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body[:-4])
        )
        time.sleep(0.2)
    deadline = time.monotonic() + 5
    while len(items := ledger(tracker)) < 7:
        assert time.monotonic() < deadline, items
        time.sleep(0.05)
    cut = items[0]
    assert cut["code"] == "request_incomplete" and cut["params"]["orderamount"] == "14"
    assert cut["outcome"] == "rejected" and cut["conversion_id"] is None
    assert [i["outcome"] for i in items[1:]] == [
        "rejected",  # compressed
        "rejected",
        *["accepted"] * 2,
        "duplicate",
        "accepted",
    ]
    orders = sorted(c["ordernumber"] for c in api(tracker, "GET", "/conversions").json()["items"])
    assert orders == ["C1", "G1", "P1"]


def test_a_get_is_its_query_and_its_body_is_kept(tracker: Server) -> None:
    """Some HTTP clients send a GET with a body: it is not read (a GET is its query, a
    body too large or chunked included), but kept in the ledger."""
    code = setup_link(tracker)
    refid = refid_of(httpx.get(f"{tracker.base}/c/{code}"))
    query = f"{tracker.base}/postback?refid={refid}&orderamount=5"
    xml = {"content-type": "application/xml"}
    r = httpx.request("GET", f"{query}&ordernumber=G1", content=b"<x>" + b"a" * 20000, headers=xml)
    assert r.json()["status"] == "accepted", r.text

    def chunks() -> Iterator[bytes]:
        yield b"orderamount=7"
        yield b"&ordernumber=C1"

    r = httpx.request("GET", f"{query}&ordernumber=G2", content=chunks())
    assert "content-length" not in r.request.headers
    assert r.json()["status"] == "accepted", r.text
    [row, *_] = ledger(tracker)
    assert (row["method"], row["params"]["(body of the GET)"]) == (
        "GET",
        "orderamount=7&ordernumber=C1",
    )
    r = httpx.request("GET", f"{tracker.base}/postback?refid={refid}", content=b"orderamount=1")
    assert r.json()["errors"][0]["code"] == "get_body_ignored", r.text
    orders = {c["ordernumber"] for c in api(tracker, "GET", "/conversions").json()["items"]}
    assert orders == {"G1", "G2"}


def test_half_a_character_and_bytes_not_utf8_are_answered_and_kept(tracker: Server) -> None:
    """A JSON `coupon` holding a lone surrogate is a 400 `invalid_text`, kept in the
    ledger; `%ff` in a query or a form body, or the byte 0xff in a form body, is kept as
    `\\xff`."""
    code = setup_link(tracker)
    refid = refid_of(httpx.get(f"{tracker.base}/c/{code}"))
    url = f"{tracker.base}/postback"
    body = f'{{"refid":"{refid}","orderamount":"10","ordernumber":"A1","coupon":"SALE\\ud83d"}}'
    r = httpx.post(url, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert [(e["field"], e["code"]) for e in r.json()["errors"]] == [("coupon", "invalid_text")]
    [row] = ledger(tracker)
    assert row["code"] == "invalid_text" and row["params"]["coupon"] == "SALE\\ud83d"
    base = f"refid={refid}&orderamount=1&ordernumber="
    r = httpx.get(f"{url}?{base}F1&coupon=SALE%ff")
    assert r.json()["status"] == "accepted", r.text
    form = {"content-type": "application/x-www-form-urlencoded"}
    r = httpx.post(url, content=f"{base}F2&coupon=SALE%FF", headers=form)
    assert r.json()["status"] == "accepted", r.text
    r = httpx.post(url, content=(base + "F3&coupon=SALE").encode() + b"\xff", headers=form)
    assert r.json()["status"] == "accepted", r.text
    coupons = {
        c["ordernumber"]: c["coupon"] for c in api(tracker, "GET", "/conversions").json()["items"]
    }
    assert coupons == dict.fromkeys(("F1", "F2", "F3"), "SALE\\xff")
    # the raw byte in the request line: granian's HTTP parser refuses it (a request
    # target is ASCII) before the app sees it; the native front reads it as `%FF`
    with socket.create_connection(("127.0.0.1", tracker.port)) as s:
        s.sendall(b"GET /postback?%sF4&coupon=SALE\xff HTTP/1.1\r\nHost: x\r\n\r\n" % base.encode())
        answer = s.recv(65536)
    if tracker.kind == "native":
        assert answer.startswith(b"HTTP/1.1 200") and b'"accepted"' in answer, answer[:300]
        coupons = {
            c["ordernumber"]: c["coupon"]
            for c in api(tracker, "GET", "/conversions").json()["items"]
        }
        assert coupons["F4"] == "SALE\\xff"
        assert len(ledger(tracker)) == 5
    else:
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
        assert len(ledger(tracker)) == 4


def test_the_rest_goes_through_the_asgi_app(tracker: Server) -> None:
    setup_link(tracker)
    assert httpx.get(f"{tracker.base}/readyz").text == "ready"
    r = httpx.get(f"{tracker.base}/api/v1/advertisers", params={"name": "Shop"})
    assert r.status_code == 401  # no token: the admin API's own answer
    r = api(tracker, "GET", "/advertisers", params={"name": "Shop"})
    assert [a["name"] for a in r.json()["items"]] == ["Shop"]
    r = api(tracker, "PATCH", "/advertisers/1", json={"name": "Shop & Co"})
    assert r.status_code == 200 and r.json()["name"] == "Shop & Co"
    code = api(tracker, "GET", "/links").json()["items"][0]["code"]
    with httpx.Client(base_url=tracker.base) as c:
        for i in range(EXPORT_PAGE + 1):  # an export of two pages is sent in parts
            assert c.get(f"/c/{code}?sub1=s{i}").status_code == 302
        r = c.get("/api/v1/clicks/export", headers=AUTH)
    lines = r.text.splitlines()
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert len(lines) == EXPORT_PAGE + 2 and lines[0].startswith("refid,")
    assert {line.split(",")[4] for line in lines[1:]} == {f"s{i}" for i in range(EXPORT_PAGE + 1)}
    r = httpx.get(f"{tracker.base}/kit/refid.js")
    assert r.status_code == 200 and b"refid" in r.content
    assert httpx.get(f"{tracker.base}/no/such/page").status_code == 404


@pytest.mark.parametrize("kind", SERVERS)
def test_a_nul_in_a_code_or_a_cursor_is_refused_on_both_engines(
    any_db: str, tmp_path: Path, kind: str
) -> None:
    """`/c/%00` is the unknown link's 404 through the RSGI hot path, and a cursor that
    decodes to U+0000 a 400 `invalid_cursor` for a list and an export alike, on
    PostgreSQL (whose text cannot hold it) as on SQLite."""
    srv = Server(any_db, tmp_path, {"CLICKBACK_ADMIN_TOKEN": TOKEN})
    srv.start("--server", kind)
    try:
        code = setup_link(srv)
        for path in ("/c/%00", "/c/a%00b"):
            assert httpx.get(f"{srv.base}{path}").status_code == 404, path
        assert httpx.get(f"{srv.base}/c/{code}").status_code == 302
        for path in ("/clicks?cursor=AA", "/clicks/export?cursor=AA"):
            r = api(srv, "GET", path)
            assert r.status_code == 400, (path, r.text)
            assert r.json()["errors"][0]["code"] == "invalid_cursor", (path, r.text)
    finally:
        srv.stop()
