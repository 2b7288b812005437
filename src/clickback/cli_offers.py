"""`clickback offer …`: make, change, show, pause and activate offers, and cap an
affiliate's conversions on one.

What the options give goes through `domain.admin` as the bodies of POST and PATCH
/api/v1/offers do: the same fields, the same checks, the same error codes. `offer update`
passes on only the options given (PATCH's partial update); an empty value (`--fallback-url
''`, `--revenue-type ''`) clears an optional field, as `""` does in a PATCH.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import typer
from rich.console import Console

from clickback.cli import (
    CursorOption,
    DbOption,
    JsonOption,
    LimitOption,
    _fields,
    _given,
    _list,
    _run,
    _settings,
    _table,
    advertiser_app,
    affiliate_app,
    console,
    link_app,
    offer_app,
    rule_app,
)
from clickback.domain import admin, caps
from clickback.domain.ports import Store
from clickback.errors import InputError, NotFoundError
from clickback.web import present

URL = "Destination (landing page) URL."
PAYOUT_TYPE = "cpa, cps or cpl."
PAYOUT_AMOUNT = "CPA/CPL amount in the offer's currency, e.g. 12.50 (required for CPA/CPL)."
PAYOUT_PERCENT = "CPS percent of orderamount (required for CPS)."
REVENUE_TYPE = "What the advertiser pays the network: cpa, cps, or '' for none."
REVENUE_AMOUNT = "CPA revenue, in the base currency (required for CPA revenue)."
REVENUE_PERCENT = "CPS revenue percent (required for CPS revenue)."
WINDOW = "Attribution window in days (1 to 3650)."
REFID_PARAM = "Query parameter for the RefID."
FALLBACK = (
    "Where its links send a click while the offer is paused or archived, or the link or "
    "affiliate inactive (no RefID); '' for none: CLICKBACK_FALLBACK_URL then applies."
)
APPROVAL = "auto (approved when recorded) or review (pending until decided)."
DAILY_CAP = (
    "Conversions a UTC day; later ones are flagged over_cap and held for review (the rule"
    ' over_cap in --fraud-rules changes that); "" for no cap.'
)
CAP_REDIRECT = (
    "Once a daily cap (the offer's, or an affiliate's own on it) is reached, the links"
    " send clicks to the fallback URL (the offer's, else CLICKBACK_FALLBACK_URL) until"
    " the UTC day's end; with no fallback URL they keep redirecting."
)
AUTO_APPROVE = (
    "Days after which a conversion still pending (not flagged) is approved: the"
    " advertiser's validation period, from when the conversion was recorded (a replayed"
    ' postback\'s from its replay); "" for never.'
)
FRAUD_RULES = (
    'JSON object of flag to flag, hold or reject, e.g. \'{"bot": "reject"}\' '
    "(as the API's fraud_rules; '{}' for none)."
)


def _fraud_rules(text: str | None) -> Any:
    """--fraud-rules' JSON text as an API body would carry it; what it maps is checked by
    the domain, as the API's is."""
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise InputError(
            '`fraud_rules` must be a JSON object, e.g. \'{"bot": "reject"}\'',
            code="invalid_fraud_rules",
            field="fraud_rules",
        ) from None


async def _read(store: Store, offer_id: int) -> dict[str, Any]:
    row = await store.get_row("offers", offer_id)
    if row is None:
        raise NotFoundError(f"offer {offer_id} does not exist")
    return present.offer(row, "")


def _print(offer: dict[str, Any], as_json: bool) -> None:
    """An offer as the API shows it: one JSON line, or a table of its fields."""
    if as_json:
        print(orjson.dumps(offer).decode())
    else:
        _fields(offer)


