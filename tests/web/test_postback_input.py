"""A postback's input at its edges, through the real ASGI app on both engines: how the
query's text is read, amounts too large to store, the RefID's parameter, trimmed values,
and replays of postbacks that arrived incomplete."""

from __future__ import annotations

import gzip
import json
from typing import Any

import httpx
import orjson

from clickback.domain.refid import RefIdCodec
from clickback.web.app import ClickbackApp
from tests.conftest import AUTH, click, form_post_scope, make_offer
from tests.web.test_tracking import conversions


async def ledger(client: httpx.AsyncClient, **filters: str) -> list[dict]:
    r = await client.get("/api/v1/postbacks", params=filters, headers=AUTH)
    return r.json()["items"]  # type: ignore[no-any-return]


async def raw_get(app: ClickbackApp, path: str, query: bytes) -> tuple[int, bytes]:
    """A GET with the query's bytes as sent, not escaped by a client library."""
    scope = {**form_post_scope(path, ("198.51.100.9", 1)), "method": "GET"}
    scope["query_string"] = query
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], sent[1]["body"]


async def test_a_raw_utf8_order_number_is_the_escaped_one(
    client: httpx.AsyncClient, app: ClickbackApp
) -> None:
    s = await make_offer(client)
    refid = await click(client, s["link"])
    base = f"refid={refid}&orderamount=1&ordernumber="
    status, body = await raw_get(app, "/postback", (base + "Müller-1").encode())
    assert status == 200 and b'"accepted"' in body
    r = await client.get(f"/postback?{base}M%C3%BCller-1")
    assert r.json()["status"] == "duplicate"
    [c] = await conversions(client)
    assert c["ordernumber"] == "Müller-1"


async def test_escapes_that_are_not_utf8_stay_distinct_order_numbers(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client)
    refid = await click(client, s["link"])
    base = f"/postback?refid={refid}&orderamount=1&ordernumber="
    assert (await client.get(base + "M%FCller-7")).json()["status"] == "accepted"
    assert (await client.get(base + "M%E9ller-7")).json()["status"] == "accepted"
    assert (await client.get(base + "M%FCller-7")).json()["status"] == "duplicate"
    assert sorted(c["ordernumber"] for c in await conversions(client)) == [
        "M\\xe9ller-7",
        "M\\xfcller-7",
    ]


async def test_an_amount_too_large_to_store_is_a_400_in_the_ledger(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client, payout_type="cps", payout_percent="10", payout_amount=None)
    refid = await click(client, s["link"])
    for number, amount, currency in (
        ("BIG1", "999999999999999.9999", "CLF"),  # over 2**63 minor units
        ("BIG2", "10000000000000.01", "USD"),  # just over MAX_MINOR
    ):
        r = await client.get(
            "/postback",
            params={
                "refid": refid,
                "orderamount": amount,
                "ordernumber": number,
                "currency": currency,
            },
        )
        assert r.status_code == 400, r.text
        assert r.json()["errors"][0]["code"] == "invalid_amount"
    r = await client.get(
        "/postback",
        params={"refid": refid, "orderamount": "10000000000000.00", "ordernumber": "MAX"},
    )
    assert r.json()["status"] == "accepted"
    assert [p["ordernumber"] for p in await ledger(client)] == ["MAX", "BIG2", "BIG1"]


async def test_amounts_at_the_limits_are_taken_or_told_what_is_wrong(
    client: httpx.AsyncClient,
) -> None:
    """10^15 minor units in a currency without decimals is the largest amount stored; a
    plain decimal finer than the currency, or too large, is told so, not that it is no
    plain decimal; the longest plain decimals read are refused, never a 500."""
    s = await make_offer(client, payout_type="cps", payout_percent="12.5", payout_amount=None)
    refid = await click(client, s["link"])

    async def fire(number: str, amount: str, currency: str = "") -> httpx.Response:
        params = {"refid": refid, "orderamount": amount, "ordernumber": number}
        return await client.get("/postback", params={**params, "currency": currency})

    for number, amount, currency in (
        ("YEN", "1000000000000000", "JPY"),
        ("ONE", "1.000000000", "USD"),
        ("ZEROS", "0000000000000001.00", ""),
    ):
        r = await fire(number, amount, currency)
        assert r.json()["status"] == "accepted", (amount, r.text)
    for number, amount, currency, said in (
        ("FINE", "0.000000001", "", "more decimals than USD has (2)"),
        ("FINE2", "0.000000001", "EUR", "more decimals than EUR has (2)"),
        ("LONG", "12345678901234567", "", "too large to store"),
        ("DEC", "0.1234567890123456789", "", "more decimals than any currency has"),
        ("YEN2", "1000000000000001", "JPY", "too large to store"),
        ("EDGE1", "9999999999999999.999999999999999999", "CLF", ""),
        ("EDGE2", "9999999999999999.000000000000000000", "JPY", "too large to store"),
        ("EDGE3", "9999999999999999.99", "USD", "too large to store"),
        # longer than a value is kept (1,024 characters): never read as its first 1,024
        ("PAD", "0" * 1020 + "12345", "", ""),
    ):
        r = await fire(number, amount, currency)
        assert r.status_code == 400, (amount, r.text)
        [error] = r.json()["errors"]
        assert error["code"] == "invalid_amount" and said in error["message"], (amount, error)
    # a percent has at most 8 decimals: a sale's share of more would be rounded twice
    r = await client.patch(
        f"/api/v1/offers/{s['offer']['id']}",
        json={"payout_percent": "50.000099999999999999"},
        headers=AUTH,
    )
    assert (r.status_code, r.json()["errors"][0]["code"]) == (400, "invalid_percent"), r.text


async def test_an_amount_that_a_thousands_point_may_have_written_is_counted_with_a_warning(
    client: httpx.AsyncClient,
) -> None:
    """`2.500` is 2.50 to a shop keeping three decimals and 2,500 to one writing a point
    between thousands: counted as 2.50 (a retry of an order counted so stays a
    duplicate), with a warning in the answer and the ledger and the conversion flagged,
    so that it can be found. A currency of three decimals, other runs of zeros, and
    decimals that do not fit (refused) are not warned of."""
    s = await make_offer(client, payout_type="cps", payout_percent="10", payout_amount=None)
    refid = await click(client, s["link"])
    for number, amount, currency, whole in (
        ("T1", "2.500", "", "2500"),
        ("T2", "1.000", "JPY", "1000"),
        ("T3", "49.900", "EUR", "49900"),
    ):
        params = {"refid": refid, "orderamount": amount, "ordernumber": number}
        r = await client.get("/postback", params={**params, "currency": currency})
        assert r.json()["status"] == "accepted", (amount, r.text)
        [warning] = [w for w in r.json()["warnings"] if w["code"] != "missing_rate"]
        assert (warning["field"], warning["code"]) == ("orderamount", "thousands_like_amount")
        assert f"writes {whole}: if that was meant" in warning["message"], warning
        again = await client.get("/postback", params={**params, "currency": currency})
        assert again.json()["status"] == "duplicate", again.text
    # the ledger's `code` is the first warning's: a missing rate stays the one found
    rated = await client.get("/api/v1/postbacks", params={"code": "missing_rate"}, headers=AUTH)
    assert {p["ordernumber"] for p in rated.json()["items"]} == {"T2", "T3"}, rated.text
    flagged = await client.get(
        "/api/v1/conversions", params={"flag": "thousands_like_amount"}, headers=AUTH
    )
    assert sorted(c["orderamount"] for c in flagged.json()["items"]) == ["1", "2.50", "49.90"]
    for number, amount, currency in (("K1", "1.000", "KWD"), ("Z1", "10.0000", "USD")):
        params = {"refid": refid, "orderamount": amount, "ordernumber": number}
        r = await client.get("/postback", params={**params, "currency": currency})
        warned = {w["code"] for w in r.json().get("warnings", [])}
        assert r.json()["status"] == "accepted" and warned <= {"missing_rate"}, (amount, r.text)
    r = await client.get(f"/postback?refid={refid}&orderamount=1.234&ordernumber=F1")
    assert r.status_code == 400 and "more decimals than USD" in r.text, r.text


