"""The postback's query split against `urllib.parse.parse_qsl`, which it stands in for."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from clickback.web.tracking import MAX_FIELDS, split_query

QUERY_TEXT = st.text(alphabet=st.sampled_from("ab=&%+;2F é\x00"), max_size=80)


def _stdlib(text: str) -> list[tuple[str, str]] | str:
    """parse_qsl, past MAX_FIELDS fields refused, but empty ones (`&&`) not counted."""
    try:
        return parse_qsl(
            "&".join(f for f in text.split("&") if f),
            keep_blank_values=True,
            max_num_fields=MAX_FIELDS,
            errors="backslashreplace",
        )
    except ValueError:
        return "too many fields"


def _ours(text: str) -> list[tuple[str, str]] | str:
    try:
        return split_query(text)
    except ValueError:
        return "too many fields"


@given(QUERY_TEXT)
@example("refid=R1&orderamount=10&ordernumber=A1&coupon=&geo")
@example("a=1&&b=2=3&=x&")
@example("a=%2B+b&c=%zz")
def test_the_split_is_parse_qsl_for_any_query(text: str) -> None:
    assert _ours(text) == _stdlib(text)


@pytest.mark.parametrize("fields", [MAX_FIELDS, MAX_FIELDS + 1])
def test_too_many_fields_are_refused_as_parse_qsl_refuses_them(fields: int) -> None:
    for text in ("&".join(["a=1"] * fields), "&".join(["a=%31"] * fields)):
        assert _ours(text) == _stdlib(text)
    assert (_ours("&".join(["a=1"] * fields)) == "too many fields") == (fields > MAX_FIELDS)
    # empty fields are none: they count neither way
    for text in ("&&".join(["a=1"] * fields) + "&", "&" * 200 + "&".join(["a=%31"] * fields)):
        assert _ours(text) == _stdlib(text)
        assert (_ours(text) == "too many fields") == (fields > MAX_FIELDS), text
