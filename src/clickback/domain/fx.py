"""Exchange rates into the base (reporting) currency.

A rate is the value of one unit of a currency in the base currency, for a day
(`EUR, 2026-11-02, 1.08` with base USD: 1 EUR = 1.08 USD). A conversion is valued with
the latest rate on or before its UTC day; with none, it is recorded all the same,
flagged `missing_rate`, and valued when a rate arrives.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from decimal import Decimal

from clickback.domain import money


class Rates:
    def __init__(self, base: str, rows: Iterable[tuple[str, str, Decimal]] = ()):
        self.base = base
        self._days: dict[str, list[str]] = {}
        self._rates: dict[str, list[Decimal]] = {}
        for currency, day, rate in sorted(rows):
            self._days.setdefault(currency, []).append(day)
            self._rates.setdefault(currency, []).append(rate)

    def rate(self, currency: str, day: str) -> Decimal | None:
        if currency == self.base:
            return Decimal(1)
        days = self._days.get(currency)
        if not days:
            return None
        i = bisect.bisect_right(days, day)
        return self._rates[currency][i - 1] if i else None

    def to_base(self, minor: int, currency: str, day: str) -> tuple[Decimal | None, int | None]:
        """(rate, amount in base minor units), or (None, None) without a rate."""
        rate = self.rate(currency, day)
        if rate is None:
            return None, None
        value = money.from_minor(minor, currency) * rate
        return rate, money.to_minor(value, self.base)
