"""Inbound postback security per advertiser: token, IP allowlist (with and without a
trusted proxy), signatures, and the per-IP rate limit; every refusal is in the ledger."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from clickback.config import Settings
from clickback.domain.ports import Store
from clickback.domain.refid import RefIdCodec
from clickback.domain.security import sign
from clickback.web.app import ClickbackApp
from tests.conftest import ADMIN, AUTH, click, make_offer

PROXY = "203.0.113.7"  # the address the test client connects from


@pytest.fixture
async def guarded(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        database_url="unused",
        admin_token=ADMIN,
        public_url="http://t",
        trusted_proxies=("203.0.113.0/28",),
        postback_rate_limit=2,
    )
    app = ClickbackApp(settings, store)
    await app.startup()
    transport = httpx.ASGITransport(app=app, client=(PROXY, 4444))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c
    await app.shutdown()


async def offer_with(client: httpx.AsyncClient, **advertiser: Any) -> tuple[dict, str]:
    s = await make_offer(client)
    r = await client.patch(
        f"/api/v1/advertisers/{s['advertiser']['id']}", json=advertiser, headers=AUTH
    )
    assert r.status_code == 200, r.text
    return s, await click(client, s["link"])


async def fire(client: httpx.AsyncClient, params: dict[str, str], ip: str | None = None) -> Any:
    headers = {"X-Forwarded-For": ip} if ip else {}
    return await client.get("/postback", params=params, headers=headers)


async def test_ip_allowlist_behind_a_trusted_proxy(guarded: httpx.AsyncClient) -> None:
    _, refid = await offer_with(guarded, ip_allowlist="198.51.100.0/24, 2001:db8::/32")
    base = {"refid": refid, "orderamount": "1"}
    r = await fire(guarded, {**base, "ordernumber": "1"}, ip="192.0.2.9")
    assert r.status_code == 403 and r.json()["code"] == "ip_not_allowed"
    # the proxy's own address is not the client; the forwarded one is
    r = await fire(guarded, {**base, "ordernumber": "2"})
    assert r.status_code == 403
    r = await fire(guarded, {**base, "ordernumber": "3"}, ip="198.51.100.20, 203.0.113.2")
    assert r.json()["status"] == "accepted"
    r = await fire(guarded, {**base, "ordernumber": "4"}, ip="2001:db8::5")
    assert r.json()["status"] == "accepted"
    ledger = (
        await guarded.get("/api/v1/postbacks", params={"code": "ip_not_allowed"}, headers=AUTH)
    ).json()["items"]
    assert [(p["ordernumber"], p["ip"], p["http_status"]) for p in ledger] == [
        ("2", PROXY, 403),
        ("1", "192.0.2.9", 403),
    ]


async def test_every_forwarded_for_line_is_read(guarded: httpx.AsyncClient) -> None:
    """A proxy that adds its own line after the client's (HAProxy's `option forwardfor`):
    the client's line, first, must not pass for the address the proxy saw."""
    _, refid = await offer_with(guarded, ip_allowlist="198.51.100.0/24")
    base = {"refid": refid, "orderamount": "1"}
    lines = [("X-Forwarded-For", "198.51.100.20"), ("X-Forwarded-For", "192.0.2.66")]
    r = await guarded.get("/postback", params={**base, "ordernumber": "S1"}, headers=lines)
    assert r.status_code == 403 and r.json()["code"] == "ip_not_allowed"
    [row] = (await guarded.get("/api/v1/postbacks", headers=AUTH)).json()["items"]
    assert row["ip"] == "192.0.2.66"
    lines.reverse()
    r = await guarded.get("/postback", params={**base, "ordernumber": "S2"}, headers=lines)
    assert r.json()["status"] == "accepted"


async def test_a_stored_key_still_verifies_once_keys_are_set(store: Store) -> None:
    """The tracker ran on its generated key; the operator then sets `CLICKBACK_SECRET`:
    the RefIDs issued before stay valid, and new ones are signed with the new key."""

    async def run(secrets: tuple[str, ...], work: Any) -> Any:
        settings = Settings(
            database_url="unused", admin_token=ADMIN, public_url="http://t", secrets=secrets
        )
        app = ClickbackApp(settings, store)
        await app.startup()
        try:
            transport = httpx.ASGITransport(app=app, client=(PROXY, 4444))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return await work(c)
        finally:
            await app.shutdown()

    async def first(c: httpx.AsyncClient) -> tuple[dict, str]:
        s = await make_offer(c)
        return s, await click(c, s["link"])

    s, old = await run((), first)

    async def then(c: httpx.AsyncClient) -> None:
        base = "/postback?orderamount=1&ordernumber="
        assert (await c.get(f"{base}R1&refid={old}")).json()["status"] == "accepted"
        new = await click(c, s["link"])
        assert RefIdCodec(["a-new-explicit-key"]).verify(new) is not None  # signed with it
        assert (await c.get(f"{base}R2&refid={new}")).json()["status"] == "accepted"

    await run(("a-new-explicit-key",), then)


