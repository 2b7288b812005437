"""`clickback` commands for outbound postbacks and postback security: where an affiliate's
conversions are posted, the delivery log, and who may fire an advertiser's postbacks."""

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
    _catalog,
    _fields,
    _given,
    _list,
    _run,
    _settings,
    _table,
    advertiser_app,
    affiliate_app,
    console,
    deliveries_app,
)
from clickback.domain import admin, outbound_setup
from clickback.domain.outbound import PostbackConfig
from clickback.domain.ports import Store
from clickback.errors import NotFoundError


@affiliate_app.command("postback")
def affiliate_postback(
    affiliate_id: int,
    url: Annotated[
        str | None,
        typer.Option(
            help="URL with macros such as {refid}, {commission} (default: kept); with no "
            "option given: show what is set."
        ),
    ] = None,
    method: Annotated[
        str | None, typer.Option(help="GET, or POST for a JSON body (default: kept, else GET).")
    ] = None,
    secret: Annotated[
        str | None, typer.Option(help="Signs requests (X-Clickback-Signature).")
    ] = None,
    events: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated: conversion, approved, rejected, reversed "
            "(default: kept, else conversion)."
        ),
    ] = None,
    offer: Annotated[int | None, typer.Option(help="Only for this offer (an override).")] = None,
    remove: Annotated[
        bool, typer.Option("--remove", help="Remove the --offer override: its own applies.")
    ] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Set where an affiliate's conversions are posted back (an option not given keeps
    what is set); with no option, show it and its per-offer overrides; with --offer and
    --remove, remove that override."""
    from clickback import outbound_http

    if remove:
        if offer is None or url is not None:
            console.print("[red]error[/red]: --remove takes --offer and no --url")
            raise typer.Exit(2)
        _run(db, lambda s: outbound_setup.remove_offer_postback(s, offer, affiliate_id))
        console.print(
            f"affiliate {affiliate_id}: the override for offer {offer} is removed; "
            "the affiliate's own postback applies"
        )
        return
    if offer is not None and secret is not None:
        console.print(
            "[red]error[/red]: an offer's override signs with the affiliate's own secret: "
            f"set it without --offer (clickback affiliate postback {affiliate_id} --secret …)"
        )
        raise typer.Exit(2)
    settings = _settings(db)
    values: dict[str, Any] = _given(
        postback_url=url,
        postback_method=method,
        postback_events=None if events is None else [e.strip() for e in events.split(",")],
        postback_secret=secret,
    )
    if not values:
        _show_postback(affiliate_id, offer, db, as_json)
        return

    async def check(u: str) -> None:
        await outbound_http.check_destination(u, settings.outbound_allow_private)

    async def work(store: Store) -> PostbackConfig | None:
        if offer is None:
            await admin.update_affiliate(store, affiliate_id, values, check)
        else:
            # an override starts from what is in force for the pair (the affiliate's own)
            before = (await _catalog(store)).postback_config(offer, affiliate_id)
            if before is not None and before.url:
                values.setdefault("postback_url", before.url)
                values.setdefault("postback_method", before.method)
                values.setdefault("postback_events", sorted(before.events))
            await outbound_setup.set_offer_postback(store, offer, affiliate_id, values, check)
        return (await _catalog(store)).postback_config(offer or 0, affiliate_id)

    config = _run(db, work)
    if config is None:
        # the affiliate has no URL (cleared, or never set): what was set is kept for when
        # one is, and its per-offer overrides still post back
        _show_postback(affiliate_id, None, db, as_json)
        return
    where = f"affiliate {affiliate_id}" + (f", offer {offer}" if offer is not None else "")
    console.print(f"{where}: postbacks go to {escape(config.url)}", soft_wrap=True)
    console.print(
        f"  method {config.method}; events {', '.join(sorted(config.events)) or 'none'}; "
        f"signed: {'yes (secret set)' if config.secret else 'no (no secret)'}",
        soft_wrap=True,
    )


def _show_postback(affiliate_id: int, offer: int | None, db: str | None, as_json: bool) -> None:
    """An affiliate's own postback and its overrides (or the one for `offer`); the secret
    is said to be set, never printed."""
    from clickback.web.present import offer_postback

    async def work(store: Store) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        row = await store.get_row("affiliates", affiliate_id)
        if row is None:
            raise NotFoundError(f"affiliate {affiliate_id} does not exist")
        if offer is not None:
            overrides = [await outbound_setup.offer_postback(store, offer, affiliate_id)]
        else:
            overrides = await store.offer_postbacks(affiliate_id=affiliate_id)
        own = {
            "postback_url": row["postback_url"],
            "postback_method": row["postback_method"],
            "postback_events": [e for e in row["postback_events"].split(",") if e],
            "signed": bool(row["postback_secret"]),
            "postback_enabled": row["postback_disabled_at"] is None,
        }
        return own, [offer_postback(o) for o in overrides]

    own, overrides = _run(db, work)
    if as_json:
        print(orjson.dumps({"affiliate_id": affiliate_id, **own, "overrides": overrides}).decode())
        return
    if offer is None:
        where = (
            f"to {escape(own['postback_url'])}"
            if own["postback_url"]
            else "nowhere (no postback URL)"
        )
        console.print(
            f"affiliate {affiliate_id}: postbacks go {where} ({own['postback_method']}; "
            f"{', '.join(own['postback_events'])}; {'signed' if own['signed'] else 'unsigned'}"
            f"{'' if own['postback_enabled'] else '; disabled'})",
            soft_wrap=True,
        )
    for o in overrides:
        o["postback_events"] = ",".join(o["postback_events"])
    if overrides or offer is None:
        console.print("per-offer overrides:" if overrides else "no per-offer overrides")
    if overrides:
        _table(overrides, ["offer_id", "postback_url", "postback_method", "postback_events"])


@affiliate_app.command("show")
def affiliate_show(affiliate_id: int, db: DbOption = None, as_json: JsonOption = False) -> None:
    """One affiliate with its per-offer postback overrides, as GET /api/v1/affiliates/{id}
    shows it (its postback secret hidden)."""
    from clickback.web.http import HIDDEN
    from clickback.web.present import affiliate, offer_postback

    async def work(store: Store) -> dict[str, Any]:
        row = await store.get_row("affiliates", affiliate_id)
        if row is None:
            raise NotFoundError(f"affiliate {affiliate_id} does not exist")
        overrides = await store.offer_postbacks(affiliate_id=affiliate_id)
        return {
            **affiliate(row, ""),
            "postback_secret": HIDDEN if row["postback_secret"] else "",
            "postback_overrides": [offer_postback(o) for o in overrides],
        }

    shown = _run(db, work)
    if as_json:
        print(orjson.dumps(shown).decode())
        return
    overrides = shown.pop("postback_overrides")
    _fields(shown)
    if not overrides:
        console.print("no per-offer postback overrides")
        return
    console.print("per-offer postback overrides:")
    for o in overrides:
        o["postback_events"] = ",".join(o["postback_events"])
    _table(
        overrides,
        ["offer_id", "postback_url", "postback_method", "postback_events", "updated_at"],
        whole=("postback_url",),
    )


@affiliate_app.command("enable-postback")
def affiliate_enable_postback(affiliate_id: int, db: DbOption = None) -> None:
    """Re-enable a postback disabled after failures; what was held is queued again."""
    _run(db, lambda s: admin.update_affiliate(s, affiliate_id, {"postback_enabled": True}))
    console.print(f"affiliate {affiliate_id}: postback enabled")


@affiliate_app.command("disable-postback")
def affiliate_disable_postback(affiliate_id: int, db: DbOption = None) -> None:
    """Disable a postback by hand, as failures do: its deliveries are held until enabled."""
    _run(db, lambda s: admin.update_affiliate(s, affiliate_id, {"postback_enabled": False}))
    console.print(f"affiliate {affiliate_id}: postback disabled")


@deliveries_app.command("list")
def deliveries_list(
    limit: LimitOption = 50,
    cursor: CursorOption = None,
    state: Annotated[
        str | None, typer.Option(help="queued, delivered, failed, held or cancelled.")
    ] = None,
    affiliate: Annotated[int | None, typer.Option(help="Affiliate id.")] = None,
    conversion: Annotated[int | None, typer.Option(help="Conversion id.")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Outbound postbacks, newest first."""
    filters = _given(state=state, affiliate_id=affiliate, conversion_id=conversion)
    columns = [
        "id",
        "conversion_id",
        "affiliate_id",
        "event",
        "state",
        "attempt_count",
        "last_status",
        "last_error",
        "next_attempt_at",
    ]
    _list(db, "deliveries", columns, limit, filters, as_json, cursor=cursor)


