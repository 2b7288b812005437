from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from clickback.domain import money
from clickback.domain.fx import Rates


def test_plain_decimals_only() -> None:
    for good in ("0", "12", "12.5", "0.01", "999999999999999.99"):
        assert money.parse_amount(good) == Decimal(good)
    for bad in ("-1", "NaN", "nan", "1e3", "12,50", "+3", " 1", "1.", ".5", "", "Infinity", "١٢"):
        assert money.parse_amount(bad) is None, bad


def test_half_up_rounding_to_minor_units() -> None:
    assert money.percent_of(Decimal("0.05"), Decimal(10), "USD") == Decimal("0.01")
    assert money.percent_of(Decimal("10.125"), Decimal(10), "KWD") == Decimal("1.013")
    assert money.round_money(Decimal("2.5"), "JPY") == Decimal(3)
    assert money.round_money(Decimal("0.125"), "USD") == Decimal("0.13")


def test_exponents_and_codes() -> None:
    assert (money.exponent("JPY"), money.exponent("USD"), money.exponent("KWD")) == (0, 2, 3)
    assert money.normalize_currency("eur") == "EUR"
    assert money.normalize_currency("EURO") is None and money.normalize_currency("XAU") is None
    assert "DE" in money.countries() and "XX" not in money.countries()


def test_precision_against_currency() -> None:
    assert money.fits_currency(Decimal("1.23"), "USD")
    assert money.fits_currency(Decimal("1.230"), "USD")  # trailing zeros carry no value
    assert not money.fits_currency(Decimal("1.234"), "USD")
    assert not money.fits_currency(Decimal("1.5"), "JPY")


@given(st.integers(0, 10**15 - 1), st.sampled_from(["USD", "JPY", "KWD", "EUR"]))
def test_minor_units_round_trip(minor: int, currency: str) -> None:
    text = money.format_minor(minor, currency)
    amount = money.parse_amount(text)
    assert amount is not None and money.to_minor(amount, currency) == minor


def test_to_minor_rounds_half_up_not_to_even() -> None:
    assert money.to_minor(Decimal("0.125"), "USD") == 13  # half-even would give 12
    assert money.to_minor(Decimal("0.135"), "USD") == 14
    assert money.to_minor(Decimal("2.5"), "JPY") == 3 and money.to_minor(Decimal("3.5"), "JPY") == 4
    assert money.to_minor(Decimal("0.0005"), "KWD") == 1
    assert money.to_minor(Decimal("0.124999"), "USD") == 12


def test_a_value_in_the_base_currency_rounds_half_up() -> None:
    """0.10 EUR at 1.25 is 0.125 USD: 13 cents, the one rounding rule of `money`."""
    rates = Rates("USD", [("EUR", "2000-01-01", Decimal("1.25"))])
    assert rates.to_base(10, "EUR", "2026-01-01") == (Decimal("1.25"), 13)
    assert rates.to_base(30, "EUR", "2026-01-01") == (Decimal("1.25"), 38)
    assert rates.to_base(10, "EUR", "1999-12-31") == (None, None)  # no rate yet that day


def test_a_long_rate_is_applied_exactly_then_rounded_once() -> None:
    """28 digits (Python's default) rounded the product half-even first: a rate of
    0.4999…9 (31 digits) made 1 EUR cent 0.005 USD, then 0.01 USD half-up."""
    long = Decimal("0.4999999999999999999999999999999")
    rates = Rates("USD", [("EUR", "2000-01-01", long)])
    assert rates.to_base(1, "EUR", "2026-01-01") == (long, 0)
    assert rates.to_base(3, "EUR", "2026-01-01") == (long, 1)  # 0.0149…: 0.01


def test_zero_needs_no_rate() -> None:
    rates = Rates("USD")
    assert rates.to_base(0, "CHF", "2026-01-01") == (None, 0)
    assert rates.to_base(1, "CHF", "2026-01-01") == (None, None)