@offer_app.command("create")
def offer_create(
    advertiser: Annotated[int, typer.Option(help="Advertiser id.")],
    name: Annotated[str, typer.Option()],
    url: Annotated[str, typer.Option(help=URL)],
    payout_type: Annotated[str, typer.Option(help=PAYOUT_TYPE)] = "cpa",
    payout_amount: Annotated[str | None, typer.Option(help=PAYOUT_AMOUNT)] = None,
    payout_percent: Annotated[str | None, typer.Option(help=PAYOUT_PERCENT)] = None,
    revenue_type: Annotated[str, typer.Option(help=REVENUE_TYPE)] = "",
    revenue_amount: Annotated[str | None, typer.Option(help=REVENUE_AMOUNT)] = None,
    revenue_percent: Annotated[str | None, typer.Option(help=REVENUE_PERCENT)] = None,
    currency: Annotated[str, typer.Option()] = "USD",
    window_days: Annotated[int, typer.Option(help=WINDOW)] = 30,
    refid_param: Annotated[str, typer.Option(help=REFID_PARAM)] = "refid",
    fallback_url: Annotated[str, typer.Option(help=FALLBACK)] = "",
    approval: Annotated[str, typer.Option(help=APPROVAL)] = "auto",
    status: Annotated[str, typer.Option(help="active, or paused to start paused.")] = "active",
    fraud_rules: Annotated[str | None, typer.Option(help=FRAUD_RULES)] = None,
    daily_cap: Annotated[str, typer.Option(help=DAILY_CAP)] = "",
    auto_approve_days: Annotated[str, typer.Option(help=AUTO_APPROVE)] = "",
    cap_redirect: Annotated[bool, typer.Option(help=CAP_REDIRECT)] = False,
    db: DbOption = None,
) -> None:
    """Create an offer of an advertiser: its landing page, payout and terms."""
    # the payout and revenue figures only as given: one missing is refused as the API
    # refuses it, not taken for 0
    figures = _given(
        payout_amount=payout_amount,
        payout_percent=payout_percent,
        revenue_amount=revenue_amount,
        revenue_percent=revenue_percent,
    )
    values = {
        "advertiser_id": advertiser,
        "name": name,
        "destination_url": url,
        "fallback_url": fallback_url,
        "payout_type": payout_type,
        "revenue_type": revenue_type,
        **figures,
        "currency": currency,
        "attribution_window_days": window_days,
        "refid_param": refid_param,
        "approval": approval,
        "status": status,
        "fraud_rules": _fraud_rules(fraud_rules),
        "daily_cap": daily_cap,
        "auto_approve_days": auto_approve_days,
        "cap_redirect": cap_redirect,
    }
    settings = _settings(db)
    new_id = _run(db, lambda s: admin.create_offer(s, values, settings.base_currency))
    console.print(f"offer {new_id} created")
    _redirect_nowhere(cap_redirect and not fallback_url, settings.fallback_url)