async def test_forwarded_for_is_ignored_from_an_untrusted_peer(client: httpx.AsyncClient) -> None:
    _, refid = await offer_with(client, ip_allowlist="198.51.100.0/24")
    r = await fire(
        client, {"refid": refid, "orderamount": "1", "ordernumber": "X"}, ip="198.51.100.20"
    )
    assert r.status_code == 403 and r.json()["code"] == "ip_not_allowed"


async def test_signatures(guarded: httpx.AsyncClient) -> None:
    # each fire from another address: the fixture's rate limit is per source IP
    _, refid = await offer_with(guarded, signing_secret="k3y", require_signature=True)
    now = str(int(time.time()))
    good = {
        "refid": refid,
        "orderamount": "9.90",
        "ordernumber": "S1",
        "ts": now,
        "coupon": "a b&c",
    }
    r = await fire(guarded, {**good, "sig": sign("k3y", good)}, ip="192.0.2.10")
    assert r.json()["status"] == "accepted", r.text
    unsigned = {**good, "ordernumber": "S2"}
    r = await fire(guarded, unsigned, ip="192.0.2.11")
    assert r.status_code == 403 and r.json()["code"] == "signature_invalid"
    r = await fire(guarded, {**unsigned, "sig": sign("other", unsigned)}, ip="192.0.2.12")
    assert r.json()["code"] == "signature_invalid"
    tampered = {**unsigned, "sig": sign("k3y", unsigned), "orderamount": "999"}
    assert (await fire(guarded, tampered)).json()["code"] == "signature_invalid"
    old = {**unsigned, "ts": str(int(time.time()) - 3600)}
    r = await fire(guarded, {**old, "sig": sign("k3y", old)}, ip="192.0.2.13")
    assert r.status_code == 403 and r.json()["code"] == "signature_expired"
    convs = (await guarded.get("/api/v1/conversions", headers=AUTH)).json()["items"]
    assert [c["ordernumber"] for c in convs] == ["S1"]


async def test_a_signature_made_as_documented_is_accepted(client: httpx.AsyncClient) -> None:
    """The advertiser's side, written out from docs/outbound.md and not with our `sign`:
    parameters sorted by name, names and values percent-encoded with only `A-Z a-z 0-9
    - . _ ~` left as is, joined by `&`, `sig` left out, hex HMAC-SHA256 under the secret."""
    _, refid = await offer_with(client, signing_secret="k3y", require_signature=True)
    ts = str(int(time.time()))
    params = {
        "ts": ts,
        "refid": refid,
        "ordernumber": "D/1",
        "orderamount": "9.90",
        "coupon": "a b&c=~é",
    }
    canonical = (
        f"coupon=a%20b%26c%3D~%C3%A9&orderamount=9.90&ordernumber=D%2F1&refid={refid}&ts={ts}"
    )
    sig = hmac.new(b"k3y", canonical.encode(), hashlib.sha256).hexdigest()
    r = await fire(client, {**params, "sig": sig})
    assert r.json()["status"] == "accepted", r.text
    r = await fire(client, {**params, "ordernumber": "D/2", "sig": sig})
    assert r.status_code == 403 and r.json()["code"] == "signature_invalid"
    r = await fire(client, {**params, "ordernumber": "D/1", "sig": sig.upper()})
    assert r.json()["status"] == "duplicate"  # hex is read in either case