async def test_a_blank_refid_beside_a_clickid_reads_the_clickid(client: httpx.AsyncClient) -> None:
    s = await make_offer(client)
    refid = await click(client, s["link"])
    for i, blank in enumerate(("", "%20")):
        r = await client.get(
            f"/postback?refid={blank}&clickid={refid}&orderamount=1&ordernumber=E{i}"
        )
        assert r.json()["status"] == "accepted", r.text
    [row, _] = await ledger(client)
    assert row["refid"] == refid


async def test_a_bad_refid_is_listed_with_the_other_bad_fields(client: httpx.AsyncClient) -> None:
    await make_offer(client)
    r = await client.get("/postback?refid=" + "A" * 36 + "&orderamount=1")
    assert r.status_code == 400
    assert {(e["field"], e["code"]) for e in r.json()["errors"]} == {
        ("ordernumber", "missing"),
        ("refid", "unknown_refid"),
    }


async def test_values_are_read_and_stored_trimmed(client: httpx.AsyncClient) -> None:
    s = await make_offer(client, advertiser={"require_token": True, "postback_token": "sekret"})
    refid = await click(client, s["link"])
    r = await client.get(
        "/postback",
        params={
            "refid": f" {refid} ",
            "orderamount": "1",
            "ordernumber": " N1 ",
            "token": "sekret ",
        },
    )
    assert r.json()["status"] == "accepted", r.text
    [row] = await ledger(client, ordernumber="N1")
    assert (row["refid"], row["params"]["ordernumber"]) == (refid, " N1 ")


