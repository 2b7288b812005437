from __future__ import annotations

import pytest

from clickback.errors import InputError
from clickback.outbound_http import check_destination, is_public


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