async def test_a_signed_postback_with_a_long_or_nul_value_is_answered_as_an_unsigned_one(
    client: httpx.AsyncClient,
) -> None:
    """A value kept as an excerpt (over 1,024 characters) or with its NUL escaped is checked
    against the signature as it was sent: the answer is the one an unsigned postback
    gets, and the ledger keeps its code, not `signature_invalid`."""
    _, refid = await offer_with(client, signing_secret="k3y", require_signature=True)
    now = str(int(time.time()))
    long = {"refid": refid, "orderamount": "1", "ordernumber": "L" * 1500, "ts": now}
    r = await fire(client, {**long, "sig": sign("k3y", long)})
    assert r.status_code == 400, r.text
    assert [(e["field"], e["code"]) for e in r.json()["errors"]] == [("ordernumber", "too_long")]
    [row] = (await client.get("/api/v1/postbacks", headers=AUTH)).json()["items"]
    assert (row["outcome"], row["code"]) == ("rejected", "too_long")
    # signed with another key, it is still refused for its signature first
    r = await fire(client, {**long, "sig": sign("other", long)})
    assert r.status_code == 403 and r.json()["code"] == "signature_invalid"
    noted = {"refid": refid, "orderamount": "1", "ordernumber": "N1", "note": "n" * 1500}
    noted |= {"ts": now}
    r = await fire(client, {**noted, "sig": sign("k3y", noted)})
    assert r.json()["status"] == "accepted", r.text
    nul = {"refid": refid, "orderamount": "1", "ordernumber": "N\x002", "ts": now}
    r = await client.post("/postback", data={**nul, "sig": sign("k3y", nul)})
    assert r.status_code == 400, r.text  # as unsigned: a NUL is no text
    assert [(e["field"], e["code"]) for e in r.json()["errors"]] == [
        ("ordernumber", "invalid_text")
    ]
    convs = (await client.get("/api/v1/conversions", headers=AUTH)).json()["items"]
    assert [c["ordernumber"] for c in convs] == ["N1"]
    kept = (await client.get("/api/v1/postbacks", headers=AUTH)).json()["items"]
    assert (kept[0]["code"], kept[0]["params"]["ordernumber"]) == ("invalid_text", "N\\x002")
    assert len(kept[1]["params"]["note"]) == 1024


async def test_another_advertisers_token_is_refused_with_a_refid_not_of_its_offers(
    client: httpx.AsyncClient,
) -> None:
    """Shop fires a postback with its own token and a RefID of a click on another
    advertiser's offer (which requires no token): counted, the other would be billed for
    Shop's sale and its affiliate paid. Refused, saying whose token it is not; a token
    two advertisers share, or none, is not refused so."""
    first = await make_offer(client)  # its advertiser requires no token
    refid = await click(client, first["link"])
    shop = await make_offer(client, advertiser={"name": "Shop 2"})
    tok = shop["advertiser"]["postback_token"]
    assert tok and tok != first["advertiser"]["postback_token"]
    r = await fire(client, {"refid": refid, "orderamount": "1", "ordernumber": "S1", "token": tok})
    assert r.status_code == 403 and r.json()["code"] == "token_invalid", r.text
    assert r.json()["errors"][0]["message"].startswith(
        "the token sent is the postback token of another advertiser"
    )
    r = await fire(client, {"refid": refid, "orderamount": "1", "ordernumber": "S2", "token": "x"})
    assert r.json()["status"] == "accepted", r.text  # no token needed: any other is ignored
    # the same token given to both (one shop, two brands): the first's own, so counted
    path = f"/api/v1/advertisers/{first['advertiser']['id']}"
    r = await client.patch(path, json={"postback_token": tok}, headers=AUTH)
    assert r.status_code == 200, r.text
    r = await fire(client, {"refid": refid, "orderamount": "1", "ordernumber": "S1", "token": tok})
    assert r.json()["status"] == "accepted", r.text


