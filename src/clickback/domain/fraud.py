"""Fraud flags: computed off the hot path, stored on clicks and conversions, never a
silent drop.

Click flags (a pass over new clicks, in RefID order): `bot` (crawler, spider or link
preview User-Agent), `datacenter_ip` (the IP is in the data-centre ranges file), and
`click_flood` (more than N clicks from one IP on one link within a minute). Conversion
flags (a pass over unscreened conversions): the flags of its click, `fast_conversion`
(converted sooner than the threshold after the click), `geo_mismatch` (the postback's
`geo` is another country than that of the click's IP), and `ip_conversions` (more than N
conversions within a day whose clicks came from one IP). A postback is sent by the
advertiser's server, so its own IP is never taken for the buyer's. Not fraud, but
screened the same way: `over_cap`, a conversion past its offer's `daily_cap`, or past
its affiliate's own daily cap on the offer (the conversions of one UTC day that were
not rejected, the integration tests' left out, in the order they came). Per offer, each
flag's rule is `flag` (the default; `hold` for `over_cap`), `hold` (the conversion stays
pending for review) or `reject`. The counts over the windows are kept in memory, and
counted again from the store by a process that takes the screening (`domain.screener`).
"""

from __future__ import annotations

import ipaddress
from array import array
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from clickback.errors import ConfigError, InputError

CLICK_FLAGS = ("bot", "datacenter_ip", "click_flood")
CONVERSION_FLAGS = ("fast_conversion", "geo_mismatch", "ip_conversions", "over_cap")
FLAGS = CLICK_FLAGS + CONVERSION_FLAGS
RULES = ("flag", "hold", "reject")
# a cap says the advertiser takes no more that day: what passes it waits for a decision
DEFAULT_RULES = {"over_cap": "hold"}
DAY_US = 86_400_000_000
REPORTED = (*FLAGS, "screening_failed")  # what reports count and filter by


@lru_cache(maxsize=1024)
def fraud_flags(flags: str) -> str:
    """The fraud flags among a row's flags (a conversion's also says `missing_rate` or
    `unknown_commissionid`, which reports show otherwise), in their stored order. Rows
    carry few distinct combinations, and the rollup asks for every click's: cached."""
    return ",".join(f for f in flags.split(",") if f in REPORTED)


@dataclass(frozen=True)
class Thresholds:
    min_seconds: float = 10.0  # click to conversion faster than this: fast_conversion
    flood_clicks: int = 20  # clicks per IP per link per minute above this: click_flood
    ip_conversions: int = 5  # conversions per IP per day above this: ip_conversions


def parse_rules(raw: Any) -> dict[str, str]:
    """An offer's `fraud_rules` ({flag: flag|hold|reject}); refuses unknown names."""
    if isinstance(raw, str):
        return dict(_stored_rules(raw))
    return _check_rules(raw)


@lru_cache(maxsize=1024)
def _stored_rules(raw: str) -> tuple[tuple[str, str], ...]:
    """Rules as stored (JSON text), or given as text to the API: text that is not JSON is
    refused as any other bad value is (it was a JSONDecodeError, a 500)."""
    try:
        rules = orjson.loads(raw)
    except orjson.JSONDecodeError:
        rules = None
    return tuple(_check_rules(rules).items())


def _check_rules(rules: Any) -> dict[str, str]:
    if not isinstance(rules, dict) or not all(k in FLAGS and v in RULES for k, v in rules.items()):
        raise InputError(
            f"`fraud_rules` maps flags ({', '.join(FLAGS)}) to flag, hold or reject",
            code="invalid_fraud_rules",
            field="fraud_rules",
        )
    return dict(rules)


