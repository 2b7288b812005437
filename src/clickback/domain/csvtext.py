"""CSV text read and written: uploads by people (exchange rates, validation files) in
any newline convention, with a clear error, never a crash, on a file the csv module
cannot read; and the cells every CSV export writes, made safe to open in a spreadsheet.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from typing import Any

from clickback.errors import InputError

# what a spreadsheet reads as the start of a formula (OWASP's "CSV injection" list)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def safe_cell(value: Any) -> Any:
    """A cell as an export writes it: text that a spreadsheet would run as a formula
    (it starts with `=`, `+`, `-`, `@`, a tab or a carriage return) gets a `'` before
    it, so that it is shown as the text it is. Sub-IDs, User-Agents, referers, coupons
    and order numbers come from outside. Numbers, and text that is a plain decimal
    number (an amount `-5.00`, a sub-ID `+3`), are left as they are: a spreadsheet
    reads those as numbers, never as formulas."""
    formula = isinstance(value, str) and value.startswith(FORMULA_START)
    return "'" + value if formula and not PLAIN_NUMBER.fullmatch(value) else value


def csv_lines(text: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) for each CSV record of `text`."""
    reader = csv.reader(io.StringIO(text, newline=""))
    number = 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise InputError(
                f"line {reader.line_num}: not readable as CSV ({e})",
                code="invalid_csv",
                field=f"line {reader.line_num}",
            ) from None
        number += 1
        yield number, fields
