"""`clickback` commands for the traffic itself: clicks and conversions listed and
exported as CSV, and conversions' statuses changed one at a time or from an
advertiser's validation file."""

from __future__ import annotations

from typing import Annotated, Any, TextIO

import typer
from rich.console import Console

from clickback.cli import (
    CSV_ENCODING,
    CursorOption,
    DbOption,
    JsonOption,
    LimitOption,
    _catalog,
    _check_filters,
    _given,
    _list,
    _run,
    _settings,
    _table,
    clicks_app,
    console,
    conversions_app,
    read_csv,
)
from clickback.domain.ports import Store

OfferFilter = Annotated[int | None, typer.Option(help="Offer id.")]
AffiliateFilter = Annotated[int | None, typer.Option(help="Affiliate id.")]
LinkFilter = Annotated[int | None, typer.Option(help="Link id.")]
Sub1Filter = Annotated[str | None, typer.Option(help="sub1 exactly ('' for none).")]
StatusFilter = Annotated[str | None, typer.Option(help="pending, approved, rejected or reversed.")]
SinceFilter = Annotated[
    str | None, typer.Option(help="Made at or after (ISO 8601; a date, or a time, UTC if naive).")
]
UntilFilter = Annotated[str | None, typer.Option(help="Made before (ISO 8601).")]
TestOption = Annotated[
    bool | None,
    typer.Option(
        "--test/--no-test",
        help="Only the integration tests' rows / only real ones (default: both).",
    ),
]


