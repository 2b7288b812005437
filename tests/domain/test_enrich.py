"""Click enrichment: countries from IPs, device/OS/browser and bots from User-Agents."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from clickback.domain.enrich import Enricher, visitor_key
from clickback.domain.rollup import shared_enricher
from tests.mmdb import EXPECTED, write_mmdb
from tests.reports_world import UAS


@pytest.mark.parametrize(
    ("ip", "country"),
    [
        ("81.2.69.160", "GB"),
        ("8.8.8.8", "US"),
        ("2a00:1450:4001:80b::200e", "DE"),
        ("10.1.2.3", ""),
        ("127.0.0.1", ""),
        ("", ""),
        ("not an ip", ""),
    ],
)
def test_country_from_ip(ip: str, country: str) -> None:
    assert shared_enricher().country(ip) == country


def test_country_from_a_maxmind_file_when_one_is_named(tmp_path: Path) -> None:
    enricher = Enricher(str(write_mmdb(tmp_path / "countries.mmdb")))
    for ip, country in EXPECTED.items():
        assert enricher.country(ip) == country, ip
        assert shared_enricher().country(ip) != country  # the bundled data says otherwise
    assert enricher.country("10.1.2.3") == "" and enricher.country("nonsense") == ""


@pytest.mark.parametrize(
    ("ua", "device", "os", "browser", "bot"),
    [
        (UAS[0], "desktop", "Windows", "Chrome", False),
        (UAS[1], "mobile", "iOS", "Mobile Safari", False),
        (UAS[2], "mobile", "Android", "Chrome Mobile", False),
        (UAS[3], "tablet", "iOS", "Mobile Safari", False),
        (UAS[4], "desktop", "Linux", "Firefox", False),
        (UAS[5], "bot", "Other", "Slackbot-LinkExpanding", True),
        (UAS[6], "bot", "Other", "FacebookBot", True),
        (UAS[7], "bot", "Other", "Googlebot", True),
        ("Twitterbot/1.0", "bot", "Other", "Twitterbot", True),
        ("WhatsApp/2.23.20.0 A", "bot", "Other", "WhatsApp", True),
        ("WhatsApp/2.2349.52 i", "bot", "Other", "WhatsApp", True),
        ("Viber/21.4.0.0", "bot", "Other", "Other", True),
        # the apps' in-app browsers: visitors, not the apps' preview fetchers
        (
            "Mozilla/5.0 (Linux; Android 13; Pixel 7 Build/TQ3A.230805.001; wv) AppleWebKit/"
            "537.36 (KHTML, like Gecko) Version/4.0 Chrome/118.0.5993.111 Mobile Safari/"
            "537.36 WhatsApp/2.23.20.76",
            "mobile",
            "Android",
            "WhatsApp",
            False,
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Mobile/15E148 Viber/21.3.0",
            "mobile",
            "iOS",
            "Mobile Safari UI/WKWebView",
            False,
        ),
        # a crawler stays one whatever app name it carries
        (
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html) "
            "WhatsApp/2.23.20.76",
            "bot",
            "Other",
            "Googlebot",
            True,
        ),
        ("", "other", "", "", False),
    ],
)
def test_agent_from_user_agent(ua: str, device: str, os: str, browser: str, bot: bool) -> None:
    agent = shared_enricher().agent(ua)
    assert (agent.device, agent.bot) == (device, bot)
    if not bot:
        assert (agent.os, agent.browser) == (os, browser)


def test_parses_are_cached_and_visitors_hash_ip_and_agent() -> None:
    enricher = shared_enricher()
    before = enricher.agent.cache_info().hits
    enricher.agent(UAS[0])
    enricher.agent(UAS[0])
    assert enricher.agent.cache_info().hits >= before + 1
    assert visitor_key("1.2.3.4", "a") == visitor_key("1.2.3.4", "a")
    assert visitor_key("1.2.3.4", "a") != visitor_key("1.2.3.4", "b")
    assert -(2**63) <= visitor_key("::1", "") < 2**63


def test_an_enricher_loads_the_agent_parsers_when_made() -> None:
    """The parsers load their patterns on first use (about 175 ms): an Enricher made at
    start-up must have done so, not the first clicks a server screens. In a process of
    its own, where nothing has parsed an agent yet."""
    script = (
        "import ua_parser\n"
        "from crawlerdetect import crawlerdetect\n"
        "from clickback.domain.enrich import Enricher\n"
        "regex = crawlerdetect.get_compiled_crawler_regex\n"
        "before = ('parser' in vars(ua_parser), regex.cache_info().currsize)\n"
        "enricher = Enricher()\n"
        "after = ('parser' in vars(ua_parser), regex.cache_info().currsize)\n"
        "print(before, after, enricher.agent.cache_info().currsize)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    # loaded by the Enricher, not before; the warm-up parse left nothing in its cache
    assert out.split() == ["(False,", "0)", "(True,", "1)", "0"]
