"""What a click's IP and User-Agent say about the visitor: country, device type, OS,
browser, and whether it is a bot (a crawler or a link-preview fetcher).

Used off the hot path, by the rollup job (`domain.rollup`). Country comes from
geoip2fast's bundled data, or from a MaxMind `.mmdb` file the operator names
(`CLICKBACK_GEOIP_MMDB`). The User-Agent is parsed by ua-parser and checked by
crawlerdetect; both are slow next to a dictionary look-up and User-Agents repeat, so
parses are cached (LRU). Unknown values are empty strings.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from clickback.domain import money

UA_CACHE = 65_536
# Addresses repeat over a visitor's clicks and conversion, within minutes; with a new
# visitor a click there is nothing to find in a larger cache, and 65,536 addresses held
# about 11.6 MB of a serving worker (the addresses' strings and the cache's entries,
# `tracemalloc`) for no hits. A lookup not cached costs a few µs.
IP_CACHE = 4_096
# Parsed once when an Enricher is made: ua-parser loads and compiles its patterns on its
# first parse (about 155 ms here) and crawlerdetect its pattern on its first check (about
# 20 ms); done there, on the first clicks a new server screens, they stopped the event
# loop (the first 5 s of clicks on a fresh server: p99 about 100 ms, `bench/sustained.py`).
# An Enricher is made at start-up, before the server answers.
WARM_UP_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/124.0.0.0 Safari/537.36"

# Link-preview fetchers and chat apps that open links to draw a preview: not visitors.
# crawlerdetect knows most of them; this list keeps them flagged whatever its version.
# The chat apps whose name is also in their in-app browser's User-Agent are apart
# (`CHAT_PREVIEWS`).
PREVIEW_FETCHERS = (
    "slackbot",
    "slack-imgproxy",
    "twitterbot",
    "facebookexternalhit",
    "facebookcatalog",
    "linkedinbot",
    "telegrambot",
    "discordbot",
    "skypeuripreview",
    "pinterestbot",
    "redditbot",
    "applebot",
    "embedly",
    "iframely",
    "vkshare",
    "google-pagerenderer",
    "bingpreview",
)
# Chat apps draw a link's preview with their own name first (`WhatsApp/2.23.20.0 A`,
# `Viber/21.4`); a visitor who opens the link in the app's in-app browser sends a
# browser's User-Agent with the app's name after it (`Mozilla/5.0 (Linux; Android …)
# … Mobile Safari/537.36 WhatsApp/2.23.20.76`): a visitor, whose conversions a `bot:
# reject` rule must not refuse. crawlerdetect flags both for WhatsApp; its match is
# overruled for the second.
CHAT_PREVIEWS = ("whatsapp", "viber")
_IN_APP = re.compile(r"\s(?:whatsapp|viber)/\S*", re.IGNORECASE)
_DESKTOP_OS = frozenset(
    {"Windows", "Mac OS X", "Linux", "Ubuntu", "Chrome OS", "Fedora", "Debian", "FreeBSD"}
)
_MOBILE_OS = frozenset({"iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS", "Symbian OS"})


DEVICES = ("desktop", "mobile", "tablet", "bot", "other")  # what `Agent.device` takes


@dataclass(frozen=True, slots=True)
class Agent:
    device: str  # one of DEVICES
    os: str
    browser: str
    bot: bool


def visitor_key(ip: str, user_agent: str) -> int:
    """A signed 64-bit hash of IP and User-Agent: who a unique click is unique for."""
    digest = hashlib.blake2b(f"{ip}\x00{user_agent}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class Enricher:
    """Country from IP and agent facts from a User-Agent, each cached."""

    def __init__(self, mmdb_path: str = ""):
        from crawlerdetect import CrawlerDetect

        self._crawlers = CrawlerDetect()
        self._lookup = _mmdb_lookup(mmdb_path) if mmdb_path else _geoip2fast_lookup()
        self._countries = money.countries()
        self.country = lru_cache(maxsize=IP_CACHE)(self._country)
        self.agent = lru_cache(maxsize=UA_CACHE)(self._agent)
        self._agent(WARM_UP_AGENT)  # not cached: only to load the parsers now

    def _country(self, ip: str) -> str:
        """The country of an address: an ISO 3166-1 code (`money.countries`), or ''
        (the data's `EU` or `AP` name a region, which no postback's `geo` matches)."""
        if not ip:
            return ""
        if ":" in ip and ip[:7].lower() == "::ffff:" and "." in ip:
            ip = ip[7:]  # an IPv4 address as a dual-stack proxy writes it
        try:
            code = self._lookup(ip)
        except ValueError:
            return ""
        return code if code in self._countries else ""

    def _crawler(self, user_agent: str, lowered: str) -> bool:
        """crawlerdetect's verdict; on a browser's User-Agent, without a chat app's name
        after it (its in-app browser: `CHAT_PREVIEWS`)."""
        if lowered.startswith("mozilla/"):
            user_agent = _IN_APP.sub("", user_agent)
        return bool(self._crawlers.isCrawler(user_agent))

    def _agent(self, user_agent: str) -> Agent:
        from ua_parser import parse

        lowered = user_agent.lower()
        bot = (
            any(name in lowered for name in PREVIEW_FETCHERS)
            or lowered.startswith(CHAT_PREVIEWS)
            or bool(user_agent and self._crawler(user_agent, lowered))
        )
        parsed = parse(user_agent[:512]) if user_agent else None
        device = parsed.device.family if parsed and parsed.device else ""
        os = parsed.os.family if parsed and parsed.os else ""
        browser = parsed.user_agent.family if parsed and parsed.user_agent else ""
        if device == "Spider":
            bot = True
        return Agent(_device_type(user_agent, device, os, bot), os, browser, bot)


def _device_type(user_agent: str, device: str, os: str, bot: bool) -> str:
    if bot:
        return "bot"
    if "iPad" in device or "Tablet" in device or "Kindle" in device:
        return "tablet"
    if os == "Android" and "Mobile" not in user_agent:
        return "tablet"  # Android phones say "Mobile"; tablets do not
    if os in _MOBILE_OS or "Mobi" in user_agent:
        return "mobile"
    if os in _DESKTOP_OS:
        return "desktop"
    return "other"


def _geoip2fast_lookup() -> Any:
    from clickback.domain.geotable import CountryTable

    return CountryTable().lookup


def _mmdb_lookup(path: str) -> Any:
    import maxminddb

    reader = maxminddb.open_database(path)

    def lookup(ip: str) -> str:
        record = reader.get(ip)
        if not isinstance(record, dict):
            return ""
        for key in ("country", "registered_country"):
            place = record.get(key)
            if isinstance(place, dict) and isinstance(place.get("iso_code"), str):
                return str(place["iso_code"])
        code = record.get("country_code")  # flat databases (DB-IP, IP2Location lite)
        return code if isinstance(code, str) else ""

    return lookup
