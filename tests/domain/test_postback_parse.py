from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from clickback.domain.postback import PostbackInput, parse_postback


def test_seed_parameters_parse() -> None:
    got = parse_postback(
        {
            "refid": "R",
            "orderamount": "0",
            "ordernumber": "1",
            "coupon": "",
            "currency": "",
            "geo": "",
            "commissionid": "",
        }
    )
    assert isinstance(got, PostbackInput)
    assert got.orderamount == Decimal(0) and got.currency is None and got.geo is None


def test_clickid_is_an_alias_of_refid() -> None:
    got = parse_postback({"clickid": "R", "orderamount": "1", "ordernumber": "1"})
    assert isinstance(got, PostbackInput) and got.refid == "R"


@given(
    st.dictionaries(
        st.sampled_from(["refid", "orderamount", "ordernumber", "currency", "geo", "coupon", "x"]),
        st.text(max_size=300),
    )
)
def test_parser_never_raises_and_reports_fields(params: dict[str, str]) -> None:
    got = parse_postback(params)
    if isinstance(got, list):
        assert got and all(e.field and e.code and e.message for e in got)
    else:
        assert got.refid and got.ordernumber and got.orderamount >= 0


def test_an_amount_refused_says_what_to_change() -> None:
    """`49,90`, `-5` and `$49.90` are each refused with the fix spelt out: a dot for the
    decimals, a reversal for a refund, the currency in `currency`."""
    said = {}
    for amount in ("49,90", "1,049.90", "-5", "$49.90", "49.90 EUR", "1.2.3"):
        got = parse_postback({"refid": "R", "ordernumber": "1", "orderamount": amount})
        assert isinstance(got, list)
        [error] = got
        assert (error.field, error.code) == ("orderamount", "invalid_amount")
        said[amount] = error.message
    assert "dot for the decimals" in said["49,90"] and "`49,90`" in said["49,90"]
    assert "dot for the decimals" in said["1,049.90"]
    assert "reverse the conversion" in said["-5"]
    assert "currency" in said["$49.90"] and "currency" in said["49.90 EUR"]
    assert said["1.2.3"] == "`orderamount` must be a plain non-negative decimal such as 12.50"


def test_an_amount_refused_is_told_the_currency_only_when_it_carries_one() -> None:
    """`1e3`, `+5`, `1 000` and `abc` carry no currency: each is told what it does carry
    (an exponent, a sign, a space) or only what an amount is; `USD 49.90`, `49.90€` and
    `eur49.90` are told to send the currency in `currency`."""
    said = {}
    for amount in (
        "1e3",
        "2.5E+2",
        "+5",
        "1 000",
        "abc",
        "NaN",
        "0x10",
        "USD 49.90",
        "49.90€",
        "eur49.90",
    ):
        got = parse_postback({"refid": "R", "ordernumber": "1", "orderamount": amount})
        assert isinstance(got, list)
        [error] = got
        assert (error.field, error.code) == ("orderamount", "invalid_amount")
        said[amount] = error.message
    plain = "`orderamount` must be a plain non-negative decimal such as 12.50"
    assert "exponent" in said["1e3"] and "`1e3`" in said["1e3"] and "exponent" in said["2.5E+2"]
    assert "sign" in said["+5"]
    assert "spaces" in said["1 000"]
    assert said["abc"] == said["NaN"] == said["0x10"] == plain
    for amount in ("USD 49.90", "49.90€", "eur49.90"):
        assert "its currency in `currency`" in said[amount], amount
    for amount in ("1e3", "2.5E+2", "+5", "1 000", "abc", "NaN", "0x10"):
        assert "currency" not in said[amount], amount
