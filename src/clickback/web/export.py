"""CSV exports of a list (clicks, conversions): every matching row, or the first `limit`,
read a page at a time so that a large table is never held whole. The API streams the
pages (`GET /api/v1/{table}/export`), `clickback {table} export` writes them to a file:
one loop, so the two write the same cells."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Mapping
from typing import Any

from clickback.domain.ports import Store
from clickback.web.present import EXPORT_COLUMNS, PRESENTERS, csv_cell

EXPORT_PAGE = 1000  # rows read at once


async def csv_pages(
    store: Store,
    table: str,
    base: str,
    filters: Mapping[str, Any],
    since: int | None,
    until: int | None,
    *,
    limit: int | None = None,
    cursor: str | None = None,
    ascending: bool = False,
    flag: str | None = None,
    omit: frozenset[str] = frozenset(),
) -> AsyncIterator[tuple[str, int]]:
    """The CSV a page at a time: each page's text and how many rows it holds, the header
    line in the first. `limit` is the most rows written (None: every matching one);
    `omit` columns are left out."""
    columns = [c for c in EXPORT_COLUMNS[table] if c not in omit]
    present = PRESENTERS[table]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    left = limit
    while True:
        size = EXPORT_PAGE if left is None else min(EXPORT_PAGE, left)
        page = await store.list_rows(
            table, filters, since, until, size, cursor, ascending=ascending, flag=flag
        )
        for row in page.items:
            item = present(row, base)
            writer.writerow(csv_cell(item[c], c) for c in columns)
        yield buf.getvalue(), len(page.items)
        buf.seek(0)
        buf.truncate()
        cursor = page.next_cursor
        if left is not None:
            left -= len(page.items)
        if cursor is None or left == 0:
            return