async def test_wrong_token_is_403_token_invalid(client: httpx.AsyncClient) -> None:
    _, refid = await offer_with(client, require_token=True, postback_token="tok")
    r = await fire(
        client, {"refid": refid, "orderamount": "1", "ordernumber": "T", "token": "nope"}
    )
    assert r.status_code == 403 and r.json()["code"] == "token_invalid"
    [error] = r.json()["errors"]
    assert error["message"] == "the token sent does not match this advertiser's postback token"
    r = await fire(client, {"refid": refid, "orderamount": "1", "ordernumber": "T"})
    assert r.json()["code"] == "token_missing"
    # what else is wrong is told beside the token, not at the next try
    r = await fire(client, {"refid": refid, "orderamount": "1,5"})
    assert r.status_code == 403 and r.json()["code"] == "token_missing", r.text
    assert [(e["field"], e["code"]) for e in r.json()["errors"]] == [
        ("token", "token_missing"),
        ("ordernumber", "missing"),
        ("orderamount", "invalid_amount"),
    ]
    message = "this advertiser's postbacks need its postback token, sent as `token`"
    assert r.json()["errors"][0]["message"] == message
    # sent under another name: which, without its value (read tokens see the ledger)
    for name in ("Token", "api_key"):
        r = await fire(
            client, {"refid": refid, "orderamount": "1", "ordernumber": "T", name: "tok"}
        )
        said = r.json()["errors"][0]["message"]
        assert said.startswith(message) and f"`{name}` was sent" in said and "tok`" not in said
    # sent twice, the old token and the new: refused, and neither is written into the
    # message, which read tokens see in the ledger
    r = await client.get(f"/postback?refid={refid}&orderamount=1&ordernumber=T&token=tok&token=old")
    assert [(e["field"], e["code"]) for e in r.json()["errors"]] == [("token", "repeated")]
    token = (await client.post("/api/v1/tokens", json={"role": "read"}, headers=AUTH)).json()
    read = {"Authorization": f"Bearer {token['token']}"}
    ledger = (await client.get("/api/v1/postbacks", headers=read)).text
    assert "tok'" not in ledger and "'old'" not in ledger and "repeated" in ledger


async def test_a_read_token_sees_no_postback_token_however_it_was_sent(
    client: httpx.AsyncClient,
) -> None:
    """The advertiser's token written where a postback's parameters are not read as such
    (`&amp;token=` from a URL written for HTML, `auth_token`, a JSON body sent as a form,
    whose whole text is a name, an excerpt of a body that is no JSON) is hidden from read
    tokens as a `token` parameter is: it would let whoever reads it fire postbacks."""
    secret = "S3CRET-77"
    _, refid = await offer_with(client, require_token=True, postback_token=secret)
    base = f"/postback?refid={refid}&orderamount=1"
    await client.get(f"{base}&amp;ordernumber=A1&amp;token={secret}")
    await client.get(f"{base}&ordernumber=A2&auth_token={secret}")
    body = json.dumps({"refid": refid, "orderamount": "1", "ordernumber": "A3", "token": secret})
    await client.post("/postback", content=body)  # no content type: read as a form
    json_type = {"content-type": "application/json"}
    await client.post("/postback", content=body[:-1], headers=json_type)  # no JSON: excerpt
    await client.get(f"{base}&ordernumber=A5&data[token]={secret}")  # a PHP array's key
    await client.get(f"/postback?refid={refid}?token={secret}&orderamount=1&ordernumber=A6")
    nested = {"refid": refid, "orderamount": "1", "ordernumber": "A7", "d": {"token": [secret]}}
    await client.post("/postback", content=json.dumps(nested), headers=json_type)
    admin_view = (await client.get("/api/v1/postbacks", headers=AUTH)).text
    assert admin_view.count(secret) >= 7  # what was sent is kept whole
    token = (await client.post("/api/v1/tokens", json={"role": "read"}, headers=AUTH)).json()
    read = {"Authorization": f"Bearer {token['token']}"}
    ledger = (await client.get("/api/v1/postbacks", headers=read)).json()["items"]
    assert len(ledger) == 7 and secret not in json.dumps(ledger), ledger


async def test_a_flood_gets_429_with_retry_after(guarded: httpx.AsyncClient) -> None:
    _, refid = await offer_with(guarded)
    answers = [
        await fire(
            guarded, {"refid": refid, "orderamount": "1", "ordernumber": f"F{i}"}, ip="198.51.100.1"
        )
        for i in range(8)
    ]
    limited = [a for a in answers if a.status_code == 429]
    assert limited and limited[0].headers["retry-after"] == "1"
    assert limited[0].json()["code"] == "rate_limited"
    accepted = sum(a.status_code == 200 for a in answers)
    assert accepted <= 5  # a burst of 2 s at 2/s, plus what refilled meanwhile
    other = await fire(
        guarded, {"refid": refid, "orderamount": "1", "ordernumber": "G"}, ip="198.51.100.2"
    )
    assert other.status_code == 200  # the limit is per source IP
    ledger = await guarded.get(
        "/api/v1/postbacks", params={"outcome": "rate_limited"}, headers=AUTH
    )
    assert len(ledger.json()["items"]) == len(limited)
    convs = (await guarded.get("/api/v1/conversions", headers=AUTH)).json()["items"]
    assert len(convs) == accepted + 1


