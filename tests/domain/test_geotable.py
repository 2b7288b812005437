"""The compact country table answers as geoip2fast itself does, over its own data."""

from __future__ import annotations

import ipaddress
import random

import pytest
from geoip2fast import GeoIP2Fast

from clickback.domain.geotable import CountryTable


@pytest.fixture(scope="module")
def table() -> CountryTable:
    return CountryTable()


def test_every_network_of_the_data_is_kept(table: CountryTable) -> None:
    assert len(table) > 700_000  # 788,735 in the bundled file of geoip2fast 1.2


def test_answers_equal_geoip2fast(table: CountryTable) -> None:
    geo = GeoIP2Fast(verbose=False, geoip2fast_data_file="geoip2fast-ipv6.dat.gz")

    def theirs(ip: str) -> str:
        code = str(geo.lookup(ip).country_code or "")
        return code if len(code) == 2 and code.isalpha() else ""

    rng = random.Random(20261126)
    ips = [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(20_000)]
    # global unicast IPv6 (2000::/3), where the networks are, and anywhere at all
    ips += [
        str(ipaddress.IPv6Address((0x2000 + rng.getrandbits(13)) << 112 | rng.getrandbits(112)))
        for _ in range(20_000)
    ]
    ips += [str(ipaddress.IPv6Address(rng.getrandbits(128))) for _ in range(2_000)]
    # the edges of networks: their first address, the one before, the one after the last
    for i in rng.sample(range(len(table.v4_start)), 2_000):
        start, size = table.v4_start[i], 1 << (32 - table.v4_len[i])
        for n in (start, start - 1, start + size - 1, start + size):
            if 0 <= n <= 0xFFFFFFFF:
                ips.append(str(ipaddress.IPv4Address(n)))
    for i in rng.sample(range(len(table.v6_hi)), 2_000):
        start = table.v6_hi[i] << 64 | table.v6_lo[i]
        size = 1 << (128 - table.v6_len[i])
        for n in (start, start - 1, start + size - 1, start + size):
            ips.append(str(ipaddress.IPv6Address(n)))
    ips += ["::", "::1", "::ffff:8.8.8.8", "0.0.0.0", "255.255.255.255", "10.1.2.3", "fe80::1"]
    wrong = [(ip, table.lookup(ip), theirs(ip)) for ip in ips if table.lookup(ip) != theirs(ip)]
    assert wrong == []
    known = sum(1 for ip in ips if table.lookup(ip))
    assert known > len(ips) // 3  # not an empty table that agrees on "unknown"


def test_known_addresses_and_refusals(table: CountryTable) -> None:
    assert table.lookup("81.2.69.160") == "GB"
    assert table.lookup("2a00:1450:4001:80b::200e") != ""
    assert table.lookup("10.0.0.1") == "" and table.lookup("127.0.0.1") == ""  # private
    with pytest.raises(ValueError):
        table.lookup("not an address")
