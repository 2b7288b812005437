from __future__ import annotations

import time

import httpx
import pytest

from clickback.domain.outbound import OutboundRequest
from clickback.errors import InputError
from clickback.outbound_http import check_destination, exchange, is_public, pinned, send
from tests.cli.receiver import receiving


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("10.0.0.1", False),
        ("127.0.0.1", False),
        ("169.254.169.254", False),
        ("100.100.100.200", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),
        ("2002:a9fe:a9fe::1", False),
        ("64:ff9b::a9fe:a9fe", False),
        ("fe80::1", False),
    ],
)
def test_only_public_unicast_addresses(address: str, public: bool) -> None:
    assert is_public(address) is public


@pytest.mark.parametrize("url", ["http://h:{sub1}/x", "http://[::1/", "mailto:x@y", "//h/x"])
async def test_malformed_postback_urls_are_a_clear_400(url: str) -> None:
    with pytest.raises(InputError) as refused:
        await check_destination(url, allow_private=False)
    assert refused.value.code == "invalid_url"


@pytest.mark.parametrize(
    ("url", "ip", "sent", "host"),
    [
        (  # credentials in the URL go with it (Basic auth), as without the check
            "https://aff:s3cret@aff.example/pb?c=R",
            "93.184.215.14",
            "https://aff:s3cret@93.184.215.14/pb?c=R",
            "aff.example",
        ),
        (
            "http://aff.example:8080/pb?c=R#x",
            "2001:db8::1",
            "http://[2001:db8::1]:8080/pb?c=R#x",
            "aff.example:8080",
        ),
    ],
)
def test_a_checked_address_keeps_credentials_and_port(
    url: str, ip: str, sent: str, host: str
) -> None:
    assert pinned(url, ip) == (sent, host)


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b:1::a9fe:a9fe",  # local-use NAT64 (RFC 8215) of 169.254.169.254
        "64:ff9b:1::7f00:1",  # ... of 127.0.0.1
        "::ffff:0:a9fe:a9fe",  # IPv4-translated (SIIT, RFC 2765) 169.254.169.254
    ],
)
def test_translated_inward_addresses_are_not_public(address: str) -> None:
    assert is_public(address) is False


def _get(url: str) -> OutboundRequest:
    return OutboundRequest("GET", url, None, {"Idempotency-Key": "clickback-delivery-1"})


# Loopback stands in for a host's public addresses below: the resolution and the check of
# every address (`send`) come before the addresses are tried (`exchange`), and a test
# cannot make a name resolve to public addresses that answer. Nothing listens on
# 127.0.0.2 but where a test puts a receiver: a connection there is refused at once.


async def test_an_address_that_refuses_the_connection_gives_way_to_the_next() -> None:
    """A host resolving to two addresses, the first down: the second gets the postback,
    with the host's name in `Host`, within the one timeout."""
    with receiving([200]) as rx:
        async with httpx.AsyncClient() as client:
            answer = await exchange(
                client,
                _get(f"http://aff.example:{rx.port}/pb?c=R"),
                ["127.0.0.2", "127.0.0.1"],
                time.monotonic() + 5,
            )
        assert answer == (200, "ok")
        assert [h.url for h in rx.hits] == [f"http://aff.example:{rx.port}/pb?c=R"]


async def test_an_http_answer_is_not_taken_to_the_next_address() -> None:
    """A 503 from the first address is the attempt's answer (retried later, as any 503),
    not a reason to send the postback to the second one now."""
    with receiving([503]) as first, receiving([200], "127.0.0.2", first.port) as second:
        async with httpx.AsyncClient() as client:
            answer = await exchange(
                client,
                _get(f"http://aff.example:{first.port}/pb"),
                ["127.0.0.1", "127.0.0.2"],
                time.monotonic() + 5,
            )
        assert answer == (503, "ok")
        assert (len(first.hits), len(second.hits)) == (1, 0)


async def test_every_address_down_names_each_in_the_error() -> None:
    with receiving([200]) as rx:
        port = rx.port
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError) as failed:
            await exchange(
                client,
                _get(f"http://aff.example:{port}/pb"),
                ["127.0.0.2", "127.0.0.1"],
                time.monotonic() + 5,
            )
    assert "127.0.0.2: " in str(failed.value) and "127.0.0.1: " in str(failed.value)


async def test_a_name_resolving_inward_is_refused_before_any_address_is_tried() -> None:
    with receiving([200]) as rx:
        async with httpx.AsyncClient() as client:
            attempt = await send(
                client, _get(f"http://localhost:{rx.port}/pb"), 5, allow_private=False
            )
        assert attempt.status_code is None and attempt.error.startswith("refused:"), attempt
        assert rx.hits == []