async def test_the_python_helper_signs_postbacks(
    client: httpx.AsyncClient, app: ClickbackApp
) -> None:
    from clickback.client import PostbackRejectedError, async_fire_postback

    _, refid = await offer_with(client, signing_secret="k3y", require_signature=True)
    transport = httpx.ASGITransport(app=app)
    answer = await async_fire_postback(
        "http://t",
        refid=refid,
        orderamount="5",
        ordernumber="H1",
        signing_secret="k3y",
        transport=transport,
        retries=0,
    )
    assert answer["status"] == "accepted"
    with pytest.raises(PostbackRejectedError) as refused:
        await async_fire_postback(
            "http://t",
            refid=refid,
            orderamount="5",
            ordernumber="H2",
            transport=transport,
            retries=0,
        )
    assert refused.value.code == "signature_invalid"


async def test_the_python_helper_signs_an_integer_order_number(
    client: httpx.AsyncClient, app: ClickbackApp
) -> None:
    """An order number kept as an int is sent as-is unsigned (httpx writes it); once the
    advertiser turns signing on, the same call must still work, not raise TypeError."""
    from clickback.client import async_fire_postback

    _, refid = await offer_with(client, signing_secret="k3y", require_signature=True)
    answer = await async_fire_postback(
        "http://t",
        refid=refid,
        orderamount=5,
        ordernumber=10042,  # type: ignore[arg-type]
        signing_secret="k3y",
        transport=httpx.ASGITransport(app=app),
        retries=0,
    )
    assert answer["status"] == "accepted"


async def test_a_signature_cannot_be_required_without_a_signing_secret(
    client: httpx.AsyncClient,
) -> None:
    s = await make_offer(client)
    url = f"/api/v1/advertisers/{s['advertiser']['id']}"
    for body, field in [
        ({"require_signature": True}, "require_signature"),
        ({"require_signature": True, "signing_secret": ""}, "signing_secret"),
    ]:
        r = await client.patch(url, json=body, headers=AUTH)
        assert r.status_code == 400, (body, r.text)
        [error] = r.json()["errors"]
        assert (error["code"], error["field"]) == ("signature_needs_secret", field), body
    assert (await client.get(url, headers=AUTH)).json()["require_signature"] is False
    body = {"require_signature": True, "signing_secret": "k3y"}
    assert (await client.patch(url, json=body, headers=AUTH)).status_code == 200
    r = await client.patch(url, json={"signing_secret": ""}, headers=AUTH)
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "signing_secret", r.text
    refid = await click(client, s["link"])
    unsigned = {"refid": refid, "orderamount": "9.90", "ordernumber": "U1"}
    r = await fire(client, unsigned)
    assert r.status_code == 403 and r.json()["code"] == "signature_invalid", r.text
    r = await client.patch(url, json={"signing_secret": "k3y2"}, headers=AUTH)  # rotated
    assert r.status_code == 200, r.text
    body = {"require_signature": False, "signing_secret": ""}  # both off at once
    r = await client.patch(url, json=body, headers=AUTH)
    assert r.status_code == 200 and r.json()["signing_secret"] == "", r.text
    assert (await fire(client, unsigned)).json()["status"] == "accepted"


async def test_a_signature_required_with_no_secret_stored_refuses_unsigned_postbacks(
    client: httpx.AsyncClient, store: Store
) -> None:
    # a database written before the two were checked together may hold this
    s, refid = await offer_with(client)
    adv = s["advertiser"]["id"]
    await store.update_row("advertisers", adv, {"require_signature": 1})
    # any write through the app reloads what it serves from
    r = await client.patch(f"/api/v1/advertisers/{adv}", json={"name": "Shop 2"}, headers=AUTH)
    assert r.json()["require_signature"] is True and r.json()["signing_secret"] == ""
    unsigned = {"refid": refid, "orderamount": "9.90", "ordernumber": "N1"}
    for params in (unsigned, {**unsigned, "ts": str(int(time.time())), "sig": sign("", unsigned)}):
        r = await fire(client, params)
        assert r.status_code == 403 and r.json()["code"] == "signature_invalid", r.text
    r = await client.get(f"/api/v1/offers/{s['offer']['id']}/postback-url", headers=AUTH)
    assert r.json()["signature_required"] is True
    assert (await client.get("/api/v1/conversions", headers=AUTH)).json()["items"] == []