@offer_app.command("update")
def offer_update(
    offer_id: int,
    name: Annotated[str | None, typer.Option()] = None,
    url: Annotated[str | None, typer.Option(help=URL)] = None,
    fallback_url: Annotated[str | None, typer.Option(help=FALLBACK)] = None,
    payout_type: Annotated[str | None, typer.Option(help=PAYOUT_TYPE)] = None,
    payout_amount: Annotated[str | None, typer.Option(help=PAYOUT_AMOUNT)] = None,
    payout_percent: Annotated[str | None, typer.Option(help=PAYOUT_PERCENT)] = None,
    revenue_type: Annotated[str | None, typer.Option(help=REVENUE_TYPE)] = None,
    revenue_amount: Annotated[str | None, typer.Option(help=REVENUE_AMOUNT)] = None,
    revenue_percent: Annotated[str | None, typer.Option(help=REVENUE_PERCENT)] = None,
    currency: Annotated[
        str | None,
        typer.Option(help="A CPA/CPL offer's new currency needs --payout-amount in it."),
    ] = None,
    window_days: Annotated[int | None, typer.Option(help=WINDOW)] = None,
    refid_param: Annotated[str | None, typer.Option(help=REFID_PARAM)] = None,
    approval: Annotated[str | None, typer.Option(help=APPROVAL)] = None,
    status: Annotated[str | None, typer.Option(help="active or paused.")] = None,
    fraud_rules: Annotated[str | None, typer.Option(help=FRAUD_RULES)] = None,
    daily_cap: Annotated[str | None, typer.Option(help=DAILY_CAP)] = None,
    auto_approve_days: Annotated[str | None, typer.Option(help=AUTO_APPROVE)] = None,
    cap_redirect: Annotated[bool | None, typer.Option(help=CAP_REDIRECT)] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change an offer (only the options given; '' clears an optional one) and print it."""
    values = _given(
        name=name,
        destination_url=url,
        fallback_url=fallback_url,
        payout_type=payout_type,
        payout_amount=payout_amount,
        payout_percent=payout_percent,
        revenue_type=revenue_type,
        revenue_amount=revenue_amount,
        revenue_percent=revenue_percent,
        currency=currency,
        attribution_window_days=window_days,
        refid_param=refid_param,
        approval=approval,
        status=status,
        fraud_rules=_fraud_rules(fraud_rules),
        daily_cap=daily_cap,
        auto_approve_days=auto_approve_days,
        cap_redirect=cap_redirect,
    )
    if not values:
        console.print(
            f"[red]error[/red]: nothing to change: give one or more options "
            f"(clickback offer update --help); clickback offer show {offer_id} shows it"
        )
        raise typer.Exit(2)
    settings = _settings(db)

    async def work(store: Store) -> dict[str, Any]:
        await admin.update_offer(store, offer_id, values, settings.base_currency)
        return await _read(store, offer_id)

    offer = _run(db, work)
    _print(offer, as_json)
    _redirect_nowhere(offer["cap_redirect"] and not offer["fallback_url"], settings.fallback_url)


def _redirect_nowhere(without_own: bool, server_fallback: str) -> None:
    """Says, on stderr, that an offer's `cap_redirect` does nothing for want of a fallback
    URL (its own, or this environment's CLICKBACK_FALLBACK_URL; a server run with another
    environment may have one)."""
    if without_own and not server_fallback:
        Console(stderr=True).print(
            "note: --cap-redirect does nothing until there is a fallback URL to send clicks"
            " to (--fallback-url, or CLICKBACK_FALLBACK_URL): once capped, its links keep"
            " redirecting to the landing page",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


@offer_app.command("show")
def offer_show(offer_id: int, db: DbOption = None, as_json: JsonOption = False) -> None:
    """One offer with every field, as GET /api/v1/offers/{id} shows it."""
    _print(_run(db, lambda s: _read(s, offer_id)), as_json)


@offer_app.command("list")
def offer_list(
    limit: LimitOption = 100,
    cursor: CursorOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Offers, newest first."""
    _list(
        db,
        "offers",
        [
            "id",
            "advertiser_id",
            "name",
            "payout_type",
            "payout_amount",
            "payout_percent",
            "revenue_type",
            "currency",
            "status",
            "destination_url",
        ],
        limit,
        as_json=as_json,
        cursor=cursor,
    )


def _set_status(offer_id: int, status: str, db: str | None) -> None:
    settings = _settings(db)
    base = settings.base_currency
    _run(db, lambda s: admin.update_offer(s, offer_id, {"status": status}, base))
    console.print(
        f"offer {offer_id} {status}; running servers follow within "
        f"{settings.cache_check_seconds:g} s (CLICKBACK_CACHE_CHECK_SECONDS)"
    )


@offer_app.command("pause")
def offer_pause(offer_id: int, db: DbOption = None) -> None:
    """Pause an offer: its links stop serving (to its fallback URL, if set)."""
    _set_status(offer_id, "paused", db)


@offer_app.command("activate")
def offer_activate(offer_id: int, db: DbOption = None) -> None:
    """Activate a paused offer: its links serve again."""
    _set_status(offer_id, "active", db)


@offer_app.command("cap")
def offer_cap(
    offer_id: int,
    affiliate: Annotated[int, typer.Option(help="Affiliate id.")],
    daily_cap: Annotated[
        str, typer.Option(help="Its conversions a UTC day on the offer; '' removes its cap.")
    ],
    db: DbOption = None,
) -> None:
    """Set or remove an affiliate's own daily conversion cap on an offer (beside the
    offer's own --daily-cap): its conversions past it are flagged over_cap."""
    if daily_cap == "":
        _run(db, lambda s: caps.remove_affiliate_cap(s, offer_id, affiliate))
        console.print(f"affiliate {affiliate}'s daily cap on offer {offer_id} removed")
        return
    values = {"daily_cap": daily_cap}
    _run(db, lambda s: caps.set_affiliate_cap(s, offer_id, affiliate, values))
    console.print(f"affiliate {affiliate}'s daily cap on offer {offer_id}: {daily_cap}")


@offer_app.command("caps")
def offer_caps(offer_id: int, db: DbOption = None, as_json: JsonOption = False) -> None:
    """An offer's per-affiliate daily caps (its own is in offer show)."""
    rows = [present.affiliate_cap(r) for r in _run(db, lambda s: caps.affiliate_caps(s, offer_id))]
    if as_json:
        for row in rows:
            print(orjson.dumps(row).decode())
        return
    _table(rows, ["affiliate_id", "daily_cap", "updated_at"])


@rule_app.command("archive")
def rule_archive(rule: int, db: DbOption = None) -> None:
    """Archive a commission rule: postbacks no longer take its payout (the offer's, or
    another rule's, applies); conversions it paid keep theirs. A rule is changed by
    archiving it and creating the new one."""
    _run(db, lambda s: admin.archive(s, "commission_rules", rule))
    console.print(f"rule {rule} archived")


IdArgument = Annotated[int, typer.Argument(metavar="ID", help="Its id.")]


def _archiver(table: str, follows: str) -> Any:
    """`clickback NOUN archive ID`: as the API's DELETE, which it was the only way to."""
    noun = table.rstrip("s")

    def archive(row_id: IdArgument, db: DbOption = None) -> None:
        settings = _settings(db)
        _run(db, lambda s: admin.archive(s, table, row_id))
        console.print(
            f"{noun} {row_id} archived{follows}; it cannot be undone. Running servers follow"
            f" within {settings.cache_check_seconds:g} s (CLICKBACK_CACHE_CHECK_SECONDS)"
        )

    article = "an" if noun[0] in "aeiou" else "a"
    archive.__doc__ = (
        f"Archive {article} {noun}{follows}: it serves no click again and keeps its"
        " history (conversions, reports); nothing new is made under it. It cannot be undone."
    )
    return archive


advertiser_app.command("archive")(_archiver("advertisers", ", with its offers and their links"))
offer_app.command("archive")(_archiver("offers", ", with its links"))
affiliate_app.command("archive")(_archiver("affiliates", ", with its links"))
link_app.command("archive")(_archiver("links", ""))
