from __future__ import annotations

import random

import httpx
import orjson

from clickback.domain.outbound import (
    Attempt,
    PostbackConfig,
    RetryPolicy,
    build_request,
    next_state,
    outcome,
    signature,
)

CONV = {
    "id": 7,
    "refid": "R",
    "offer_id": 1,
    "affiliate_id": 2,
    "sub1": "a b",
    "sub2": "",
    "sub3": "",
    "sub4": "",
    "sub5": "",
    "ordernumber": "O#1",
    "orderamount": 1050,
    "currency": "USD",
    "commission": 105,
    "commission_currency": "USD",
    "status": "approved",
    "geo": "DE",
    "coupon": "",
}


def test_macros_are_filled_url_encoded_and_signed() -> None:
    config = PostbackConfig(
        "https://aff.example/pb?c={refid}&o={ordernumber}&p={commission}&s={sub1}&e={event}",
        "GET",
        "sec",
        frozenset({"conversion"}),
        False,
    )
    req = build_request(config, CONV, "conversion", 99, 1_700_000_000)
    assert req.url == "https://aff.example/pb?c=R&o=O%231&p=1.05&s=a%20b&e=conversion"
    assert req.headers["Idempotency-Key"] == "clickback-delivery-99"
    assert req.headers["X-Clickback-Signature"] == signature("sec", 1_700_000_000, req.url)


def test_a_url_is_signed_as_its_receiver_sees_it_host_and_port_as_sent() -> None:
    """An HTTP client sends the host in lower case and leaves out the scheme's default
    port: a URL typed `http://Aff.Example:80/…` is sent, and signed, as
    `http://aff.example/…`, so that the receiver's check of the URL it got holds; another
    port, the credentials and an IPv6 host are kept."""
    for typed, sent in (
        ("http://Aff.Example:80/pb?c={refid}", "http://aff.example/pb?c=R"),
        ("https://AFF.example:443/pb?c={refid}", "https://aff.example/pb?c=R"),
        ("https://u:p@Aff.Example:8443/pb?c={refid}", "https://u:p@aff.example:8443/pb?c=R"),
        ("http://[2001:DB8::1]:80/pb?c={refid}", "http://[2001:db8::1]/pb?c=R"),
    ):
        config = PostbackConfig(typed, "GET", "sec", frozenset({"conversion"}), False)
        req = build_request(config, CONV, "conversion", 1, 1_700_000_000)
        assert req.url == sent, typed
        received = httpx.URL(req.url).copy_with(username=None, password=None)
        signed = signature("sec", 1_700_000_000, str(received))
        assert req.headers["X-Clickback-Signature"] == signed, typed


def test_which_answers_are_retried() -> None:
    assert outcome(Attempt(204, "", 1, "")) == "delivered"
    for code in (408, 429, 500, 503, None):
        assert outcome(Attempt(code, "", 1, "")) == "retry"
    for code in (400, 401, 404, 410):
        assert outcome(Attempt(code, "", 1, "")) == "failed"


def test_backoff_grows_first_retry_within_ten_seconds_and_gives_up_after_72h() -> None:
    policy = RetryPolicy()
    rng = random.Random(1)
    assert all(5 <= policy.next_delay(1, rng) <= 10 for _ in range(100))
    assert policy.next_delay(3, rng) > 10
    failing = Attempt(500, "", 1, "")
    state, at = next_state(failing, 1, 0, 1_000_000, policy)
    assert state == "queued" and 1_000_000 < at <= 11_000_000
    state, _ = next_state(failing, 40, 0, 73 * 3600 * 1_000_000, policy)
    assert state == "failed"


def test_a_stored_url_with_a_host_of_other_letters_is_sent_to_its_ascii_form() -> None:
    """A postback URL stored before hosts were kept in ASCII (`bücher.example`) is sent
    to `xn--bcher-kva.example`, credentials and port kept, and signed so; an invalid
    host is left as it is (its attempts fail and say why)."""
    on = frozenset({"conversion"})
    config = PostbackConfig("https://u:p@bücher.example:8443/pb?c={refid}", "GET", "sec", on, False)
    req = build_request(config, CONV, "conversion", 1, 1700000000)
    assert req.url == "https://u:p@xn--bcher-kva.example:8443/pb?c=R"
    payload = "https://xn--bcher-kva.example:8443/pb?c=R"
    assert req.headers["X-Clickback-Signature"] == signature("sec", 1700000000, payload)
    bad_config = PostbackConfig("https://a..b\u00fc/pb", "GET", "", on, False)
    bad = build_request(bad_config, CONV, "conversion", 1, 0)
    assert bad.url == "https://a..b\u00fc/pb"


def test_the_orders_currency_is_told_apart_from_the_commissions() -> None:
    """An order of 49.90 EUR paying a fixed 5 USD: `{orderamount}` with
    `{order_currency}`, `{commission}` with `{currency}`, in the URL and a POST's body."""
    conv = {**CONV, "orderamount": 4990, "currency": "EUR", "commission": 500}
    on = frozenset({"conversion"})
    url = "https://aff.example/pb?a={orderamount}&ac={order_currency}&c={commission}&cc={currency}"
    req = build_request(PostbackConfig(url, "GET", "", on, False), conv, "conversion", 1, 0)
    assert req.url == "https://aff.example/pb?a=49.90&ac=EUR&c=5.00&cc=USD"
    req = build_request(PostbackConfig(url, "POST", "", on, False), conv, "conversion", 1, 0)
    body = orjson.loads(req.body or b"")
    assert (body["orderamount"], body["order_currency"]) == ("49.90", "EUR")
    assert (body["commission"], body["currency"]) == ("5.00", "USD")
