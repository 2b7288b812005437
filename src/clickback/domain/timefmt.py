"""Times as stored (integer microseconds since the epoch, UTC) to and from ISO 8601."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# a time (`T10`, ` 10:00:00.5`) then a space and an offset's digits, to the end
_SPACED_OFFSET = re.compile(
    r"([0-9][T ][0-9]{2}(?::?[0-9]{2}){0,2}(?:[.,][0-9]+)?) ([0-9]{2}(?::?[0-9]{2})?)$"
)


def restore_plus(text: str) -> str:
    """An ISO 8601 time whose offset's `+` arrived as a space (`+` unencoded in a query
    string decodes to one: `10:00:00 01:00`) with its `+` back; a space there can be
    nothing else. Other text is returned as it is."""
    return _SPACED_OFFSET.sub(r"\1+\2", text)


def iso(us: int | None) -> str | None:
    if us is None:
        return None
    return (EPOCH + timedelta(microseconds=us)).isoformat().replace("+00:00", "Z")


def from_datetime(dt: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is taken as UTC."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def now_us() -> int:
    return time.time_ns() // 1000
