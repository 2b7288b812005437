from __future__ import annotations

from decimal import Decimal

import orjson
from hypothesis import given
from hypothesis import strategies as st

from clickback.domain.postback import (
    PostbackInput,
    merge_errors,
    not_a_value,
    parse_postback,
)


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


_NOT_TEXT = st.recursive(
    st.booleans() | st.none(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=5,
)


@given(
    st.sampled_from(["refid", "orderamount", "ordernumber", "currency", "geo", "coupon"]),
    _NOT_TEXT,
)
def test_a_json_value_that_is_no_text_is_one_error_for_its_field(name: str, value: object) -> None:
    """`"orderamount": true` (or null, a list, an object) is refused once, as no amount,
    not a second time as the text `true`; another parameter so sent is `invalid_json`."""
    sent = orjson.dumps(value).decode()
    params = {"refid": "R", "orderamount": "1", "ordernumber": "1", name: sent}
    parsed = parse_postback(params)
    errors = merge_errors([not_a_value(name, sent)], parsed if isinstance(parsed, list) else [])
    [error] = [e for e in errors if e.field == name]
    assert error.code == ("invalid_amount" if name == "orderamount" else "invalid_json")
    assert f"not `{sent[:20]}`" in error.message
    assert errors == [error]  # the other fields were fine


def test_errors_of_other_fields_and_a_repeat_are_kept_beside_it() -> None:
    sent = not_a_value("orderamount", "true")
    parsed = parse_postback({"orderamount": "true", "currency": "XX"})
    assert isinstance(parsed, list)
    got = merge_errors([sent], parsed)
    assert [(e.field, e.code) for e in got] == [
        ("orderamount", "invalid_amount"),
        ("refid", "missing"),
        ("ordernumber", "missing"),
        ("currency", "invalid_currency"),
    ]
