"""`clickback report` (the report API's options, as a table, JSON or CSV) and
`clickback rollup` (bring the report rollups up to date without a running server)."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape

from clickback.cli import DbOption, _run, _settings, _table, app, console, printable
from clickback.domain.ports import Store
from clickback.domain.reports import METRICS, csv_columns, run_report, to_csv
from clickback.domain.reportspec import build_spec
from clickback.domain.rollup import RollupJob

Many = Annotated[list[str] | None, typer.Option(help="Only these (repeatable).")]
SHOWN = ["clicks", "unique_clicks", "conversions", "conversion_rate", "commission", "payable"]


@app.command()
def report(
    group_by: Annotated[str, typer.Option(help="e.g. day or offer,sub1.")] = "day",
    start: Annotated[str | None, typer.Option("--from", help="Date or time, in --tz.")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Date (inclusive) or time.")] = None,
    tz: Annotated[str, typer.Option(help="IANA timezone, e.g. Europe/Berlin.")] = "UTC",
    by: Annotated[str, typer.Option(help="Count conversions at conversion or click time.")] = (
        "conversion"
    ),
    advertiser: Many = None,
    offer: Many = None,
    affiliate: Many = None,
    link: Many = None,
    sub1: Many = None,
    sub2: Many = None,
    sub3: Many = None,
    sub4: Many = None,
    sub5: Many = None,
    country: Many = None,
    device: Many = None,
    os: Many = None,
    browser: Many = None,
    flag: Annotated[
        list[str] | None, typer.Option(help="A fraud flag, none or any (repeatable).")
    ] = None,
    sort: Annotated[str | None, typer.Option(help="A metric or dimension; -name: descending.")] = (
        None
    ),
    limit: int = 1000,
    output: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",
    db: DbOption = None,
) -> None:
    """Clicks, conversions and money per group, from the hourly rollups (`clickback serve`
    keeps them current; `clickback rollup` does it without a server)."""
    if output not in ("table", "json", "csv"):
        console.print("[red]error[/red]: --format is table, json or csv")
        raise typer.Exit(2)
    params: dict[str, list[str]] = {
        "group_by": [group_by],
        "tz": [tz],
        "by": [by],
        "limit": [str(limit)],
    }
    for name, value in (("from", start), ("to", end), ("sort", sort)):
        if value:
            params[name] = [value]
    filters = {"advertiser": advertiser, "offer": offer, "affiliate": affiliate, "link": link}
    filters |= {"sub1": sub1, "sub2": sub2, "sub3": sub3, "sub4": sub4, "sub5": sub5}
    filters |= {"country": country, "device": device, "os": os, "browser": browser, "flag": flag}
    params |= {k: v for k, v in filters.items() if v}
    base = _settings(db).base_currency

    async def work(store: Store) -> dict[str, Any]:
        spec = build_spec(params, time.time_ns() // 1000, METRICS)
        return await run_report(store, spec, base)

    result = _run(db, work)
    if output == "json":
        print(orjson.dumps(result).decode())
    elif output == "csv":
        sys.stdout.write(to_csv(result))
        for note in result["notes"]:  # what the table says under it: beside the file
            print(f"note: {printable(note)}", file=sys.stderr)
    else:
        # bot clicks are never unique: shown when there are any, so the gap is explained
        shown = [*SHOWN, "bot_clicks"] if result["totals"]["bot_clicks"] else SHOWN
        columns = [c for c in csv_columns(result) if c not in METRICS or c in shown]
        if result["group_by"]:
            _table([*result["rows"], {columns[0]: "total", **result["totals"]}], columns)
        else:  # grouped by nothing, its one row is the totals: shown once
            _table([result["totals"]], columns)
        for note in result["notes"]:
            console.print(f"note: {escape(printable(note))}")


@app.command()
def rollup(db: DbOption = None) -> None:
    """Fold every click, conversion and status change not yet in the report rollups in,
    now (a running `clickback serve` does this each second). Without a server, clicks
    are not waited on by the fraud screening: one not yet screened is rolled up
    without its flags."""
    settings = _settings(db)

    async def work(store: Store) -> int:
        job = RollupJob(
            store,
            mmdb_path=settings.geoip_mmdb,
            settle=settings.rollup_settle,
            base_currency=settings.base_currency,
        )
        try:
            return await job.catch_up(max_ticks=1_000_000)
        finally:  # a running server's job takes over at once, not when the lease lapses
            await job.stop()

    console.print(f"{_run(db, work)} rows rolled up")
