from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clickback.domain.redirect import RedirectTemplate
from clickback.domain.tracker import parse_subs

NO_SUBS = ("", "", "", "", "")


def build(url: str, param: str = "refid", subs: tuple[str, ...] = NO_SUBS) -> str:
    return RedirectTemplate(url, param, 11, 22).build("RID", subs)  # type: ignore[arg-type]


def test_refid_added_to_query_strings_correctly() -> None:
    assert build("https://a.example/") == "https://a.example/?refid=RID"
    assert build("https://a.example/p?x=1") == "https://a.example/p?x=1&refid=RID"
    assert build("https://a.example/p?") == "https://a.example/p?refid=RID"
    assert build("https://a.example/p?x=1&") == "https://a.example/p?x=1&refid=RID"
    assert build("https://a.example/p#f?g") == "https://a.example/p?refid=RID#f?g"
    assert build("https://a.example/p", "click id") == "https://a.example/p?click%20id=RID"


def test_macros() -> None:
    url = "https://a.example/{sub2}/x?r={refid}&o={offer_id}&a={affiliate_id}&u={unknown}"
    got = build(url, subs=("", "a/b", "", "", ""))
    assert got == "https://a.example/a%2Fb/x?r=RID&o=11&a=22&u={unknown}"


@given(st.lists(st.text(max_size=20), min_size=5, max_size=5))
def test_sub_values_survive_encoding(subs: list[str]) -> None:
    url = build(
        "https://a.example/p?s1={sub1}&s2={sub2}&s3={sub3}&s4={sub4}&s5={sub5}", subs=tuple(subs)
    )
    assert "#" not in url
    q = parse_qs(urlsplit(url).query, keep_blank_values=True)
    assert [q[f"s{i}"][0] for i in range(1, 6)] == subs


def test_parse_subs_reads_only_sub1_to_sub5() -> None:
    assert parse_subs("sub1=a%20b&sub3=c+d&sub6=no&x=1&sub2") == ("a b", "", "c d", "", "")
    assert parse_subs("sub1=" + "x" * 400)[0] == "x" * 255
    # bytes that are not UTF-8 stay apart, as their escapes (not each one U+FFFD)
    assert parse_subs("sub1=M%FCller&sub2=M%E9ller&sub3=%C3%BC") == (
        "M\\xfcller",
        "M\\xe9ller",
        "\u00fc",
        "",
        "",
    )


def test_a_placeholder_of_the_refid_parameter_takes_the_refid() -> None:
    assert build("https://a.example/p?refid=X&x=1") == "https://a.example/p?refid=RID&x=1"
    assert build("https://a.example/p?x=1&refid") == "https://a.example/p?x=1&refid=RID"
    assert (
        build("https://a.example/p?refid=&x=1&refid=Y#f") == "https://a.example/p?refid=RID&x=1#f"
    )
    assert build("https://a.example/p?click%20id=Z", "click id") == (
        "https://a.example/p?click%20id=RID"
    )
    # a name that only starts alike is another parameter
    assert build("https://a.example/p?refid2=X") == "https://a.example/p?refid2=X&refid=RID"


def test_a_host_of_other_letters_is_stored_in_its_ascii_form() -> None:
    from clickback.domain.admin import destination_url
    from clickback.errors import InputError

    url = destination_url("https://user@bücher.example:8443/päth?q=ü#frag")
    assert url == "https://user@xn--bcher-kva.example:8443/p%C3%A4th?q=%C3%BC#frag"
    assert destination_url("https://shop.example/ü") == "https://shop.example/%C3%BC"
    # UTS #46 as browsers, not IDNA 2003's `strasse.de` (another domain)
    assert destination_url("https://straße.de/") == "https://xn--strae-oqa.de/"
    with pytest.raises(InputError):  # a host that normalizes to a delimiter
        destination_url("https://a\u2100b.example/")
    with pytest.raises(InputError) as refused:  # an empty label is no domain name
        destination_url("https://a..bücher.example/")
    assert refused.value.code == "invalid_url"