_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def _as_ipv4(
    net: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if isinstance(net, ipaddress.IPv6Network) and net.subnet_of(_MAPPED):
        start = int(net.network_address) & 0xFFFFFFFF
        return ipaddress.IPv4Network((start, net.prefixlen - 96))
    return net


class Networks:
    """Data-centre ranges, from a file of CIDRs (one per line, # comments)."""

    def __init__(self, cidrs: Iterable[str] = ()):
        nets = [ipaddress.ip_network(c.strip(), strict=False) for c in cidrs if c.strip()]
        # a range written as IPv4-mapped IPv6 (`::ffff:8.8.8.0/120`) is that IPv4 range:
        # addresses are looked up as IPv4 (`__contains__`)
        self._nets = [_as_ipv4(n) for n in nets]

    @classmethod
    def from_file(cls, path: str) -> Networks:
        """The ranges of a file; a line that is no CIDR stops the server's start with
        its place named (a BOM at the start of the file is skipped)."""
        if not path:
            return cls()
        with open(path, encoding="utf-8-sig") as f:
            lines = [line.split("#", 1)[0] for line in f]
        for number, line in enumerate(lines, 1):
            try:
                cls([line])
            except ValueError as exc:
                where = f"CLICKBACK_DATACENTER_RANGES: {path}, line {number}"
                raise ConfigError(f"{where}: {exc}") from None
        return cls(lines)

    def __contains__(self, ip: str) -> bool:
        if not self._nets:
            return False
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped  # `::ffff:8.8.8.8` (a dual-stack proxy) is 8.8.8.8
        return any(addr in net for net in self._nets)


class SlidingCounts:
    """How many events each key had within the last `window_us`, for events that come in
    time order (as the screening reads them), told exactly when that is more than
    `limit` (what a screen asks: more than N within the window?).

    Events are kept in a queue of two arrays of 64-bit integers (times, and the keys'
    hashes: 16 bytes an event), nothing older than the window, dropped as they leave it
    with no pass over every key. Counts are not kept per key: with a new visitor a click
    that was a dict entry a visitor, about 100 bytes (a minute of many-visitor clicks at
    full load: some 190 MB). Instead a fixed table of `slots` counters, each the events
    in the window of the keys whose hash falls on it: a key's counter is never below its
    own count, so a counter at most `limit` decides "not more than `limit`" exactly. A
    counter above it is checked: the key's events in the window are counted in the queue
    (in C, `array.count`), and from then on kept exactly for that key until its events
    have left. Such keys are the heavy ones (and the few that share their counter), so
    the check is rare and the exact counts few.

    Keys are told apart by their 64-bit hash: two keys that share one would be counted
    together (for a million keys in a window, about 3 chances in 10^8 that any two do).

    `begin` marks the counts so that `rollback` can bring them back there (a pass whose
    flags were not stored: its events are counted again by the next), `commit` keeps
    them: the events that left the window meanwhile stay in the queue until then."""

    def __init__(self, window_us: int, limit: int, slots: int = 1 << 20):
        if slots & (slots - 1):
            raise ValueError("slots must be a power of two")
        self.window_us = window_us
        self.limit = limit
        self._times = array("q")
        self._keys = array("q")
        self._head = 0  # events before it have left the window
        self._mask = slots - 1
        self._slots = array("I", bytes(4 * slots))
        self._exact: dict[int, int] = {}  # keys whose counter went past the limit
        self._begun: tuple[int, int] | None = None  # (head, end) at `begin`

    def begin(self) -> None:
        """Marks the counts as they are, for `rollback` (or `commit`)."""
        self._begun = (self._head, len(self._times))

    def commit(self) -> None:
        """Keeps what was counted since `begin`."""
        self._begun = None

    def rollback(self) -> None:
        """Brings the counts back to where `begin` marked them: the events counted since
        are forgotten, those that left the window since are counted again."""
        if self._begun is None:
            return
        head, end = self._begun
        keys, slots, mask = self._keys, self._slots, self._mask
        for i in range(head, min(self._head, end)):
            slots[keys[i] & mask] += 1
        for i in range(max(self._head, end), len(keys)):
            slots[keys[i] & mask] -= 1
        del self._times[end:]
        del self._keys[end:]
        self._head = head
        # made again, exactly, as the keys' counters go past the limit (`add`)
        self._exact.clear()
        self._begun = None

    def add(self, key: Hashable, at_us: int) -> int:
        """Counts an event of `key` at `at_us`; returns its events within the window,
        this one included, when they are more than `limit`, else a number no more than
        `limit` (so `add(...) > limit` is exact)."""
        self.expire(at_us)
        h = hash(key)
        self._times.append(at_us)
        self._keys.append(h)
        slot = h & self._mask
        n = self._slots[slot] + 1
        self._slots[slot] = n
        exact = self._exact.get(h) if self._exact else None
        if exact is not None:
            exact += 1
        elif n <= self.limit:
            return n
        else:
            self._compact()
            # (the events before the head are those that left since `begin`, if any)
            exact = self._keys[self._head :].count(h) if self._head else self._keys.count(h)
        self._exact[h] = exact
        return exact

    def expire(self, at_us: int) -> None:
        """Forgets the events older than the window that ends at `at_us`."""
        times, keys, slots, exact = self._times, self._keys, self._slots, self._exact
        cutoff, mask = at_us - self.window_us, self._mask
        head, end = self._head, len(times)
        while head < end and times[head] < cutoff:
            h = keys[head]
            slots[h & mask] -= 1
            if exact and h in exact:
                n = exact[h] - 1
                if n:
                    exact[h] = n
                else:
                    del exact[h]
            head += 1
        self._head = head
        if head > 4096 and head * 2 > end:  # the left events' room, given back now and then
            self._compact()

    def _compact(self) -> None:
        # the events that left since `begin` are kept for its `rollback`
        cut = self._head if self._begun is None else min(self._head, self._begun[0])
        if cut:
            del self._times[:cut]
            del self._keys[:cut]
            self._head -= cut
            if self._begun is not None:
                self._begun = (self._begun[0] - cut, self._begun[1] - cut)

    def __len__(self) -> int:
        """Events held (those of the window)."""
        return len(self._times) - self._head

    def exact_keys(self) -> int:
        """Keys counted exactly (those whose counter went past the limit)."""
        return len(self._exact)


class ClickScreen:
    """Flags a stream of clicks in time order; keeps a minute of per-(IP, link) counts."""

    WINDOW_US = 60_000_000

    def __init__(self, is_bot: Callable[[str], bool], datacenters: Networks, limits: Thresholds):
        self.is_bot = is_bot
        self.datacenters = datacenters
        self.limits = limits
        self.reset()

    def reset(self) -> None:
        """Forgets every click counted (before they are counted again from the store)."""
        self.recent = SlidingCounts(self.WINDOW_US, self.limits.flood_clicks)

    def begin(self) -> None:
        """Marks the counts before a pass, for `rollback` if its flags are not stored."""
        self.recent.begin()

    def commit(self) -> None:
        self.recent.commit()

    def rollback(self) -> None:
        self.recent.rollback()

    def count(self, ip: str, link_id: int, at_us: int) -> None:
        """Counts a click screened before, as `flags` did then (for a recount)."""
        self.recent.add((ip, link_id), at_us)

    def flags(self, ip: str, link_id: int, user_agent: str, at_us: int) -> list[str]:
        out = []
        if self.is_bot(user_agent):
            out.append("bot")
        if ip and ip in self.datacenters:
            out.append("datacenter_ip")
        if self.recent.add((ip, link_id), at_us) > self.limits.flood_clicks:
            out.append("click_flood")
        return out

    def forget_before(self, at_us: int) -> None:
        """Drops what is a minute older than `at_us`, so memory stays bounded."""
        self.recent.expire(at_us)


class ConversionScreen:
    """Flags conversions in id order; keeps a day of per-IP conversion times, and per
    offer, and per offer and affiliate, the conversions of each UTC day that daily caps
    count (today's and yesterday's: a conversion of yesterday's may still come in)."""

    WINDOW_US = DAY_US

    def __init__(self, country_of: Callable[[str], str], limits: Thresholds):
        self.country_of = country_of
        self.limits = limits
        self.reset()

    def reset(self) -> None:
        """Forgets every conversion counted (before they are counted again from the store)."""
        self.by_ip = SlidingCounts(self.WINDOW_US, self.limits.ip_conversions)
        # (offer, affiliate or 0 for the offer's own, UTC day): conversions; days before
        # yesterday are dropped as a pass begins
        self.capped: dict[tuple[int, int, int], int] = {}
        self.newest_day = 0
        self._kept_from = 0  # the oldest day `capped` may hold
        self._pass: tuple[list[tuple[int, int, int]], int] | None = None  # for `rollback`

    def begin(self) -> None:
        """Marks the counts before a pass, for `rollback` if its flags are not stored."""
        self.by_ip.begin()
        if self._kept_from < self.newest_day - 1:
            self._kept_from = self.newest_day - 1
            self.capped = {k: n for k, n in self.capped.items() if k[2] >= self._kept_from}
        self._pass = ([], self.newest_day)

    def commit(self) -> None:
        self.by_ip.commit()
        self._pass = None

    def rollback(self) -> None:
        self.by_ip.rollback()
        if self._pass is not None:
            counted, self.newest_day = self._pass
            for key in counted:
                self.capped[key] -= 1
            self._pass = None

    def over_cap(self, conversion: Mapping[str, Any]) -> str:
        """Which daily cap the conversion comes past, said for its history ('' none: the
        integration tests' never do, nor one of a day before yesterday, a late replay of
        an old postback, whose day is no longer counted): its offer's (`daily_cap`),
        else its affiliate's on the offer (`affiliate_daily_cap`); see `count_capped`."""
        day = conversion["created_at"] // DAY_US
        if conversion.get("is_test") or day < self.newest_day - 1:
            return ""
        offer = int(conversion["offer_id"])
        cap = conversion.get("daily_cap")
        if cap and self.capped.get((offer, 0, day), 0) >= int(cap):
            return f"the offer's daily cap of {cap} was reached"
        cap = conversion.get("affiliate_daily_cap")
        affiliate = int(conversion["affiliate_id"])
        if cap and self.capped.get((offer, affiliate, day), 0) >= int(cap):
            return f"affiliate {affiliate}'s daily cap of {cap} on the offer was reached"
        return ""

    def reached(self, conversion: Mapping[str, Any]) -> list[tuple[int, int, int]]:
        """The caps of the conversion's day whose count has reached them, once it was
        counted (or found past one): (offer, 0, day) its offer's, (offer, affiliate, day)
        its affiliate's own on the offer."""
        day = conversion["created_at"] // DAY_US
        if conversion.get("is_test") or day < self.newest_day - 1:
            return []
        offer, affiliate = int(conversion["offer_id"]), int(conversion["affiliate_id"])
        out = []
        for key, cap in (
            ((offer, 0, day), conversion.get("daily_cap")),
            ((offer, affiliate, day), conversion.get("affiliate_daily_cap")),
        ):
            if cap and self.capped.get(key, 0) >= int(cap):
                out.append(key)
        return out

    def count_capped(self, offer_id: int, affiliate_id: int, at_us: int, counts: bool) -> None:
        """Counts a screened conversion towards the caps of its UTC day (its offer's, its
        affiliate's on the offer) when it `counts` (`counts_for_caps`); also for a
        recount."""
        day = at_us // DAY_US
        if not counts or day < self.newest_day - 1:
            return
        self.newest_day = max(self.newest_day, day)
        for key in ((offer_id, 0, day), (offer_id, affiliate_id, day)):
            self.capped[key] = self.capped.get(key, 0) + 1
            if self._pass is not None:
                self._pass[0].append(key)

    def count(self, ip: str, at_us: int) -> None:
        """Counts a conversion screened before, from a click from `ip` (none: ''), as
        `flags` did then (for a recount)."""
        if ip:
            self.by_ip.add(ip, at_us)

    def flags(self, conversion: Mapping[str, Any], click: Mapping[str, Any] | None) -> list[str]:
        out = [f for f in (click or {}).get("flags", "").split(",") if f]
        seconds = (conversion["created_at"] - conversion["clicked_at"]) / 1_000_000
        if seconds < self.limits.min_seconds:
            out.append("fast_conversion")
        # a postback comes from the advertiser's server, not from the visitor: its IP
        # says nothing of the buyer (one server sends every sale). The visitor is known
        # by the click's IP, and the buyer's country by the postback's `geo`.
        ip = (click or {}).get("ip") or ""
        geo = conversion.get("geo") or ""
        if ip and geo:
            country = self.country_of(ip)
            if country and country != geo:
                out.append("geo_mismatch")
        if ip and self.by_ip.add(ip, conversion["created_at"]) > self.limits.ip_conversions:
            out.append("ip_conversions")
        return out


def counts_for_caps(is_test: bool, status: str, flags: Iterable[str]) -> bool:
    """Whether a screened conversion counts towards the daily caps: not an integration
    test's, not rejected, and not past a cap itself (held, or only flagged: an
    affiliate's conversions past its own cap do not use up its offer's)."""
    return not is_test and status != "rejected" and "over_cap" not in flags


def decide(flags: Iterable[str], rules: Mapping[str, str]) -> str:
    """What the offer's rules make of the flags: reject, hold, or flag (keep the status)."""
    actions = {rules.get(f, DEFAULT_RULES.get(f, "flag")) for f in flags}
    for action in ("reject", "hold"):
        if action in actions:
            return action
    return "flag"
