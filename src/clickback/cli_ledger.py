"""`clickback` commands for the postback ledger and for proving an integration: the
ledger and its replay, the postback URL, and the two integration tests."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape

from clickback.cli import (
    CursorOption,
    DbOption,
    JsonOption,
    LimitOption,
    _check_filters,
    _given,
    _list,
    _run,
    _settings,
    _table,
    app,
    console,
    postbacks_app,
    printable,
    public_base,
)
from clickback.cli_traffic import TestOption, test_flag
from clickback.domain import attribution
from clickback.domain.ports import Store
from clickback.errors import NotFoundError


def _error_text(e: dict[str, str]) -> str:
    """`code (field)`, or the code alone for a refusal of the whole request (`*`, no
    field: rate_limited, request_too_large)."""
    return e["code"] if e["field"] in ("", "*") else f"{e['code']} ({e['field']})"


def _errors_cell(row: dict[str, Any]) -> dict[str, Any]:
    """A ledger row as table cells: its errors as `code (field)`, comma-separated; a
    duplicate's with its message (the conversion it repeats, and what differs)."""
    errors = ", ".join(
        f"{_error_text(e)}: {e['message']}"
        if e["code"] == attribution.DUPLICATE_ORDERNUMBER
        else _error_text(e)
        for e in row["errors"]
    )
    return {**row, "errors": errors}


