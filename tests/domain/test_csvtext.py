"""The cells CSV exports write: text a spreadsheet would run as a formula is defused,
numbers are left as they are."""

from __future__ import annotations

from clickback.domain.csvtext import safe_cell


def test_a_cell_a_spreadsheet_would_run_gets_a_quote_and_a_number_does_not() -> None:
    for text in ("=1+1", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tx", "\r=1", "-", "+"):
        assert safe_cell(text) == "'" + text, text
    for kept in ("-5", "+3", "-5.00", "12.", "-.5", "spring", "a=b", " =1", "", "2026-03-01"):
        assert safe_cell(kept) == kept, kept
    assert safe_cell("-1e5") == "'-1e5"  # not a plain decimal number
    assert safe_cell("-\u0665") == "'-\u0665"  # an Arabic-Indic digit is no plain number
    assert (safe_cell(-5), safe_cell(0)) == (-5, 0)