@conversions_app.command("list")
def conversions_list(
    limit: LimitOption = 50,
    cursor: CursorOption = None,
    refid: str | None = None,
    ordernumber: str | None = None,
    offer: OfferFilter = None,
    affiliate: AffiliateFilter = None,
    advertiser: Annotated[int | None, typer.Option(help="Advertiser id.")] = None,
    link: LinkFilter = None,
    status: StatusFilter = None,
    since: SinceFilter = None,
    until: UntilFilter = None,
    test: TestOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Recent conversions, newest first; `is_test` marks the integration tests' ones
    (never in reports)."""
    filters = _given(
        refid=refid,
        ordernumber=ordernumber,
        offer_id=offer,
        affiliate_id=affiliate,
        advertiser_id=advertiser,
        link_id=link,
        status=status,
        is_test=test_flag(test),
    )
    columns = [
        "id",
        "created_at",
        "refid",
        "offer_id",
        "affiliate_id",
        "sub1",
        "ordernumber",
        "orderamount",
        "currency",
        "commission",
        "commission_currency",  # the offer's (or its rule's): not always the order's
        "status",
        "is_test",
    ]
    _list(db, "conversions", columns, limit, filters, as_json, *_range(since, until), cursor=cursor)


@clicks_app.command("list")
def clicks_list(
    limit: LimitOption = 50,
    cursor: CursorOption = None,
    refid: str | None = None,
    offer: OfferFilter = None,
    affiliate: AffiliateFilter = None,
    link: LinkFilter = None,
    sub1: Sub1Filter = None,
    since: SinceFilter = None,
    until: UntilFilter = None,
    test: TestOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Recent clicks, newest first; `is_test` marks the integration tests' ones."""
    columns = [
        "refid",
        "created_at",
        "link_id",
        "offer_id",
        "affiliate_id",
        "sub1",
        "ip",
        "is_test",
    ]
    filters = _given(
        refid=refid,
        offer_id=offer,
        affiliate_id=affiliate,
        link_id=link,
        sub1=sub1,
        is_test=test_flag(test),
    )
    _list(db, "clicks", columns, limit, filters, as_json, *_range(since, until), cursor=cursor)


def _range(since: str | None, until: str | None) -> tuple[int | None, int | None]:
    """`--since` and `--until` read, in microseconds since the epoch."""
    from clickback.errors import InputError
    from clickback.web.present import parse_time

    lo = parse_time(since, "since") if since else None
    hi = parse_time(until, "until") if until else None
    if lo is not None and hi is not None and lo >= hi:
        raise InputError(
            "--since must be before --until: nothing was made in between",
            code="invalid_range",
            field="since",
        )
    return lo, hi


@conversions_app.command("status")
def conversions_status(
    conversion_id: int,
    status: Annotated[str, typer.Argument(help="approved, rejected or reversed.")],
    reason: Annotated[str, typer.Option(help="Why: a code such as chargeback.")],
    db: DbOption = None,
) -> None:
    """Approve, reject or reverse one conversion (kept in its history). pending may
    become approved or rejected, rejected approved, approved reversed; a reversal is
    final (its affiliate is told of it) and cannot be undone."""
    from clickback.domain import lifecycle

    async def work(store: Store) -> None:
        catalog = await _catalog(store)  # for the outbound postback the change sets off
        await lifecycle.change_status(
            store, conversion_id, status, reason, "cli", catalog.delivery_state
        )

    _run(db, work)
    console.print(f"conversion {conversion_id} {status}")


@conversions_app.command("approve-due")
def conversions_approve_due(db: DbOption = None) -> None:
    """Approve now the pending conversions whose offer's validation period
    (--auto-approve-days) has passed (`clickback serve` does it every minute)."""
    import time

    from clickback.domain import lifecycle

    async def work(store: Store) -> int:
        catalog = await _catalog(store)
        return await lifecycle.approve_due(store, time.time_ns() // 1000, catalog.delivery_state)

    console.print(f"{_run(db, work)} conversions approved")


@conversions_app.command("import-statuses")
def conversions_import_statuses(
    file: Annotated[
        typer.FileText,
        typer.Argument(help="CSV: ordernumber,status,reason.", encoding=CSV_ENCODING),
    ],
    advertiser: Annotated[int, typer.Option(help="Whose order numbers these are.")],
    db: DbOption = None,
) -> None:
    """Apply an advertiser's validation file, reporting every line; exits 1 when a line
    was refused (an unknown order number, a change its status does not allow)."""
    from clickback.domain import lifecycle

    text = read_csv(file)

    async def work(store: Store) -> list[lifecycle.LineResult]:
        catalog = await _catalog(store)
        return await lifecycle.apply_csv(store, advertiser, text, "cli", catalog.delivery_state)

    lines = _run(db, work)
    _table([x.as_dict() for x in lines], ["line", "ordernumber", "result", "code", "message"])
    changed = sum(x.result == "changed" for x in lines)
    console.print(f"{changed} changed, {len(lines) - changed} not")
    if any(x.result == "error" for x in lines):
        raise typer.Exit(1)


OutOption = Annotated[typer.FileTextWrite, typer.Option("--out", help="CSV file (- for stdout).")]
SinceOption = Annotated[str | None, typer.Option(help="Created at or after (ISO 8601).")]
UntilOption = Annotated[str | None, typer.Option(help="Created before (ISO 8601).")]
ExportLimitOption = Annotated[
    int | None, typer.Option(min=1, help="The most rows written (default: every one).")
]


def _export(
    db: str | None,
    table: str,
    out: TextIO,
    filters: dict[str, Any],
    since: str | None,
    until: str | None,
    limit: int | None,
) -> None:
    """Every matching row (or the oldest `limit`) as CSV, oldest first, written a page at a
    time as the API streams it; how many on stderr."""
    from clickback.web.export import csv_pages
    from clickback.web.present import parse_time

    lo = parse_time(since, "since") if since else None
    hi = parse_time(until, "until") if until else None
    base = _settings(db).public_url

    async def work(store: Store) -> int:
        _check_filters(table, filters)
        count = 0
        pages = csv_pages(store, table, base, filters, lo, hi, limit=limit, ascending=True)
        async for text, rows in pages:
            out.write(text)
            count += rows
        return count

    Console(stderr=True).print(f"{_run(db, work)} {table} written")


@conversions_app.command("export")
def conversions_export(
    out: OutOption,
    offer: OfferFilter = None,
    affiliate: AffiliateFilter = None,
    status: StatusFilter = None,
    test: TestOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    limit: ExportLimitOption = None,
    db: DbOption = None,
) -> None:
    """Every matching conversion (or the oldest --limit) as CSV, oldest first, in pages."""
    filters = _given(
        offer_id=offer,
        affiliate_id=affiliate,
        status=status,
        is_test=test_flag(test),
    )
    _export(db, "conversions", out, filters, since, until, limit)


@clicks_app.command("export")
def clicks_export(
    out: OutOption,
    offer: OfferFilter = None,
    affiliate: AffiliateFilter = None,
    link: LinkFilter = None,
    sub1: Sub1Filter = None,
    test: TestOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    limit: ExportLimitOption = None,
    db: DbOption = None,
) -> None:
    """Every matching click (or the oldest --limit) as CSV, oldest first, in pages."""
    filters = _given(
        offer_id=offer,
        affiliate_id=affiliate,
        link_id=link,
        sub1=sub1,
        is_test=test_flag(test),
    )
    _export(db, "clicks", out, filters, since, until, limit)


def test_flag(test: bool | None) -> int | None:
    return None if test is None else int(test)
