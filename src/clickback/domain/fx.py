"""Exchange rates into the base (reporting) currency.

A rate is the value of one unit of a currency in the base currency, for a day
(`EUR, 2026-11-02, 1.08` with base USD: 1 EUR = 1.08 USD). A conversion is valued with
the latest rate on or before its UTC day; with none, it is recorded all the same,
flagged `missing_rate`, and valued when a rate arrives.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, localcontext

from clickback.domain import money
from clickback.domain.csvtext import csv_lines
from clickback.domain.ports import Store
from clickback.errors import ConfigError, InputError

_ONE = Decimal(1)
BASE_META = "base_currency"  # meta: the base currency the stored amounts and rates are in


async def check_base_currency(store: Store, base: str) -> None:
    """Refuses a base currency other than the one the database's amounts and exchange
    rates are in (the reports would add the two up as one): recorded once something is
    stored in a base, read from the stored conversions where it was not recorded yet."""
    stored = await store.get_meta(BASE_META)
    if stored is None:
        in_use = await store.base_currency_in_use()
        if in_use is None:
            return  # nothing valued, no rates: any base is as good as another
        stored = await store.get_or_set_meta(BASE_META, in_use or base)
    if stored != base:
        raise ConfigError(
            f"CLICKBACK_BASE_CURRENCY is {base}, but this database's amounts and exchange "
            f"rates are in {stored}: reports would add up the two as one. Set "
            f"CLICKBACK_BASE_CURRENCY={stored} (a database keeps the base currency it "
            "first stored amounts in).",
            code="base_currency_changed",
        )


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
        """(rate, amount in base minor units), or (None, None) without a rate; zero (a
        CPL lead's order) is zero in any currency, with a rate or not."""
        if currency == self.base:
            return _ONE, minor
        rate = self.rate(currency, day)
        if rate is None:
            return (None, 0) if minor == 0 else (None, None)
        amount = money.from_minor(minor, currency)
        # exact, then rounded once: the default 28 digits rounded a long rate's product
        # half-even first (0.4999…9 of a rate, 31 digits, made 1 EUR cent 0.01 USD)
        digits = len(amount.as_tuple().digits) + len(rate.as_tuple().digits)
        with localcontext(prec=max(28, digits)):
            return rate, money.to_minor(amount * rate, self.base)


def stored_rate(rate: Decimal | None, base_amount: int | None) -> str | None:
    """A conversion's `rate` column: the order currency's rate; None while it waits for
    one (`unvalued_conversions` reads it so); '' for an order of zero valued without one
    (zero in any currency), so that it does not wait."""
    if base_amount is None:
        return None
    return "" if rate is None else str(rate)


# units of the base one unit of a currency is worth, at most: a billion is above any real
# rate (a rial or a dong base against a dinar); a typo such as `1e30` is refused
MAX_RATE = Decimal(10) ** 9


def _bad_line(number: int, why: str) -> InputError:
    return InputError(f"line {number}: {why}", code="invalid_rate", field=f"line {number}")


def parse_rates(text: str, base: str = "") -> list[tuple[str, str, str]]:
    """CSV lines `date,currency,rate` (a header line is allowed) as (currency, day, rate).
    Raises InputError naming the first bad line: one of more than 3 fields (`9,093`, a
    decimal comma, would be read as 9), a rate of the `base` currency (always 1), or a
    second rate for a currency and day already given another."""
    rows: list[tuple[str, str, str]] = []
    given: dict[tuple[str, str], tuple[int, Decimal]] = {}
    for number, fields in csv_lines(text):
        if not fields or all(not f.strip() for f in fields):
            continue
        if number == 1 and fields[0].strip().lower() == "date":
            continue
        if any(f.strip() for f in fields[3:]):
            raise _bad_line(
                number,
                "more than 3 fields (`date,currency,rate`): write a rate with a decimal point"
                " (`9.093`), not a comma, or quote it",
            )
        try:
            day = date.fromisoformat(fields[0].strip()).isoformat()
            currency = money.normalize_currency(fields[1])
            rate = Decimal(fields[2].strip())
            if currency is None or not rate.is_finite() or not 0 < rate <= MAX_RATE:
                raise ValueError
        except (ValueError, IndexError, ArithmeticError):
            raise InputError(
                f"line {number}: expected `date,currency,rate`, e.g. `2026-11-02,EUR,1.08`"
                f" (a rate above 0 and at most {MAX_RATE:,})",
                code="invalid_rate",
                field=f"line {number}",
            ) from None
        if currency == base:
            raise _bad_line(number, f"{base} is the base currency: its rate is always 1")
        first = given.setdefault((currency, day), (number, rate))
        if first[1] != rate:
            raise _bad_line(
                number, f"a second rate for {currency} on {day} (line {first[0]} gave {first[1]})"
            )
        rows.append((currency, day, str(rate)))
    return rows


# what a conversion waiting for a rate needs, said wherever one waits
RATE_NEEDED = (
    "a conversion is valued at the latest rate dated on or before its UTC day, of its"
    " order's currency and of its commission's"
)


@dataclass(frozen=True)
class Imported:
    """What a rates import did: conversions valued, conversions still waiting (no rate
    dated on or before their day: `RATE_NEEDED`), and the stored rates it replaced with
    another, each (currency, day, rate before, rate now): a conversion valued at the
    rate before keeps it."""

    valued: int
    waiting: int
    replaced: list[tuple[str, str, str, str]]
    base: str = ""
    # of those waiting, the ones the rates value past what can be stored (over
    # `money.MAX_MINOR` minor units in the base currency): no rate will value them
    too_large: list[int] = field(default_factory=list)
    # per currency newly given a rate for a day after an earlier-dated one (currency, the
    # first such day): conversions of that day or later valued before keep the earlier
    kept_earlier: list[tuple[str, str]] = field(default_factory=list)

    def note(self) -> str | None:
        said = []
        if waiting := self.waiting - len(self.too_large):
            said.append(f"{waiting} conversion(s) still wait: {RATE_NEEDED}")
        if self.too_large:
            ids = ", ".join(map(str, self.too_large[:20]))
            said.append(
                f"{len(self.too_large)} conversion(s) are too large to value in {self.base}"
                f" (over {money.MAX_MINOR:,} minor units) and stay out of the money: {ids}"
            )
        if self.replaced:
            said.append(
                "rates replaced, conversions valued at the rate before keep it: "
                + ", ".join(f"{c} {d} {was} -> {now}" for c, d, was, now in self.replaced)
            )
        for currency, day in self.kept_earlier:
            said.append(
                f"{currency} conversions recorded on or after {day} before this import, if any,"
                f" were valued at an earlier-dated rate and keep it (as they keep their"
                f" commission): import each day's rates before its first conversion"
            )
        return "; ".join(said) or None


async def import_rates(store: Store, rows: list[tuple[str, str, str]], base: str) -> Imported:
    """Stores rates, then values every conversion still missing one."""
    await check_base_currency(store, base)
    await store.get_or_set_meta(BASE_META, base)  # the rates are in it from now on
    before = {(c, d): r for c, d, r in await store.all_rates()}
    replaced = [
        (c, d, before[c, d], r)
        for c, d, r in rows
        if (c, d) in before and Decimal(before[c, d]) != Decimal(r)
    ]
    await store.put_rates(rows)
    too_large: list[int] = []
    valued, waiting = await value_missing(store, base, too_large)
    return Imported(valued, waiting, replaced, base, too_large, _kept_earlier(before, rows))


def _kept_earlier(
    before: dict[tuple[str, str], str], rows: list[tuple[str, str, str]]
) -> list[tuple[str, str]]:
    """Per currency newly given a rate dated on or before today (UTC) after an
    earlier-dated one: the first such day. Conversions of that day or later recorded
    before the import were valued at the earlier-dated rate, and keep it, as they keep
    their commission (today's rate imported in the morning: the night's conversions keep
    the day before's). Told, not counted: counting would read every conversion since."""
    today = time.strftime("%Y-%m-%d", time.gmtime())
    first: dict[str, str] = {}
    for currency, day, _ in rows:
        earlier = any(c == currency and d < day for c, d in before)
        if (currency, day) not in before and day <= today and earlier:
            first[currency] = min(day, first.get(currency, day))
    return sorted(first.items())


async def value_missing(
    store: Store, base: str, too_large: list[int] | None = None
) -> tuple[int, int]:
    """Values every conversion still missing a rate that the stored rates now value (an
    import does it at once; the screening's holder again once the processes' caches
    have the import's rates, for the conversions recorded meanwhile with the rates
    before). How many were valued, and how many still wait; those that wait because
    the rates value them past what can be stored, in `too_large` (their ids)."""
    all_rates = Rates(base, [(c, d, Decimal(r)) for c, d, r in await store.all_rates()])
    valued = waiting = 0
    after = 0
    while True:
        batch = await store.unvalued_conversions(after, 1000)
        if not batch:
            return valued, waiting
        updates = []
        for c in batch:
            day = time.strftime("%Y-%m-%d", time.gmtime(c["created_at"] // 1_000_000))
            rate, amount = all_rates.to_base(c["orderamount"], c["currency"], day)
            _, paid = all_rates.to_base(c["commission"], c["commission_currency"], day)
            if amount is not None and paid is not None:  # an order of zero needs no rate
                if max(abs(amount), abs(paid)) > money.MAX_MINOR:
                    # too large to store: stays unvalued, as a postback refuses it
                    if too_large is not None:
                        too_large.append(c["id"])
                    continue
                updates.append(("" if rate is None else str(rate), amount, paid, base, c["id"]))
        await store.value_conversions(updates)
        valued += len(updates)
        waiting += len(batch) - len(updates)
        after = batch[-1]["id"]
