"""The data-centre ranges file (`CLICKBACK_DATACENTER_RANGES`): what it takes, and a line
it cannot read named at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from clickback.domain.fraud import Networks
from clickback.errors import ConfigError


def test_a_datacenter_file_with_a_bad_line_names_it(tmp_path: Path) -> None:
    ranges = tmp_path / "dc.txt"
    ranges.write_text("\ufeff# cloud\n8.8.8.0/24\n2001:db8::/32  # v6\n10.0.0.0/33\n", "utf-8")
    with pytest.raises(ConfigError) as refused:
        Networks.from_file(str(ranges))
    assert "line 4" in str(refused.value) and str(ranges) in str(refused.value)
    ranges.write_text("\ufeff8.8.8.0/24\n2001:db8::/32\n", "utf-8")  # a BOM before the first
    networks = Networks.from_file(str(ranges))
    assert "8.8.8.8" in networks and "::ffff:8.8.8.8" in networks and "2001:db8::1" in networks
    assert "9.9.9.9" not in networks


def test_a_range_written_as_ipv4_mapped_ipv6_is_the_ipv4_range() -> None:
    networks = Networks(["::ffff:8.8.8.0/120"])
    assert "8.8.8.8" in networks and "::ffff:8.8.8.9" in networks and "8.8.9.1" not in networks