async def test_replaying_a_postback_that_arrived_incomplete_refuses_it_again(
    client: httpx.AsyncClient, app: ClickbackApp
) -> None:
    s = await make_offer(client, payout_type="cps", payout_percent="10", payout_amount=None)
    refid = await click(client, s["link"])
    body = f"refid={refid}&ordernumber=CUT&orderamount=149.90".encode()
    messages = [
        {"type": "http.request", "body": body[:-4], "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        pass

    await app(form_post_scope("/postback", ("198.51.100.9", 1)), receive, send)
    # a query over 8 KiB, its amount cut to the same `14`
    pad = "x" * (8192 - len(f"refid={refid}&ordernumber=LONG&pad=&orderamount=14"))
    r = await client.get(f"/postback?refid={refid}&ordernumber=LONG&pad={pad}&orderamount=149.90")
    assert r.status_code == 414
    rows = await ledger(client)
    assert len(rows) == 2  # the loop below has something to check
    for row in rows:
        assert row["params"]["orderamount"] == "14"
        r = await client.post(f"/api/v1/postbacks/{row['id']}/replay", headers=AUTH)
        assert r.status_code == 200, r.text
        replayed = r.json()["answer"]
        assert replayed["status"] == "rejected", replayed
        # and the replay's own replay
        [again] = await ledger(client, replay_of=str(row["id"]))
        r = await client.post(f"/api/v1/postbacks/{again['id']}/replay", headers=AUTH)
        assert r.json()["answer"]["status"] == "rejected"
    assert await conversions(client) == []
    # the whole order, sent again, is a new order, not a duplicate of the cut one
    r = await client.get(f"/postback?refid={refid}&ordernumber=CUT&orderamount=149.90")
    assert r.json()["status"] == "accepted" and r.json()["commission"] == "14.99"


async def test_a_compressed_body_is_refused_as_such_and_kept(client: httpx.AsyncClient) -> None:
    """A gzip body was read as a form: its fields were all said `missing`, with nothing
    saying the body was not read. It is refused for its encoding (415), kept as it came,
    and a replay refuses it again for the same reason."""
    s = await make_offer(client)
    refid = await click(client, s["link"])
    form = {"content-type": "application/x-www-form-urlencoded"}
    body = gzip.compress(f"refid={refid}&orderamount=10&ordernumber=GZ1".encode())
    r = await client.post("/postback", content=body, headers={**form, "content-encoding": "gzip"})
    assert r.status_code == 415, r.text
    said = {e["code"]: e["message"] for e in r.json()["errors"]}
    assert said == {  # alone: not the fields it holds as `missing` besides
        "unsupported_encoding": "a body sent with Content-Encoding 'gzip' is not read: send it"
        " uncompressed"
    }
    [row] = await ledger(client)
    assert row["code"] == "unsupported_encoding" and row["params"]["(body)"], row
    r = await client.post(f"/api/v1/postbacks/{row['id']}/replay", headers=AUTH)
    answer = r.json()["answer"]
    assert answer["status"] == "rejected"
    assert "unsupported_encoding" in {e["code"] for e in answer["errors"]}
    assert await conversions(client) == []
    # a list of codings holding one that compresses is refused the same
    r = await client.post(
        "/postback", content=body, headers={**form, "content-encoding": "identity, GZip "}
    )
    assert r.status_code == 415, r.text
    # identity is no encoding, and another (a charset mislabelled as one) is read as is
    for n, coding in enumerate(("identity", "utf-8")):
        plain = f"refid={refid}&orderamount=10&ordernumber=GZ{n + 2}".encode()
        r = await client.post(
            "/postback", content=plain, headers={**form, "content-encoding": coding}
        )
        assert r.json()["status"] == "accepted", r.text


async def test_a_parameter_sent_twice_with_different_values_is_refused(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client)
    refid = await click(client, s["link"])
    base = f"/postback?refid={refid}&ordernumber="
    r = await client.get(base + "D1&orderamount=10&orderamount=1000")
    assert r.status_code == 400
    [error] = r.json()["errors"]
    assert (error["field"], error["code"]) == ("orderamount", "repeated")
    assert "'10'" in error["message"] and "'1000'" in error["message"]
    # the same value twice, and a parameter of the advertiser's own, are not refused
    r = await client.get(base + "D2&orderamount=10&orderamount=10&x=1&x=2")
    assert r.json()["status"] == "accepted"
    # a form body that says otherwise than the query
    r = await client.post(base + "D3&orderamount=10", data={"orderamount": "1000"})
    assert r.json()["errors"][0]["code"] == "repeated"
    [_, _, row] = await ledger(client)
    # the ledger keeps both values, as sent
    assert row["params"]["orderamount"] == ["10", "1000"] and row["code"] == "repeated"
    assert row["ordernumber"] == "D1"
    # replayed, it is refused again: which value was meant is still not known
    r = await client.post(f"/api/v1/postbacks/{row['id']}/replay", headers=AUTH)
    assert r.json()["answer"]["errors"][0]["code"] == "repeated"
    assert [c["ordernumber"] for c in await conversions(client)] == ["D2"]
    # sent blank and filled, it is repeated, not also missing (the first is kept)
    for query, field in (
        (f"refid=&refid={refid}&orderamount=1", "refid"),
        (f"refid={refid}&orderamount=&orderamount=3", "orderamount"),
    ):
        r = await client.get(f"/postback?{query}&ordernumber=D4")
        fields = [(e["field"], e["code"]) for e in r.json()["errors"]]
        assert fields == [(field, "repeated")], fields


async def test_every_value_of_an_advertisers_own_parameter_is_kept(
    client: httpx.AsyncClient,
) -> None:
    """A parameter of the advertiser's own sent more than once (`sku=A&sku=B`, `item[]=…`,
    the same value twice too) is kept in the ledger as the list of its values, in the
    order sent, the query's before the body's; the postback is counted, and a replay
    reads and keeps it the same."""
    s = await make_offer(client)
    refid = await click(client, s["link"])
    r = await client.post(
        f"/postback?refid={refid}&orderamount=5&ordernumber=R1&sku=A&item[]=1&item[]=1&sku=B",
        data={"sku": "C", "note": "x"},
    )
    assert r.json()["status"] == "accepted", r.text
    [row] = await ledger(client)
    assert row["params"]["sku"] == ["A", "B", "C"] and row["params"]["item[]"] == ["1", "1"]
    assert (row["params"]["note"], row["params"]["ordernumber"]) == ("x", "R1")
    r = await client.post(f"/api/v1/postbacks/{row['id']}/replay", headers=AUTH)
    assert r.json()["answer"]["status"] == "duplicate", r.text
    replayed = (await ledger(client))[0]
    assert replayed["replay_of"] == row["id"] and replayed["params"] == row["params"]
    assert [c["ordernumber"] for c in await conversions(client)] == ["R1"]


async def test_a_value_sent_twice_that_reads_the_same_is_no_repeat(
    client: httpx.AsyncClient,
) -> None:
    """Values read trimmed, and currency and country codes in any case: sent twice so,
    the parameter is sent once in effect; the first is kept."""
    s = await make_offer(client)
    refid = await click(client, s["link"])
    r = await client.get(
        f"/postback?refid={refid}&refid=%20{refid}&orderamount=1&ordernumber=S1"
        "&currency=EUR&currency=eur&geo=de&geo=DE%20"
    )
    assert r.json()["status"] == "accepted", r.text
    [conversion] = await conversions(client)
    assert (conversion["currency"], conversion["geo"]) == ("EUR", "DE")
    r = await client.get(f"/postback?refid={refid}&orderamount=1&ordernumber=S2&geo=de&geo=fr")
    assert [(e["field"], e["code"]) for e in r.json()["errors"]] == [("geo", "repeated")]


async def test_a_required_field_sent_under_another_spelling_is_named(
    client: httpx.AsyncClient,
) -> None:
    """`OrderAmount`, `order_number`, `RefID` are not read (names are lower case): the
    `missing` error names what was sent instead; a field missing outright says nothing
    more, nor does a blank `clickid` beside a missing `refid`."""
    s = await make_offer(client)
    refid = await click(client, s["link"])
    r = await client.get(
        f"/postback?refid={refid}&OrderAmount=10&order_number=M1&coupon=X&clickid="
    )
    errors = {e["field"]: e for e in r.json()["errors"]}
    assert {f: e["code"] for f, e in errors.items()} == {
        "orderamount": "missing",
        "ordernumber": "missing",
    }
    assert "`OrderAmount` was sent" in errors["orderamount"]["message"]
    assert "`order_number` was sent" in errors["ordernumber"]["message"]
    assert "written exactly `ordernumber`" in errors["ordernumber"]["message"]
    r = await client.get("/postback?Ref-ID=x&clickid=&orderamount=1")
    errors = {e["field"]: e for e in r.json()["errors"]}
    assert "`Ref-ID` was sent" in errors["refid"]["message"], errors
    assert "was sent" not in errors["ordernumber"]["message"]
    r = await client.get("/postback?clickid=&orderamount=1&ordernumber=M2")
    assert "was sent" not in r.json()["errors"][0]["message"]
    # a PHP array's brackets, a space in the name: said, and not as a matter of case
    r = await client.get(f"/postback?refid={refid}&orderamount%5B%5D=10&ordernumber%20=M4")
    errors = {e["field"]: e["message"] for e in r.json()["errors"]}
    assert (
        "`orderamount[]` was sent, which is not read: written exactly `orderamount`"
        in (errors["orderamount"])
    ), errors
    assert "`ordernumber ` was sent" in errors["ordernumber"], errors
    assert "lower case" not in errors["ordernumber"], errors
    # another platform's names: said too
    r = await client.get(f"/postback?refid={refid}&amount=10&order_id=M3")
    errors = {e["field"]: e["message"] for e in r.json()["errors"]}
    assert "`amount` was sent, which is not read: if it is the orderamount" in errors["orderamount"]
    assert (
        "`order_id` was sent" in errors["ordernumber"] and "`ordernumber`" in errors["ordernumber"]
    )


async def test_an_unfilled_placeholder_is_told_so_and_a_hint_leads_the_errors(
    client: httpx.AsyncClient,
) -> None:
    """A RefID that is the URL's placeholder left as it was (`{refid}`, `REFID`) is an
    unknown RefID (404) that says so; a hint (a RefID under another name, a JSON body
    not declared) comes first, so the ledger's `code`, and its filter, is the hint."""
    s = await make_offer(client)
    refid = await click(client, s["link"])
    for sent in ("{refid}", "REFID", "%25refid%25", "[clickid]"):
        r = await client.get(f"/postback?refid={sent}&orderamount=1&ordernumber=P1")
        assert r.status_code == 404, r.text
        [error] = r.json()["errors"]
        assert error["code"] == "unknown_refid" and "is a placeholder" in error["message"], sent
    r = await client.get("/postback?refid=A1B2C3!&orderamount=1&ordernumber=P1")
    assert r.json()["errors"][0]["message"] == "no click was tracked with this RefID"
    # what code sends for a variable that held nothing, and a RefID cut short, say so
    for sent in ("undefined", "null", "None"):
        r = await client.get(f"/postback?refid={sent}&orderamount=1&ordernumber=P1")
        [error] = r.json()["errors"]
        assert r.status_code == 404 and error["code"] == "unknown_refid", r.text
        assert error["message"].startswith(f"`{sent}` is what code writes for a variable")
    r = await client.get(f"/postback?refid={refid[:30]}&orderamount=1&ordernumber=P1")
    assert r.json()["errors"][0]["message"] == (
        "no click was tracked with this RefID: RefIDs this tracker issues have 36 characters"
        " and this one has 30; was it cut short on the way (a database column, a URL cut)?"
    )
    # one of this tracker's form that does not verify (another installation's secret,
    # its letters' case changed) says so; one encoded twice on its way says that
    other = RefIdCodec(["another installation's secret"]).issue(s["link"]["id"], 1_800_000_000_000)
    for sent in (other, refid.swapcase()):
        r = await client.get(f"/postback?refid={sent}&orderamount=1&ordernumber=P1")
        [error] = r.json()["errors"]
        assert r.status_code == 404 and error["code"] == "unknown_refid", r.text
        assert "its signature does not verify here" in error["message"], error
        assert "another installation" in error["message"], error
    encoded = refid[:10] + "%252D" + refid[11:]
    r = await client.get(f"/postback?refid={encoded}&orderamount=1&ordernumber=P1")
    [error] = r.json()["errors"]
    assert r.status_code == 404 and error["code"] == "unknown_refid", r.text
    assert "is percent-encoded (`%2D` where a character should be)" in error["message"], error
    # a placeholder encoded twice is a placeholder still; the RefID a HEAD is answered
    # with is said to be that
    r = await client.get("/postback?refid=%257Brefid%257D&orderamount=1&ordernumber=P1")
    assert "is a placeholder" in r.json()["errors"][0]["message"], r.text
    r = await client.get(f"/postback?refid={'-' * 36}&orderamount=1&ordernumber=P1")
    assert "the one a HEAD request is answered with" in r.json()["errors"][0]["message"], r.text
    r = await client.get("/postback?refid=-&orderamount=1&ordernumber=P1")
    assert "HEAD" not in r.json()["errors"][0]["message"], r.text
    # a RefID with something after it (a fragment, a slash, a %20 encoded twice) is told
    # so, naming both, not taken for a placeholder
    for after in ("#section", "/", "%2520", "?utm=x"):
        params = {"refid": refid + after.replace("%25", "%"), "orderamount": "1"}
        r = await client.get("/postback", params={**params, "ordernumber": "P1"})
        assert r.status_code == 404, r.text
        [error] = r.json()["errors"]
        assert error["code"] == "unknown_refid", error
        assert (
            f"the RefID `{refid}` was sent with `{params['refid'][len(refid) :]}`"
            in (error["message"])
        ), error
    r = await client.get(f"/postback?click_id={refid}&orderamount=1&ordernumber=P2")
    assert [e["code"] for e in r.json()["errors"]] == ["wrong_parameter", "missing"]
    [row] = await ledger(client, code="wrong_parameter")
    assert row["ordernumber"] == "P2"


async def test_more_parameters_than_read_are_refused_with_the_first_kept(
    client: httpx.AsyncClient,
) -> None:
    """Past 64 parameters a postback is refused, with the first 64 in the ledger (whose
    order it was stays known) and no error about the parameters it did send; a replay
    refuses it again."""
    s = await make_offer(client)
    refid = await click(client, s["link"])
    extra = "&".join(f"item{k}=1" for k in range(62))
    for query in (
        f"refid={refid}&orderamount=10.00&ordernumber=TMF-1&{extra}",
        f"{extra}&a=1&b=2&c=3&refid={refid}",
    ):
        r = await client.get(f"/postback?{query}")
        assert r.status_code == 400
        assert [(e["field"], e["code"]) for e in r.json()["errors"]] == [("*", "too_many_fields")]
    [late, first] = await ledger(client)
    kept = orjson.loads(first["params"]) if isinstance(first["params"], str) else first["params"]
    assert len(kept) == 64 and kept["ordernumber"] == "TMF-1" and first["refid"] == refid
    assert (first["ordernumber"], first["code"], late["refid"]) == ("TMF-1", "too_many_fields", "")
    r = await client.post(f"/api/v1/postbacks/{first['id']}/replay", headers=AUTH)
    assert r.json()["answer"]["errors"][0]["code"] == "too_many_fields"
    assert await conversions(client) == []
    # empty fields (`&&`, a trailing `&`) are none: 64 fields among them are read, and
    # past 64 the first 64 fields are kept, the empty ones not counted
    fields = f"refid={refid}&orderamount=10.00&ordernumber=TMF-2&{extra}".split("&")[:64]
    r = await client.get("/postback?" + "&&".join(fields) + "&")
    assert r.json()["status"] == "accepted", r.text
    r = await client.get(
        "/postback?" + "&" * 100 + "&&".join([*fields[:2], "ordernumber=TMF-3", *fields[3:], "z=1"])
    )
    assert [(e["field"], e["code"]) for e in r.json()["errors"]] == [("*", "too_many_fields")]
    row = (await ledger(client))[0]
    kept = orjson.loads(row["params"]) if isinstance(row["params"], str) else row["params"]
    assert len(kept) == 64 and kept["ordernumber"] == "TMF-3" and "z" not in kept


async def test_a_long_query_of_two_byte_characters_is_read_whole(
    client: httpx.AsyncClient, app: ClickbackApp
) -> None:
    """Over 8 KiB of bytes but not of characters (the limit is in characters, as RSGI
    gives the query): read whole, never cut to the bytes that fit (and its amount with
    it); over 8,192 characters, a 414."""
    s = await make_offer(client, payout_type="cps", payout_percent="10", payout_amount=None)
    refid = await click(client, s["link"])
    head = f"refid={refid}&ordernumber=U1&note="
    query = head + "ü" * ((8192 - len(head)) // 2 + 1) + "&orderamount=149.90"
    assert len(query.encode()) > 8192 > len(query)
    status, body = await raw_get(app, "/postback", query.encode())
    assert status == 200 and b'"commission":"14.99"' in body, body
    query = head + "ü" * 8192 + "&orderamount=149.90"
    status, body = await raw_get(
        app, "/postback", query.replace("ordernumber=U1", "ordernumber=U2").encode()
    )
    assert status == 414, body
    assert [c["ordernumber"] for c in await conversions(client)] == ["U1"]


async def test_a_json_body_without_its_content_type_is_told_so(
    client: httpx.AsyncClient,
) -> None:
    """Read as a form, such a body is one parameter's name: the refusal says to send it
    as JSON, besides the fields it misses; sent as JSON, it is counted."""
    s = await make_offer(client)
    refid = await click(client, s["link"])
    body = json.dumps({"refid": refid, "orderamount": "10.50", "ordernumber": "H6"})
    for headers in ({"content-type": "text/plain"}, {}):
        r = await client.post("/postback", content=body, headers=headers)
        assert r.status_code == 400
        codes = [e["code"] for e in r.json()["errors"]]
        assert codes[0] == "json_not_declared" and "missing" in codes, codes
    r = await client.post("/postback", content=body, headers={"content-type": "application/json"})
    assert r.json()["status"] == "accepted", r.text
    # a RefID in the query, the rest in the JSON body: the same
    r = await client.post(f"/postback?refid={refid}", content=body.replace('"H6"', '"H7"'))
    assert r.json()["errors"][0]["code"] == "json_not_declared", r.text
    # a form with a RefID under another name is told that, not this
    r = await client.post("/postback", data={"click_id": refid, "orderamount": "1"})
    assert "json_not_declared" not in [e["code"] for e in r.json()["errors"]]


async def test_a_get_is_its_query_and_its_body_is_kept(client: httpx.AsyncClient) -> None:
    """A GET's body (some HTTP clients send one) is not read: a GET is decided on its
    query, as it always was, whatever the body holds (junk, too large, other values);
    the body is kept in the ledger, and a GET refused for want of its fields says its
    body was not read."""
    s = await make_offer(client)
    refid = await click(client, s["link"])
    query = f"/postback?refid={refid}&orderamount=5"
    for n, (body, kind) in enumerate(
        (
            (b"<x>" + b"a" * 20000 + b"</x>", "application/xml"),
            (b"[1,2]", "application/json"),
            (b"orderamount=1000", "application/x-www-form-urlencoded"),
        )
    ):
        r = await client.request(
            "GET", f"{query}&ordernumber=GQ{n}", content=body, headers={"content-type": kind}
        )
        assert r.json()["status"] == "accepted", r.text
    [kept, *_] = await ledger(client)
    assert kept["params"]["(body of the GET)"] == "orderamount=1000"
    assert kept["params"]["orderamount"] == "5"
    r = await client.request(
        "GET",
        f"/postback?refid={refid}",
        content=b"orderamount=1&ordernumber=GB1",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 400
    assert [e["code"] for e in r.json()["errors"]] == ["get_body_ignored", "missing", "missing"]
    [row, *_] = await ledger(client)
    assert (row["code"], row["params"]["(body of the GET)"]) == (
        "get_body_ignored",
        "orderamount=1&ordernumber=GB1",
    )
    # a JSON body cut short for its size is not said to be JSON sent as a form
    big = '{"orderamount": "5", "ordernumber": "J9", "notes": "' + "x" * 17000 + '"}'
    r = await client.post(
        f"/postback?refid={refid}", content=big, headers={"content-type": "application/json"}
    )
    codes = [e["code"] for e in r.json()["errors"]]
    assert codes[0] == "request_too_large" and "json_not_declared" not in codes, codes


async def test_a_json_body_is_read_as_its_fields(client: httpx.AsyncClient) -> None:
    s = await make_offer(client, payout_type="cps", payout_percent="10", payout_amount=None)
    refid = await click(client, s["link"])
    body = f'{{"refid": "{refid}", "orderamount": 49.90, "ordernumber": "J1", "geo": "de"}}'
    headers = {"content-type": "application/json; charset=utf-8"}
    r = await client.post("/postback", content=body, headers=headers)
    assert r.json()["status"] == "accepted", r.text
    assert r.json()["commission"] == "4.99"  # 49.90 read as written, not as a float
    [c] = await conversions(client)
    assert (c["orderamount"], c["geo"]) == ("49.90", "DE")
    for bad, field in (
        (f'{{"refid": "{refid}", "orderamount": 1, "ordernumber": ["J2"]}}', "ordernumber"),
        (f'["{refid}", 1, "J3"]', "*"),
        ('{"orderamount": NaN}', "*"),
        ("{not json", "*"),
    ):
        r = await client.post("/postback", content=bad, headers=headers)
        assert r.status_code == 400, bad
        assert {(e["field"], e["code"]) for e in r.json()["errors"]} >= {(field, "invalid_json")}
    # no JSON at all says what stopped it, and where: not read as a JSON of another kind
    r = await client.post("/postback", content="{not json", headers=headers)
    said = next(e["message"] for e in r.json()["errors"] if e["code"] == "invalid_json")
    assert said.startswith("the body is not valid JSON (Expecting property name"), said
    assert "at character 1" in said
    r = await client.post("/postback", content=b"[" * 5000, headers=headers)  # deep, not a 500
    assert r.status_code == 400
    said = next(e["message"] for e in r.json()["errors"] if e["code"] == "invalid_json")
    assert "nested too deeply" in said or "not valid JSON" in said, said
    [row, *_] = await ledger(client)
    assert row["params"]["(body)"] == "[" * 1024  # what was sent, kept
    # a name twice: the repeat is refused, not the last value silently taken
    twice = (
        f'{{"refid": "{refid}", "orderamount": "10", "orderamount": "1000", "ordernumber": "J4"}}'
    )
    r = await client.post("/postback", content=twice, headers=headers)
    assert r.json()["errors"][0]["code"] == "repeated"
    # an empty JSON body beside a query of every field; a field of the advertiser's own that
    # is no string is kept as its JSON text
    r = await client.post(
        f"/postback?refid={refid}&orderamount=1&ordernumber=J5", content=b"", headers=headers
    )
    assert r.json()["status"] == "accepted", r.text
    items = '[{"sku": "A-1", "qty": 2, "price": 49.90, "gift": true, "note": null}, [1, []]]'
    extra = f'{{"refid": "{refid}", "orderamount": 1, "ordernumber": "J6", "items": {items}}}'
    r = await client.post("/postback", content=extra, headers=headers)
    assert r.json()["status"] == "accepted", r.text
    [row, *_] = await ledger(client)
    # as sent but for its spacing: objects as objects, numbers as written
    assert row["params"]["items"] == items.replace(": ", ":").replace(", ", ",")
    deep = "[" * 900 + "1" + "]" * 900  # as deep as a JSON body is read: kept, not a 500
    extra = f'{{"refid": "{refid}", "orderamount": 1, "ordernumber": "J8", "items": {deep}}}'
    r = await client.post("/postback", content=extra, headers=headers)
    assert r.json()["status"] == "accepted", r.text
    assert (await ledger(client))[0]["params"]["items"] == deep[:1024]
    amount = f'{{"refid": "{refid}", "orderamount": {{"value": "1.00"}}, "ordernumber": "J7"}}'
    r = await client.post("/postback", content=amount, headers=headers)
    assert 'not `{"value":"1.00"}`' in r.json()["errors"][0]["message"], r.text


async def test_a_json_boolean_is_one_error_and_a_json_number_ordernumber_its_text(
    client: httpx.AsyncClient,
) -> None:
    """`"orderamount": true` is one `invalid_amount` (a boolean is no amount), not that and
    an `invalid_json` besides; `"ordernumber": true` one `invalid_json`; `"ordernumber":
    12345` is the order number `12345`."""
    s = await make_offer(client)
    refid = await click(client, s["link"])
    headers = {"content-type": "application/json"}

    async def post(**fields: object) -> httpx.Response:
        body = {"refid": refid, "orderamount": "1", "ordernumber": "B1", **fields}
        return await client.post("/postback", content=json.dumps(body), headers=headers)

    for value in (True, False):
        r = await post(orderamount=value)
        assert r.status_code == 400
        [error] = r.json()["errors"]
        assert (error["field"], error["code"]) == ("orderamount", "invalid_amount"), error
        assert f"not `{json.dumps(value)}`" in error["message"]
    for field in ("ordernumber", "refid", "currency"):
        r = await post(**{field: True})
        assert [(e["field"], e["code"]) for e in r.json()["errors"]] == [(field, "invalid_json")]
    [row, *_] = await ledger(client)
    assert row["code"] == "invalid_json" and row["params"]["currency"] == "true"
    r = await post(ordernumber=12345)
    assert r.json()["status"] == "accepted", r.text
    assert [c["ordernumber"] for c in await conversions(client)] == ["12345"]


async def test_a_json_null_is_an_optional_parameter_left_out_and_a_required_one_refused(
    client: httpx.AsyncClient,
) -> None:
    """`"coupon": null` (a serializer's way to say no coupon) is as if it were left out,
    for each optional parameter; `null` for a required one is refused `invalid_json`."""
    s = await make_offer(client)
    refid = await click(client, s["link"])
    headers = {"content-type": "application/json"}
    nulls = {"coupon": None, "currency": None, "geo": None, "commissionid": None}
    body = {"refid": refid, "orderamount": "10", "ordernumber": "N1", **nulls}
    r = await client.post("/postback", content=json.dumps(body), headers=headers)
    assert r.json()["status"] == "accepted", r.text
    [conv] = await conversions(client)
    assert (conv["coupon"], conv["currency"], conv["geo"], conv["commissionid"]) == (
        "",
        "USD",
        None,
        "",
    )
    for field in ("ordernumber", "orderamount"):
        body = {"refid": refid, "orderamount": "10", "ordernumber": "N2", field: None}
        r = await client.post("/postback", content=json.dumps(body), headers=headers)
        assert r.status_code == 400
        assert [e["code"] for e in r.json()["errors"]] == [
            "invalid_amount" if field == "orderamount" else "invalid_json"
        ]


async def test_a_json_body_of_a_json_media_type_is_read_as_json(
    client: httpx.AsyncClient,
) -> None:
    """`application/vnd.api+json` (a `+json` type, RFC 6839) and `text/json` declare JSON
    too: read as JSON, not told `json_not_declared`; a type that is no JSON is not."""
    s = await make_offer(client)
    refid = await click(client, s["link"])
    for n, kind in enumerate(("application/vnd.api+json", "text/json; charset=utf-8")):
        body = json.dumps({"refid": refid, "orderamount": "10", "ordernumber": f"T{n}"})
        r = await client.post("/postback", content=body, headers={"content-type": kind})
        assert r.json()["status"] == "accepted", (kind, r.text)
    body = json.dumps({"refid": refid, "orderamount": "10", "ordernumber": "T9"})
    r = await client.post("/postback", content=body, headers={"content-type": "text/plain"})
    assert r.json()["errors"][0]["code"] == "json_not_declared", r.text


async def test_an_order_number_composed_either_way_is_one_order(
    client: httpx.AsyncClient,
) -> None:
    """`Müller` with `ü` as one character (NFC) and as `u` and a combining diaeresis
    (NFD, as macOS and some platforms send it) look the same: one order, the second a
    duplicate of the first, stored composed; the ledger keeps each as it was sent."""
    s = await make_offer(client)
    refid = await click(client, s["link"])
    composed, decomposed = "Bestellung-M\u00fcller", "Bestellung-Mu\u0308ller"
    answers = []
    for order in (composed, decomposed):
        params = {"refid": refid, "orderamount": "10", "ordernumber": order}
        answers.append((await client.get("/postback", params=params)).json())
    assert [a["status"] for a in answers] == ["accepted", "duplicate"], answers
    assert [c["ordernumber"] for c in await conversions(client)] == [composed]
    sent = {row["params"]["ordernumber"] for row in await ledger(client)}
    assert sent == {composed, decomposed}
    # looked up either way too: a filter, and the advertiser's validation file
    r = await client.get("/api/v1/conversions", params={"ordernumber": decomposed}, headers=AUTH)
    assert [c["ordernumber"] for c in r.json()["items"]] == [composed]
    r = await client.post(
        f"/api/v1/advertisers/{s['advertiser']['id']}/conversion-statuses",
        content=f"{decomposed},reversed,refund\n".encode(),
        headers=AUTH,
    )
    assert r.status_code == 200, r.text
    assert [c["status"] for c in await conversions(client)] == ["reversed"], r.text


async def test_half_a_character_in_a_json_value_is_refused_and_kept(
    client: httpx.AsyncClient,
) -> None:
    """A JSON string holding a lone UTF-16 surrogate (`"SALE\\ud83d"`, an emoji cut in
    two, as `JSON.stringify` sends it) is no text: for a parameter the postback is decided
    on, a 400 `invalid_text` naming the field, the postback kept in the ledger with the
    half as the text `\\ud83d` (which a replay counts); in a field of the advertiser's
    own, in a name or in a list, kept so and counted. A whole pair is the character."""
    s = await make_offer(client)
    refid = await click(client, s["link"])
    headers = {"content-type": "application/json"}
    body = f'{{"refid":"{refid}","orderamount":"10","ordernumber":"A1","coupon":"SALE\\ud83d"}}'
    r = await client.post("/postback", content=body, headers=headers)
    assert r.status_code == 400, r.text
    [error] = r.json()["errors"]
    assert (error["field"], error["code"]) == ("coupon", "invalid_text"), error
    assert "\\ud83d" in error["message"]
    [row] = await ledger(client)
    assert (row["http_status"], row["code"]) == (400, "invalid_text")
    assert row["params"]["coupon"] == "SALE\\ud83d" and await conversions(client) == []
    # the same half as the bytes UTF-8 would give it, and in an amount: one error each
    # (the order number alone replaced: a RefID may hold `A1` too)
    raw = body.replace('"A1"', '"A2"').replace("\\ud83d", "").encode()
    raw = raw.replace(b'"SALE"', b'"SALE\xed\xa0\xbd"').replace(b'"10"', b'"10\\udc00"')
    r = await client.post("/postback", content=raw, headers=headers)
    assert [(e["field"], e["code"]) for e in r.json()["errors"]] == [
        ("orderamount", "invalid_text"),
        ("coupon", "invalid_text"),
    ], r.text
    r = await client.post(f"/api/v1/postbacks/{row['id']}/replay", headers=AUTH)
    assert r.json()["answer"]["status"] == "accepted", r.text
    # not a parameter the postback is decided on: kept as text, the order counted
    extra = (
        f'{{"refid":"{refid}","orderamount":"1","ordernumber":"A3","note":"x\\uD83D",'
        '"list":["\\ud83d",1],"n\\ud83d":"v","coupon":"\\ud83d\\ude00"}'
    )
    r = await client.post("/postback", content=extra, headers=headers)
    assert r.json()["status"] == "accepted", r.text
    [row, *_] = await ledger(client)
    assert row["params"]["note"] == "x\\ud83d" and row["params"]["n\\ud83d"] == "v"
    assert row["params"]["list"] == '["\\ud83d",1]'  # as sent: 1 a number
    coupons = {c["ordernumber"]: c["coupon"] for c in await conversions(client)}
    assert coupons == {"A1": "SALE\\ud83d", "A3": "\U0001f600"}


async def test_bytes_that_are_not_utf8_in_a_form_or_query_are_kept_as_escapes(
    client: httpx.AsyncClient, app: ClickbackApp
) -> None:
    """`%ff`, a raw byte 0xff, or a surrogate's UTF-8 bytes, in a query or a form body:
    the value holds each byte as its escape (`\\xff`), the postback counted."""
    s = await make_offer(client)
    refid = await click(client, s["link"])
    form = {"content-type": "application/x-www-form-urlencoded"}
    base = f"refid={refid}&orderamount=1&ordernumber="
    r = await client.get(f"/postback?{base}F1&coupon=SALE%ff")
    assert r.json()["status"] == "accepted", r.text
    r = await client.post("/postback", content=f"{base}F2&coupon=SALE%FF", headers=form)
    assert r.json()["status"] == "accepted", r.text
    r = await client.post(
        "/postback", content=(base + "F3&coupon=SALE").encode() + b"\xff", headers=form
    )
    assert r.json()["status"] == "accepted", r.text
    r = await client.post("/postback", content=f"{base}F4&coupon=SALE%ED%A0%BD", headers=form)
    assert r.json()["status"] == "accepted", r.text
    status, answer = await raw_get(app, "/postback", (base + "F5&coupon=SALE").encode() + b"\xff")
    assert status == 200 and b'"accepted"' in answer, answer
    coupons = {c["ordernumber"]: c["coupon"] for c in await conversions(client)}
    assert coupons == {
        "F1": "SALE\\xff",
        "F2": "SALE\\xff",
        "F3": "SALE\\xff",
        "F4": "SALE\\xed\\xa0\\xbd",
        "F5": "SALE\\xff",
    }
    assert len(await ledger(client)) == 5


async def test_a_method_the_postback_does_not_take_says_which_it_does(
    client: httpx.AsyncClient,
) -> None:
    """A postback fired with PUT is refused (405, naming GET and POST), kept in the
    ledger as every postback is, and counts when the operator replays it; a HEAD or an
    OPTIONS carries no postback and is not kept."""
    s = await make_offer(client)
    refid = await click(client, s["link"])
    r = await client.put(f"/postback?refid={refid}&orderamount=12.50&ordernumber=PUT-1")
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST"
    assert r.json()["errors"][0]["code"] == "method_not_allowed"
    for method in ("HEAD", "OPTIONS"):
        r = await client.request(method, f"/postback?refid={refid}&ordernumber=PUT-2")
        assert r.status_code == 405 and r.headers["allow"] == "GET, POST"
    [row] = await ledger(client)
    assert (row["method"], row["http_status"], row["code"]) == ("PUT", 405, "method_not_allowed")
    assert row["params"]["ordernumber"] == "PUT-1" and await conversions(client) == []
    r = await client.post(f"/api/v1/postbacks/{row['id']}/replay", headers=AUTH)
    assert r.json()["answer"]["status"] == "accepted", r.text
    [conv] = await conversions(client)
    assert (conv["ordernumber"], conv["orderamount"]) == ("PUT-1", "12.50")
    # the fields in a body, as a POST's: read and kept, to replay
    form = {"content-type": "application/x-www-form-urlencoded"}
    fields = f"refid={refid}&orderamount=7.25&ordernumber=PUT-3"
    r = await client.request("PATCH", "/postback", content=fields, headers=form)
    assert r.status_code == 405, r.text
    assert [e["code"] for e in r.json()["errors"]] == ["method_not_allowed"], r.text
    [row] = await ledger(client, ordernumber="PUT-3")
    assert (row["method"], row["params"]["orderamount"]) == ("PATCH", "7.25")
    r = await client.post(f"/api/v1/postbacks/{row['id']}/replay", headers=AUTH)
    assert r.json()["answer"]["status"] == "accepted", r.text


async def _three_too_large(client: httpx.AsyncClient) -> tuple[dict[str, Any], httpx.Response]:
    """A query too long (414), a body too large (413), then, the advertiser requiring a
    token, a query too long with the token after the cut: its answer."""
    s = await make_offer(client)
    refid = await click(client, s["link"])
    r = await client.get(f"/postback?refid={refid}&orderamount=1&ordernumber=Q&x={'a' * 9000}")
    assert r.status_code == 414
    r = await client.post(
        "/postback",
        content=f"refid={refid}&orderamount=1&ordernumber=B&x={'b' * 20000}".encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 413
    await client.patch(
        f"/api/v1/advertisers/{s['advertiser']['id']}",
        json={"require_token": True, "postback_token": "secret-1"},
        headers=AUTH,
    )
    cut = f"refid={refid}&orderamount=1&ordernumber=T&x={'c' * 9000}&token=secret-1"
    r = await client.get(f"/postback?{cut}")
    return s, r


async def test_the_ledger_keeps_the_status_a_request_too_large_was_answered(
    client: httpx.AsyncClient,
) -> None:
    """A query over 8,192 characters is answered 414 and a body over 16 KiB 413: the
    ledger says so too, not 400; and not 403 `token_missing` for an advertiser requiring
    its token, which may be in what was cut (it was, here)."""
    _, r = await _three_too_large(client)
    assert r.status_code == 414, r.text
    assert r.json()["errors"][0]["code"] == "request_too_large"
    rows = await ledger(client)
    assert [i["http_status"] for i in rows] == [414, 413, 414]
    assert [i["code"] for i in rows] == ["request_too_large"] * 3


async def test_a_replay_of_a_request_too_large_keeps_its_status_and_says_why(
    client: httpx.AsyncClient,
) -> None:
    """Replayed, a postback refused 413 or 414 is refused so again (not 400), its
    `request_too_large` saying the original was too large and cannot be replayed from the
    excerpt kept of it; so is the replay's replay, and one whose token was cut."""
    s, r = await _three_too_large(client)
    assert r.status_code == 414
    await client.patch(
        f"/api/v1/advertisers/{s['advertiser']['id']}", json={"require_token": False}, headers=AUTH
    )
    for row, status, size in zip(
        await ledger(client),
        (414, 413, 414),
        ("query longer than 8192 bytes", "body over 16384 bytes", "query longer than 8192 bytes"),
        strict=True,
    ):
        original = row["id"]
        for _ in range(2):  # the original, then its replay
            r = await client.post(f"/api/v1/postbacks/{row['id']}/replay", headers=AUTH)
            answer, row = r.json()["answer"], r.json()["postback"]
            assert answer["status"] == "rejected"
            assert (row["http_status"], row["code"]) == (status, "request_too_large"), row
            error = answer["errors"][0]
            assert error["message"] == (
                f"{size}: the original was too large and only an excerpt of it was kept,"
                " so it cannot be replayed; have it sent again within the limit"
            )
            assert row["errors"][0] == error
        assert row["replay_of"] is not None and row["replay_of"] != original
    assert await conversions(client) == []


async def test_a_nul_in_a_postback_is_refused_and_kept_on_both_engines(
    client: httpx.AsyncClient,
) -> None:
    """U+0000, which is no text (PostgreSQL's cannot hold it), in a parameter a postback
    is decided on (a query's, a form's, a JSON body's) refuses it, `invalid_text` naming
    the field: dropped, `A%001` would be the order `A1`, another one. It is kept in the
    ledger as its escape `\\x00`; in another parameter it is kept so, and not refused.
    Never a 500."""
    s = await make_offer(client)
    refid = await click(client, s["link"])
    r = await client.get("/postback?refid=%00&ordernumber=%00&orderamount=1")
    assert r.status_code == 400, r.text
    r = await client.get(f"/postback?refid={refid}&ordernumber=A%001&orderamount=1&note=%00X")
    assert r.status_code == 400, r.text
    assert [(e["field"], e["code"]) for e in r.json()["errors"]] == [
        ("ordernumber", "invalid_text")
    ]
    body = f'{{"refid":"{refid}","orderamount":"1","ordernumber":"B1","coupon":"\\u0000X"}}'
    r = await client.post("/postback", content=body, headers={"content-type": "application/json"})
    assert [(e["field"], e["code"]) for e in r.json()["errors"]] == [("coupon", "invalid_text")]
    r = await client.post(
        "/postback",
        content=f"refid={refid}&orderamount=1&ordernumber=C1&geo=D%00E",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert [(e["field"], e["code"]) for e in r.json()["errors"]] == [("geo", "invalid_text")]
    rows = await ledger(client)
    assert [row["outcome"] for row in rows] == ["rejected"] * 4
    assert {"A\\x001", "\\x00"} <= {row["params"].get("ordernumber") for row in rows}
    assert [row["params"]["note"] for row in rows if "note" in row["params"]] == ["\\x00X"]
    # a replay of `A%001`, stored as the text `A\x001`, is refused again: counted, it
    # would be an order apart from `A1` sent again
    [nul] = [row for row in rows if row["params"].get("ordernumber") == "A\\x001"]
    r = await client.post(f"/api/v1/postbacks/{nul['id']}/replay", headers=AUTH)
    assert r.json()["answer"]["status"] == "rejected", r.text
    # the orders themselves are new when they come without it
    for order in ("A1", "B1"):
        r = await client.get(f"/postback?refid={refid}&ordernumber={order}&orderamount=1")
        assert r.json()["status"] == "accepted", r.text
    assert len(await conversions(client)) == 2


def multipart(
    fields: dict[str, str], boundary: str = "----PhpCurlBoundaryAbC9"
) -> tuple[bytes, str]:
    """A multipart/form-data body of the fields, as PHP's cURL sends an array of fields."""
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    )
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


async def test_a_multipart_form_body_is_read_as_its_fields(client: httpx.AsyncClient) -> None:
    """PHP's cURL sends an array of fields as multipart/form-data (so does `curl -F`): its
    fields are the postback's, its boundary read as sent (upper and lower case); a body
    that is no such form is refused `invalid_form`, kept in the ledger. `/postback/`, a
    postback URL pasted with a slash after it, is the same."""
    s = await make_offer(client, payout_type="cps", payout_percent="10", payout_amount=None)
    refid = await click(client, s["link"])
    fields = {"refid": refid, "orderamount": "49.90", "ordernumber": "MP1", "coupon": "Säle"}
    body, kind = multipart(fields)
    r = await client.post("/postback", content=body, headers={"content-type": kind})
    assert r.json()["status"] == "accepted", r.text
    [c] = await conversions(client)
    assert (c["orderamount"], c["ordernumber"], c["coupon"]) == ("49.90", "MP1", "Säle")
    files = {"ordernumber": (None, "MP2"), "orderamount": (None, "5")}
    r = await client.post("/postback/", data={"refid": refid}, files=files)  # httpx's own
    assert r.json()["status"] == "accepted", r.text
    body, kind = multipart({**fields, "ordernumber": "MP3"})
    for broken in (kind.replace("AbC9", "abc9"), "multipart/form-data"):
        r = await client.post("/postback", content=body, headers={"content-type": broken})
        assert r.status_code == 400, r.text
        assert r.json()["errors"][0]["code"] == "invalid_form"
        [row, *_] = await ledger(client)
        assert row["params"]["(body)"].startswith("------PhpCurlBoundaryAbC9")
    assert len(await conversions(client)) == 2


async def test_an_order_number_cut_at_an_ampersand_sent_as_it_is_is_refused(
    client: httpx.AsyncClient,
) -> None:
    """`ordernumber=Smith&Sons-1` is the order `Smith` and a parameter `Sons-1` with no
    value: counted, `Smith&Sons-2` would be its duplicate, a sale lost. Refused, in a
    query and a form alike (its name escaped too), and so is a flag of one's own right
    after the order number (it cannot be told apart); kept in the ledger, and refused
    again by a replay (counted as `Smith`, the sale sent again fixed would be counted
    twice). With the `&` sent as %26 the order is counted whole; a flag elsewhere, and a
    blank order number before one, are no cut."""
    s = await make_offer(client)
    refid = await click(client, s["link"])
    base = f"/postback?refid={refid}&orderamount=20&ordernumber="
    r = await client.get(base + "Smith&Sons-1")
    assert r.status_code == 400
    [error] = r.json()["errors"]
    assert (error["field"], error["code"]) == ("ordernumber", "unencoded_ampersand")
    assert "`ordernumber=Smith&Sons-1` arrived" in error["message"] and "%26" in error["message"]
    r = await client.post(
        "/postback",
        content=f"refid={refid}&orderamount=20&ordernumber=Smith&Sons-2",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.json()["errors"][0]["code"] == "unencoded_ampersand", r.text
    r = await client.get(base + "W1&1701234567")  # a cache-buster after it
    assert r.json()["errors"][0]["code"] == "unencoded_ampersand", r.text
    r = await client.get(f"/postback?refid={refid}&orderamount=20&order%6Eumber=Smith&Sons-3")
    assert r.json()["errors"][0]["code"] == "unencoded_ampersand", r.text
    r = await client.get(base + "Smith%26Sons-1&source=x&flag")
    assert r.json()["status"] == "accepted", r.text
    r = await client.get(f"/postback?test&refid={refid}&orderamount=20&ordernumber=F1&coupon=&x")
    assert r.json()["status"] == "accepted", r.text
    r = await client.get(base + "&flag")
    assert [e["code"] for e in r.json()["errors"]] == ["missing"], r.text
    first = (await ledger(client, code="unencoded_ampersand"))[-1]
    assert first["params"]["Sons-1"] == "" and first["params"]["ordernumber"] == "Smith"
    r = await client.post(f"/api/v1/postbacks/{first['id']}/replay", headers=AUTH)
    assert r.json()["answer"]["errors"][0]["code"] == "unencoded_ampersand", r.text
    orders = sorted(c["ordernumber"] for c in await conversions(client))
    assert orders == ["F1", "Smith&Sons-1"]


async def test_an_order_number_holding_a_character_not_seen_is_refused(
    client: httpx.AsyncClient,
) -> None:
    """A byte-order mark, a zero-width space, a control character in an order number:
    `D-1` with one would be another order than `D-1`, a sale counted twice. Refused,
    naming the character; the order without it is counted once."""
    s = await make_offer(client)
    refid = await click(client, s["link"])
    base = f"/postback?refid={refid}&orderamount=20&ordernumber="
    assert (await client.get(base + "D-1")).json()["status"] == "accepted"
    for sent, named in (
        ("%EF%BB%BFD-1", "U+FEFF"),
        ("D-1%E2%80%8B", "U+200B"),
        ("D%E2%80%8D-1", "U+200D"),
        ("D-%071", "U+0007"),
    ):
        r = await client.get(base + sent)
        assert r.status_code == 400, (sent, r.text)
        [error] = r.json()["errors"]
        assert (error["field"], error["code"]) == ("ordernumber", "invalid_text")
        assert named in error["message"], error
    assert (await client.get(base + "%20D-1%09")).json()["status"] == "duplicate"
    assert [c["ordernumber"] for c in await conversions(client)] == ["D-1"]


async def test_a_json_order_number_not_written_as_a_whole_number_is_refused(
    client: httpx.AsyncClient,
) -> None:
    """JSON numbers are read as written: `777.0` and `7.77e2` would each be another order
    than `777`, one sale paid three times. A whole number is the order number; others
    are refused, saying to send a string."""
    s = await make_offer(client)
    refid = await click(client, s["link"])
    json_type = {"content-type": "application/json"}
    for number, status in (("777", "accepted"), ("-12", "accepted")):
        body = f'{{"refid":"{refid}","orderamount":"10","ordernumber":{number}}}'
        r = await client.post("/postback", content=body, headers=json_type)
        assert r.json()["status"] == status, r.text
    for number in ("777.0", "7.77e2", "777E0"):
        body = f'{{"refid":"{refid}","orderamount":"10","ordernumber":{number}}}'
        r = await client.post("/postback", content=body, headers=json_type)
        assert r.status_code == 400, r.text
        [error] = r.json()["errors"]
        assert (error["field"], error["code"]) == ("ordernumber", "invalid_json")
        assert number in error["message"] and "JSON strings" in error["message"]
    r = await client.get(f"/postback?refid={refid}&orderamount=10&ordernumber=777")
    assert r.json()["status"] == "duplicate"
    assert sorted(c["ordernumber"] for c in await conversions(client)) == ["-12", "777"]


async def test_a_url_written_for_html_is_named_in_the_missing_error(
    client: httpx.AsyncClient,
) -> None:
    """`…&amp;orderamount=20&amp;ordernumber=D-12` (a URL copied from an HTML page) is
    told so in the `missing` errors of the fields it hides."""
    s = await make_offer(client)
    refid = await click(client, s["link"])
    r = await client.get(f"/postback?refid={refid}&amp;orderamount=20&amp;ordernumber=D-12")
    assert r.status_code == 400
    errors = {e["field"]: e for e in r.json()["errors"]}
    assert set(errors) == {"ordernumber", "orderamount"}
    for name in ("ordernumber", "orderamount"):
        assert errors[name]["code"] == "missing"
        assert f"`amp;{name}` was sent" in errors[name]["message"]
        assert "`&amp;` for `&`" in errors[name]["message"]
