"""The admin API under `/api/v1` (Starlette), plus `/healthz` and `/readyz`.

Off the hot path, so it may be richer. Every endpoint is declared once as an `Endpoint`
(`web.http`): the same records build the routes and the OpenAPI document, so the two
cannot drift apart. This module holds the entities (advertisers, offers, affiliates,
links) and the raw lists (clicks, conversions, postbacks); `api_ledger` and
`api_money` hold the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from clickback import outbound_http
from clickback.domain import admin
from clickback.domain.ports import Store
from clickback.domain.tokens import scoped
from clickback.errors import NotFoundError
from clickback.storage import unavailable_errors
from clickback.web.errors import HANDLERS, on_unavailable
from clickback.web.http import (
    Caller,
    Endpoint,
    base_url,
    build_routes,
    int_param,
    list_query,
    read_json,
    redact,
)
from clickback.web.present import PRESENTERS, json_response, offer_postback

# for how long after a write batch failed for the database out of reach `/readyz` tries
# a write of its own (each time it is asked) before it says ready: past that, a node
# whose writes still fail is taken out again at its next failed batch
WRITES_FAILED_WITHIN = 60.0
READY_TIMEOUT = 2.0  # seconds a readiness check's read, or its write, may take

if TYPE_CHECKING:
    from clickback.web.app import ClickbackApp

Creator = Callable[[Store, Mapping[str, Any]], Awaitable[int]]
Updater = Callable[[Store, int, Mapping[str, Any]], Awaitable[None]]

ENTITIES: dict[str, tuple[str, Creator, Updater]] = {
    "advertisers": ("Advertiser", admin.create_advertiser, admin.update_advertiser),
    "offers": ("Offer", admin.create_offer, admin.update_offer),
    "affiliates": ("Affiliate", admin.create_affiliate, admin.update_affiliate),
    "links": ("Link", admin.create_link, admin.update_link),
}
RAW_LISTS = {
    "clicks": "Click",
    "conversions": "Conversion",
    "postbacks": "Postback",
    "deliveries": "Delivery",
}


async def show(app: ClickbackApp, request: Request, table: str, row_id: Any) -> dict[str, Any]:
    """One object as a read (and a write's answer) shows it; an affiliate with its
    per-offer postback overrides (`AffiliateDetail`), which its lists leave out."""
    row = await app.store.get_row(table, row_id)
    if row is None:
        raise NotFoundError(f"{table.rstrip('s')} {row_id} does not exist")
    shown = PRESENTERS[table](row, base_url(app, request))
    if table == "affiliates":
        overrides = await app.store.offer_postbacks(affiliate_id=row_id)
        shown["postback_overrides"] = [offer_postback(o) for o in overrides]
    return shown


def entity_endpoints(app: ClickbackApp) -> list[Endpoint]:
    def lister(table: str) -> Callable[[Request, Caller], Awaitable[Response]]:
        async def handle(request: Request, caller: Caller) -> Response:
            q = list_query(table, request.query_params)
            page = await app.store.list_rows(
                table,
                scoped(q.filters, caller.affiliate_id),
                q.since,
                q.until,
                q.limit,
                q.cursor,
                nulls=q.nulls,
                ascending=q.ascending,
                flag=q.flag,
            )
            present, base = PRESENTERS[table], base_url(app, request)
            items = [redact(present(r, base), caller) for r in page.items]
            return json_response({"items": items, "next_cursor": page.next_cursor})

        return handle

    def creator(table: str, create: Creator) -> Callable[[Request, Caller], Awaitable[Response]]:
        async def handle(request: Request, caller: Caller) -> Response:
            new_id = await create(app.store, await read_json(request))
            await app.catalog.reload()
            return json_response(await show(app, request, table, new_id), 201)

        return handle

    def reader(table: str) -> Callable[[Request, Caller], Awaitable[Response]]:
        async def handle(request: Request, caller: Caller) -> Response:
            row_id = int_param(request)
            shown = await show(app, request, table, row_id)
            if caller.affiliate_id is not None and shown.get("affiliate_id") != caller.affiliate_id:
                # another affiliate's: not there for this token, as an unknown id
                raise NotFoundError(f"{table.rstrip('s')} {row_id} does not exist")
            return json_response(redact(shown, caller))

        return handle

    def updater(table: str, update: Updater) -> Callable[[Request, Caller], Awaitable[Response]]:
        async def handle(request: Request, caller: Caller) -> Response:
            row_id = int_param(request)
            await update(app.store, row_id, await read_json(request))
            await app.catalog.reload()
            return json_response(await show(app, request, table, row_id))

        return handle

    def archiver(table: str) -> Callable[[Request, Caller], Awaitable[Response]]:
        async def handle(request: Request, caller: Caller) -> Response:
            row_id = int_param(request)
            await admin.archive(app.store, table, row_id)
            await app.catalog.reload()
            return json_response(await show(app, request, table, row_id))

        return handle

    async def read_click(request: Request, caller: Caller) -> Response:
        refid = request.path_params["id"]
        if "\x00" in refid:  # no RefID holds it, and PostgreSQL's text cannot
            raise NotFoundError(f"no click {refid!r}")
        return json_response(await show(app, request, "clicks", refid))

    async def check_url(url: str) -> None:
        await outbound_http.check_destination(url, app.settings.outbound_allow_private)

    async def create_affiliate(store: Store, values: Mapping[str, Any]) -> int:
        return await admin.create_affiliate(store, values, check_url)

    async def update_affiliate(store: Store, row_id: int, values: Mapping[str, Any]) -> None:
        await admin.update_affiliate(store, row_id, values, check_url)

    base_currency = app.settings.base_currency  # an offer's revenue is in it

    async def create_offer(store: Store, values: Mapping[str, Any]) -> int:
        return await admin.create_offer(store, values, base_currency)

    async def update_offer(store: Store, row_id: int, values: Mapping[str, Any]) -> None:
        await admin.update_offer(store, row_id, values, base_currency)

    creators = {
        **{t: e[1] for t, e in ENTITIES.items()},
        "affiliates": create_affiliate,
        "offers": create_offer,
    }
    updaters = {
        **{t: e[2] for t, e in ENTITIES.items()},
        "affiliates": update_affiliate,
        "offers": update_offer,
    }
    eps: list[Endpoint] = []
    for table, (schema, _, _) in ENTITIES.items():
        create, update = creators[table], updaters[table]
        mine = table == "links"  # an affiliate token reads its own links
        path, one = f"/api/v1/{table}", f"/api/v1/{table}/{{id}}"
        noun = schema.lower()
        detail = "AffiliateDetail" if table == "affiliates" else schema  # see `show`
        eps += [
            Endpoint(
                "GET",
                path,
                lister(table),
                f"List {table}",
                response=f"{schema}List",
                listing=table,
                affiliate=mine,
                tags=(table,),
            ),
            Endpoint(
                "POST",
                path,
                creator(table, create),
                f"Create an {noun}" if noun[0] in "aeiou" else f"Create a {noun}",
                write=True,
                body=f"{schema}Create",
                response=detail,
                status=201,
                # what belongs to an archived row is not made (409)
                errors=(400, 404, 409) if table in ("offers", "links") else (400, 404),
                tags=(table,),
            ),
            Endpoint(
                "GET",
                one,
                reader(table),
                f"Read one {noun}",
                response=detail,
                affiliate=mine,
                tags=(table,),
            ),
            Endpoint(
                "PATCH",
                one,
                updater(table, update),
                f"Change some of an {noun}'s fields"
                if noun[0] in "aeiou"
                else f"Change some of a {noun}'s fields",
                write=True,
                body=f"{schema}Update",
                response=detail,
                # an archived offer's status or link's `active` is not set (409)
                errors=(400, 404, 409) if table in ("offers", "links") else (400, 404),
                tags=(table,),
            ),
            Endpoint(
                "DELETE",
                one,
                archiver(table),
                f"Archive ({noun}s keep their history)",
                write=True,
                response=detail,
                # the integration tests' built-in affiliate is not archived
                errors=(400, 404, 409) if table == "affiliates" else (400, 404),
                tags=(table,),
            ),
        ]
    for table, schema in RAW_LISTS.items():
        eps.append(
            Endpoint(
                "GET",
                f"/api/v1/{table}",
                lister(table),
                f"List {table}",
                response=f"{schema}List",
                listing=table,
                # an affiliate token lists its own clicks, conversions and the postbacks
                # sent to it (deliveries: whether its endpoint answers)
                affiliate=table in ("clicks", "conversions", "deliveries"),
                tags=(table,),
            )
        )
        if table not in ("conversions", "deliveries"):  # richer reads: api_money, api_outbound
            handler = read_click if table == "clicks" else reader(table)
            eps.append(
                Endpoint(
                    "GET",
                    f"/api/v1/{table}/{{id}}",
                    handler,
                    f"Read one {schema.lower()}",
                    response=schema,
                    tags=(table,),
                )
            )
    return eps


def build_api(app: ClickbackApp) -> Starlette:
    from clickback.web import (
        api_caps,
        api_ledger,
        api_money,
        api_outbound,
        api_reports,
        openapi,
        ui,
    )

    endpoints = (
        entity_endpoints(app)
        + api_ledger.endpoints(app)
        + api_money.endpoints(app)
        + api_outbound.endpoints(app)
        + api_caps.endpoints(app)
        + api_reports.endpoints(app)
    )

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        stale = app.catalog.stale_seconds() if app.ready else 0.0
        if stale:  # it would serve paused offers, old payouts: out of the balancer
            why = f"not ready: links and offers last read {stale:.0f} s ago"
            return PlainTextResponse(why, 503)
        failed = app.store.writes_failing(WRITES_FAILED_WITHIN)
        if failed is not None:  # reads may work, writes not (a disk full): do they now?
            try:
                await asyncio.wait_for(app.store.write_probe(), READY_TIMEOUT)
            except Exception:
                why = f"not ready: a write failed {failed:.0f} s ago, the database out of reach"
                return PlainTextResponse(why, 503)
        try:  # a server that hangs is not ready either, rather than a check that hangs
            ok = app.ready and await asyncio.wait_for(app.store.ping(), READY_TIMEOUT)
        except Exception:
            ok = False
        return PlainTextResponse("ready" if ok else "not ready", 200 if ok else 503)

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        *openapi.routes(endpoints),
        *build_routes(app, endpoints, openapi.body_fields(endpoints)),
        *ui.routes(app),
    ]
    unavailable = on_unavailable(lambda exc: app.store.unavailable(exc))
    errors = (  # a store not given is opened at startup, after this: the URL's engine
        app.store.unavailable_errors
        if app.store is not None
        else unavailable_errors(app.settings.database_url)
    )
    handlers = {**HANDLERS, **{error: unavailable for error in errors}}
    return Starlette(routes=routes, exception_handlers=handlers)