@deliveries_app.command("show")
def deliveries_show(delivery_id: int, db: DbOption = None, as_json: JsonOption = False) -> None:
    """One delivery with every attempt and what the affiliate's server answered to each
    (`--json`: as GET /api/v1/deliveries/{id} shows it)."""
    from clickback.web.present import attempt, delivery

    async def work(store: Store) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        row, attempts = await store.delivery_with_attempts(delivery_id)
        if row is None:
            raise NotFoundError(f"delivery {delivery_id} does not exist")
        return delivery(row, ""), [attempt(a) for a in attempts]

    head, attempts = _run(db, work)
    if as_json:
        print(orjson.dumps({**head, "attempts": attempts}).decode())
        return
    console.print_json(orjson.dumps(head).decode())
    columns = ["at", "method", "status_code", "latency_ms", "error", "response_excerpt", "url"]
    _table(attempts, columns)


@deliveries_app.command("resend")
def deliveries_resend(delivery_id: int, db: DbOption = None) -> None:
    """Queue a delivery again (same Idempotency-Key); a running server sends it."""
    later = _run(db, lambda s: outbound_setup.resend_delivery(s, delivery_id))
    also = f", and after it the {later} later one(s) of its conversion that failed" if later else ""
    console.print(f"delivery {delivery_id} queued{also}")


@advertiser_app.command("security")
def advertiser_security(
    advertiser_id: int,
    ip_allowlist: Annotated[str | None, typer.Option(help="IPs/CIDRs allowed to fire.")] = None,
    signing_secret: Annotated[str | None, typer.Option(help="HMAC key for `sig`.")] = None,
    require_signature: Annotated[bool | None, typer.Option(help="Refuse unsigned.")] = None,
    require_token: Annotated[
        bool | None, typer.Option(help="Refuse postbacks without its postback token.")
    ] = None,
    db: DbOption = None,
) -> None:
    """Who may fire this advertiser's postbacks: its token required, a signature, an IP
    allowlist (only the options given change)."""
    values = _given(
        ip_allowlist=ip_allowlist,
        signing_secret=signing_secret,
        require_signature=require_signature,
        require_token=require_token,
    )
    if not values:
        console.print(
            "[red]error[/red]: nothing to change: give --require-token, --require-signature,"
            " --signing-secret or --ip-allowlist (clickback advertiser security --help)"
        )
        raise typer.Exit(2)
    _run(db, lambda s: admin.update_advertiser(s, advertiser_id, values))
    console.print(f"advertiser {advertiser_id} updated")
