"""A small MaxMind database written for the tests (the real ones need an account to
download): its countries differ from geoip2fast's, so a test can tell which was read."""

from __future__ import annotations

from pathlib import Path

from mmdb_writer import MMDBWriter
from netaddr import IPSet

# network -> record, in the shapes real databases use
RECORDS = {
    "81.2.69.0/24": {"country": {"iso_code": "SE", "names": {"en": "Sweden"}}},  # GeoLite2
    "8.8.8.0/24": {"registered_country": {"iso_code": "CH"}},  # only a registered country
    "1.1.1.0/24": {"country_code": "JP"},  # flat (DB-IP / IP2Location lite style)
    "2a00:1450::/32": {"country": {"iso_code": "NO"}},
}
EXPECTED = {"81.2.69.160": "SE", "8.8.8.8": "CH", "1.1.1.1": "JP", "2a00:1450:4001::1": "NO"}


def write_mmdb(path: Path) -> Path:
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-Country")
    for network, record in RECORDS.items():
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(str(path))
    return path
