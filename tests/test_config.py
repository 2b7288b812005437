from __future__ import annotations

from pathlib import Path

import pytest

from clickback.config import SETTINGS, Settings
from clickback.errors import ConfigError

DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def test_every_setting_is_documented() -> None:
    text = DOCS.read_text()
    for name in SETTINGS:
        assert f"`{name}`" in text, name


def test_settings_from_env() -> None:
    s = Settings.from_env({"CLICKBACK_SECRET": "a, b", "CLICKBACK_CLICK_DURABILITY": "async"})
    assert s.secrets == ("a", "b") and s.click_durability == "async"
    assert s.database_url == "sqlite:///clickback.db"
    with pytest.raises(ConfigError):
        Settings.from_env({"CLICKBACK_CLICK_DURABILITY": "maybe"})


def test_the_fallback_url_is_checked_as_a_destination_is() -> None:
    assert Settings.from_env({}).fallback_url == ""
    s = Settings.from_env({"CLICKBACK_FALLBACK_URL": " https://bücher.example/x y "})
    assert s.fallback_url == "https://xn--bcher-kva.example/x%20y"
    for bad in ("ftp://x.example/", "/relative", "https://" + "x" * 2000 + ".example/"):
        with pytest.raises(ConfigError, match="CLICKBACK_FALLBACK_URL"):
            Settings.from_env({"CLICKBACK_FALLBACK_URL": bad})
    # braces are sent as they are (a fallback fills no macro): not refused as unknown
    # macros, which stopped a server whose setting held one; what is wrong is said
    kept = Settings.from_env({"CLICKBACK_FALLBACK_URL": "https://shop.example/?src={source}"})
    assert kept.fallback_url == "https://shop.example/?src={source}"
    with pytest.raises(ConfigError, match="a port that is not one"):
        Settings.from_env({"CLICKBACK_FALLBACK_URL": "https://shop.example:99999/"})