@postbacks_app.command("list")
def postbacks_list(
    limit: LimitOption = 50,
    cursor: CursorOption = None,
    outcome: Annotated[
        str | None,
        typer.Option(
            help="accepted, duplicate, rejected (bad input), forbidden (token, signature, "
            "address), unknown_refid, expired_refid, offer_paused or rate_limited."
        ),
    ] = None,
    code: Annotated[
        str | None, typer.Option(help="The first error's code, e.g. token_invalid.")
    ] = None,
    refid: str | None = None,
    ordernumber: str | None = None,
    since: Annotated[str | None, typer.Option(help="Received at or after (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Received before (ISO 8601).")] = None,
    test: TestOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """The postback ledger, newest first: every postback received, with its outcome;
    `is_test` marks the integration tests' ones (a test order may carry a real one's
    number). RefIDs and errors are shown whole, over more lines when the terminal is
    narrow; --json prints every field, the parameters as sent among them."""
    from clickback.web.present import parse_time

    filters = _given(
        outcome=outcome,
        code=code,
        refid=refid,
        ordernumber=ordernumber,
        is_test=test_flag(test),
    )
    lo = parse_time(since, "since") if since else None
    hi = parse_time(until, "until") if until else None
    columns = [
        "id",
        "received_at",
        "method",
        "refid",
        "ordernumber",
        "outcome",
        "http_status",
        "errors",
        "conversion_id",
        "replay_of",  # a replay is judged, and listed, at its original's time
        "is_test",
    ]
    whole = ("refid", "errors")
    _list(db, "postbacks", columns, limit, filters, as_json, lo, hi, _errors_cell, whole, cursor)


@postbacks_app.command("replay")
def postbacks_replay(
    postback_id: Annotated[int | None, typer.Argument(help="One ledger id.")] = None,
    outcome: Annotated[str | None, typer.Option(help="Replay every postback with it.")] = None,
    code: Annotated[str | None, typer.Option(help="...and this error code.")] = None,
    since: Annotated[str | None, typer.Option(help="...received at or after (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="...received before (ISO 8601).")] = None,
    db: DbOption = None,
) -> None:
    """Re-decide stored postbacks after their cause was fixed; never counts an order twice.

    Replaying by --outcome/--code/--since/--until passes over a postback that an earlier
    replay of it counted (accepted, or a duplicate of an order counted), and says how
    many; a postback accepted when it came is replayed as the rest (a duplicate of
    itself then, counted once): filter by --outcome or --code to replay the refused. Exits 0
    when every replay is accepted or a duplicate, 1 when any is refused again, 2 on an
    error."""
    from rich.console import Console
    from rich.progress import Progress

    from clickback.domain import ledger
    from clickback.domain.tracker import open_tracker_for
    from clickback.web.present import parse_time

    filtered = any(v is not None for v in (outcome, code, since, until))
    if (postback_id is None) != filtered:  # neither, or both (the id alone was replayed)
        say = "not both" if filtered else "one of them"
        console.print(
            f"[red]error[/red]: give a postback id, or --outcome/--code/--since/--until: {say}"
        )
        raise typer.Exit(2)
    settings = _settings(db)

    async def work(store: Store) -> tuple[list[tuple[int, Any]], int]:
        tracker = await open_tracker_for(store, settings)
        if postback_id is not None:
            return [(postback_id, await ledger.replay(store, tracker, postback_id))], 0
        filters = _given(outcome=outcome, code=code)
        _check_filters("postbacks", filters)
        lo = parse_time(since, "since") if since else None
        hi = parse_time(until, "until") if until else None
        # on stderr: stdout is the table, which a pipe takes alone
        with Progress(console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("replaying", total=None)
            return await ledger.replay_matching(
                store, tracker, filters, lo, hi, lambda n: bar.update(task, completed=n)
            )

    done, skipped = _run(db, work)
    rows = [
        {
            "postback": i,
            "status": a.body["status"],
            "http": a.status,
            "new ledger id": a.ledger_id,
            "conversion id": a.body.get("conversion_id"),
            "code": a.body.get("code") or ", ".join(e["code"] for e in a.body.get("errors", [])),
        }
        for i, a in done
    ]
    _table(rows, ["postback", "status", "http", "new ledger id", "conversion id", "code"])
    refused = sum(a.body["status"] not in ("accepted", "duplicate") for _, a in done)
    tail = f", {skipped} skipped (a replay already counted them)" if skipped else ""
    console.print(f"{len(done)} replayed, {refused} refused again{tail}")
    if refused:
        raise typer.Exit(1)


@app.command("postback-url")
def postback_url(offer_id: int, db: DbOption = None) -> None:
    """The postback URL to give the offer's advertiser, with what to fill in."""
    from clickback.domain import integration

    settings = _settings(db)

    async def work(store: Store) -> tuple[str, bool]:
        base = await public_base(store, settings)
        offer = await store.get_row("offers", offer_id)
        if offer is None:
            raise NotFoundError(f"offer {offer_id} does not exist")
        advertiser = await store.get_row("advertisers", offer["advertiser_id"])
        assert advertiser is not None
        url = integration.postback_template(base, advertiser)
        return url, integration.signature_required(advertiser)

    url, signed = _run(db, work)
    print(url)
    console.print(integration.POSTBACK_INSTRUCTIONS, style="dim")
    if signed:
        console.print(integration.SIGNATURE_INSTRUCTIONS, style="bold")


@app.command("integration-test")
def integration_test(
    offer_id: int,
    affiliate: Annotated[
        int | None, typer.Option(help="Affiliate (default: the test one).")
    ] = None,
    simulate: Annotated[
        bool,
        typer.Option(
            help="Fire the test postback too, as the advertiser's server would: with its "
            "token and signed when it has them, from 127.0.0.1 (an IP allowlist without "
            "that address refuses it)."
        ),
    ] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Start the two integration tests for an offer: a test click and a test conversion."""
    from clickback.domain import integration
    from clickback.domain.tracker import open_tracker_for
    from clickback.probe import probe_landing

    settings = _settings(db)

    async def work(store: Store) -> dict[str, Any]:
        tracker = await open_tracker_for(store, settings)
        test_id = await integration.start(store, tracker, offer_id, affiliate, probe_landing)
        if simulate:
            await integration.simulate(store, tracker, test_id)
        row = await store.get_row("integration_tests", test_id)
        assert row is not None
        return await integration.describe(store, await public_base(store, settings), row)

    _show_test(_run(db, work), as_json, simulate)


@app.command("integration-result")
def integration_result(
    test_id: Annotated[int, typer.Argument(help="The id `integration-test` printed.")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """An integration test's result now: the conversion test passes once the advertiser's
    server fired its postback (as GET /api/v1/integration-tests/{id}). Exits 1 when a
    test failed."""
    from clickback.domain import integration

    settings = _settings(db)

    async def work(store: Store) -> dict[str, Any]:
        row = await store.get_row("integration_tests", test_id)
        if row is None:
            raise NotFoundError(f"integration test {test_id} does not exist")
        return await integration.describe(store, await public_base(store, settings), row)

    _show_test(_run(db, work), as_json)


def _show_test(test: dict[str, Any], as_json: bool, simulate: bool = False) -> None:
    """An integration test as `integration.describe` gives it, and what to do next; a
    test that failed exits 1, for a script to tell (one still waiting for its postback
    is not failed)."""
    from clickback.domain import integration

    failed = any(test[name]["status"] == "failed" for name in ("click_test", "conversion_test"))
    if as_json:
        print(orjson.dumps(test).decode())
        raise typer.Exit(1 if failed else 0)
    console.print(f"integration test {test['id']} for offer {test['offer_id']}")
    console.print(f"tracking link: {escape(test['tracking_url'])}", soft_wrap=True)
    console.print(f"postback URL:  {escape(test['postback_url'])}", soft_wrap=True)
    for name in ("click_test", "conversion_test"):
        result = test[name]
        colour = {"passed": "green", "failed": "red"}.get(result["status"], "yellow")
        console.print(f"{name.replace('_', ' ')}: [{colour}]{result['status']}[/{colour}]")
        for r in result["reasons"]:
            console.print(f"  - {_error_text(r)}: {escape(printable(r['message']))}")
    if simulate and not test["refid"]:
        console.print("--simulate: nothing fired, the click test made no RefID")
    if test["conversion_test"]["status"] == "pending" and test["refid"]:
        console.print(
            "Fire the postback URL above (fill orderamount and ordernumber), then check:"
            f" clickback integration-result {test['id']} (or GET"
            f" /api/v1/integration-tests/{test['id']})"
        )
        if test["signature_required"]:
            console.print(integration.SIGNATURE_INSTRUCTIONS, style="bold")
    if failed:
        raise typer.Exit(1)
