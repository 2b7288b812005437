"""What clickback reads off a click's User-Agent and IP, with the libraries made for it:
crawlerdetect for bots (plus link-preview fetchers), geoip2fast (ships its data) or a
MaxMind `.mmdb` file for the country. Results are cached, as the same values repeat."""

from __future__ import annotations

from functools import lru_cache

PREVIEW_FETCHERS = (
    "slackbot",
    "twitterbot",
    "facebookexternalhit",
    "linkedinbot",
    "discordbot",
    "telegrambot",
    "whatsapp",
    "skypeuripreview",
    "embedly",
)


@lru_cache(maxsize=1)
def _crawlers() -> object:
    from crawlerdetect import CrawlerDetect

    return CrawlerDetect()


@lru_cache(maxsize=20_000)
def is_bot(user_agent: str) -> bool:
    if not user_agent:
        return True  # real browsers always send one
    low = user_agent.lower()
    if any(name in low for name in PREVIEW_FETCHERS):
        return True
    return bool(_crawlers().isCrawler(user_agent))  # type: ignore[attr-defined]


class Countries:
    """IP -> ISO 3166-1 alpha-2 country ('' when unknown)."""

    def __init__(self, mmdb_path: str = ""):
        self._mmdb = None
        self._fast = None
        if mmdb_path:
            import maxminddb

            self._mmdb = maxminddb.open_database(mmdb_path)
        else:
            from geoip2fast import GeoIP2Fast

            self._fast = GeoIP2Fast()
        self.country_of = lru_cache(maxsize=50_000)(self._lookup)

    def _lookup(self, ip: str) -> str:
        if not ip:
            return ""
        if self._mmdb is not None:
            record = self._mmdb.get(ip)
            country = record.get("country", {}) if isinstance(record, dict) else {}
            code = country.get("iso_code", "") if isinstance(country, dict) else ""
            return str(code)
        assert self._fast is not None
        code = self._fast.lookup(ip).country_code
        return "" if not code or code.startswith("-") else str(code)
