"""Exact money: ISO 4217 currencies, their minor units, parsing and half-up rounding.

Amounts are `Decimal` in the domain and integer minor units in storage; a float never
touches money. Rounding is defined here once: half-up to the currency's minor unit.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from functools import cache

import pycountry

# ISO 4217 minor-unit exponents that are not 2. Every other active code has 2.
_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG"), 0),
    **dict.fromkeys(("RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}
# Codes without a minor unit at all (precious metals, testing, SDR...): not money here.
_NOT_CURRENCIES = frozenset(
    ("XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XDR", "XPD", "XPT", "XSU", "XTS", "XUA", "XXX")
)

# the most minor units a stored amount may hold (10 trillion in a currency of cents): the
# rollups add thousands of them up in 64-bit integers
MAX_MINOR = 10**15
# digits enough for MAX_MINOR in a currency without decimals (10^15 yen), and decimals
# enough that a finer amount is told it is finer than its currency; leading zeros aside,
# at most 34 digits, exact in Decimal's 28-digit arithmetic once fitted to a currency
# (leading zeros bounded too: a value longer than a postback keeps, 1,024 characters, is
# never read as the amount its first 1,024 make)
_AMOUNT_RE = re.compile(r"\A0{0,16}(?:[0-9]{1,16})(?:\.[0-9]{1,18})?\Z")
_PLAIN_RE = re.compile(r"\A[0-9]+(?:\.[0-9]+)?\Z")


@cache
def currencies() -> frozenset[str]:
    """Every ISO 4217 code accepted as a currency."""
    return frozenset(c.alpha_3 for c in pycountry.currencies) - _NOT_CURRENCIES


@cache
def countries() -> frozenset[str]:
    """Every ISO 3166-1 alpha-2 code, and `XK`: Kosovo's code in general use (geo data,
    the EU, banks), user-assigned in the standard."""
    return frozenset(c.alpha_2 for c in pycountry.countries) | {"XK"}


def exponent(currency: str) -> int:
    return _EXPONENTS.get(currency, 2)


def normalize_currency(value: str) -> str | None:
    """`eur` -> `EUR`; None when it is not an ISO 4217 code."""
    code = value.strip().upper()
    return code if code in currencies() else None


def parse_amount(text: str) -> Decimal | None:
    """A plain non-negative decimal (`12`, `12.5`, `0`) of at most 16 digits before the
    point and 18 after; None for anything else (`-1`, `1e3`, `NaN`, `12,50`, `+3`, ` 1`,
    and a plain decimal longer than that: `plain_but_long`)."""
    if not _AMOUNT_RE.match(text):
        return None
    return Decimal(text)


def plain(value: Decimal | str) -> str:
    """A decimal as plain digits, never in exponent form: `1E-8` -> `0.00000001` (what
    `parse_amount` reads back)."""
    return f"{Decimal(value):f}"


def plain_but_long(text: str) -> str:
    """Why a plain decimal that `parse_amount` refuses is refused: 'integer' for more than
    16 digits before the point (more than any currency's MAX_MINOR), 'decimals' for more
    than 18 after it; '' for anything else."""
    if not _PLAIN_RE.match(text):
        return ""
    whole, _, decimals = text.lstrip("0").partition(".")
    return "integer" if len(whole) > 16 else "decimals" if len(decimals) > 18 else ""


def fits_currency(amount: Decimal, currency: str) -> bool:
    """True when the amount has no more decimals than the currency's minor unit."""
    exp = amount.as_tuple().exponent
    assert isinstance(exp, int)
    return -exp <= exponent(currency) or amount == amount.quantize(
        Decimal(1).scaleb(-exponent(currency))
    )


_QUANTUM = {0: Decimal(1), 2: Decimal("0.01"), 3: Decimal("0.001"), 4: Decimal("0.0001")}


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Half-up (commercial) rounding to the currency's minor unit."""
    return amount.quantize(_QUANTUM[exponent(currency)], rounding=ROUND_HALF_UP)


def to_minor(amount: Decimal, currency: str) -> int:
    """Integer minor units of the amount, rounded half-up to the currency's minor unit."""
    return int(amount.scaleb(exponent(currency)).to_integral_value(ROUND_HALF_UP))


def from_minor(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-exponent(currency))


def format_minor(minor: int, currency: str) -> str:
    """Minor units as the decimal string the API and reports show: `1234` USD -> `12.34`."""
    exp = exponent(currency)
    d = Decimal(minor).scaleb(-exp)
    return f"{d:.{exp}f}"


def percent_of(amount: Decimal, percent: Decimal, currency: str) -> Decimal:
    return round_money(amount * percent / 100, currency)
