from __future__ import annotations

import pytest

from clickback.errors import InputError
from clickback.outbound_http import check_destination, is_public, pinned


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
