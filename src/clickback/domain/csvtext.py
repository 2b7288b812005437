"""CSV text uploaded by people (exchange rates, validation files): lines in any newline
convention, and a clear error, never a crash, on a file the csv module cannot read."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from clickback.errors import InputError


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
