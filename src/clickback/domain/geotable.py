"""Country by IP address from geoip2fast's bundled data, held compactly.

geoip2fast keeps its 790,000 networks (IPv4 and IPv6) as lists of Python integers:
about 47 MB of a worker's memory. The same networks as typed arrays take about 10 MB:
network starts (IPv4 as 32-bit, IPv6 as two 64-bit halves), prefix lengths and country
indexes, searched by bisection. The answers are geoip2fast's own (a test holds the two
against each other): the network whose start is the last at or below the address, if
the address is inside it; reserved and private ranges answer no country.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
import socket
from array import array
from bisect import bisect_left, bisect_right

from clickback.memory import give_back

V4_MAX = 0xFFFFFFFF
V4_BLOCKS = 1 << 16  # the /16s of IPv4
LOW64 = (1 << 64) - 1
PRIVATE_IDS = 16  # the data's first country entries are reserved and private ranges


def data_file(name: str = "geoip2fast-ipv6.dat.gz") -> str:
    """The bundled data file (the IPv6 one holds the IPv4 networks too), found without
    importing geoip2fast (its import alone costs a worker about 10 MB)."""
    spec = importlib.util.find_spec("geoip2fast")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("geoip2fast is not installed")
    return os.path.join(next(iter(spec.submodule_search_locations)), name)


class CountryTable:
    def __init__(self, path: str = ""):
        with gzip.open(path or data_file()) as f:
            _version, _info, _total, database = pickle.load(f)
        _index, names, starts, country_ids, prefixes = database[:5]
        self.codes = tuple(
            code if i >= PRIVATE_IDS and len(code) == 2 and code.isalpha() else ""
            for i, code in enumerate(str(n).split(":", 1)[0] for n in names)
        )
        self.v4_start, self.v4_len, self.v4_id = array("I"), array("B"), array("H")
        self.v6_hi, self.v6_lo = array("Q"), array("Q")
        self.v6_len, self.v6_id = array("B"), array("H")
        for chunk_starts, chunk_ids, chunk_lens in zip(starts, country_ids, prefixes, strict=True):
            for start, cid, bits in zip(chunk_starts, chunk_ids, chunk_lens, strict=True):
                if start <= V4_MAX:
                    self.v4_start.append(start)
                    self.v4_len.append(bits)
                    self.v4_id.append(cid)
                else:
                    self.v6_hi.append(start >> 64)
                    self.v6_lo.append(start & LOW64)
                    self.v6_len.append(bits)
                    self.v6_id.append(cid)
        del database, starts, country_ids, prefixes
        # where the IPv4 networks of each /16 begin in `v4_start`: a lookup bisects the few
        # of its own /16 (about 8), not all 490,000 (bisecting an array makes an int of each
        # item it compares: 1.3 µs against about 0.3)
        self.v4_from = array("I", (bisect_left(self.v4_start, h << 16) for h in range(V4_BLOCKS)))
        self.v4_from.append(len(self.v4_start))
        give_back()  # the unpickling peaked at about 50 MB of Python integers (17 MB kept)

    def __len__(self) -> int:
        return len(self.v4_start) + len(self.v6_hi)

    def lookup(self, ip: str) -> str:
        """The country code of an address ('' when unknown, reserved or private); a
        string that is not an address raises ValueError."""
        try:
            number = int.from_bytes(socket.inet_aton(ip), "big")
        except OSError:
            try:
                number = int.from_bytes(socket.inet_pton(socket.AF_INET6, ip), "big")
            except OSError as exc:
                raise ValueError(f"not an IP address: {ip!r}") from exc
        if number <= V4_MAX:
            block = number >> 16
            first, end = self.v4_from[block], self.v4_from[block + 1]
            # none of its /16 at or below it: the last network before, at first - 1
            i = bisect_right(self.v4_start, number, first, end) - 1
            start, bits, cid = self.v4_start[i], self.v4_len[i], self.v4_id[i]
            size = 1 << (32 - bits)
        else:
            high, low = number >> 64, number & LOW64
            first = bisect_left(self.v6_hi, high)
            end = bisect_right(self.v6_hi, high, first)
            # the last network starting at or below: among those sharing the high half,
            # else (first - 1) the last one with a lower high half
            i = bisect_right(self.v6_lo, low, first, end) - 1
            if i >= 0:
                start = self.v6_hi[i] << 64 | self.v6_lo[i]
                bits, cid = self.v6_len[i], self.v6_id[i]
            else:  # below every IPv6 network: the last IPv4 one, as geoip2fast does
                start, bits, cid = self.v4_start[-1], self.v4_len[-1], self.v4_id[-1]
            size = 1 << (128 - bits)
        return self.codes[cid] if number < start + size else ""
