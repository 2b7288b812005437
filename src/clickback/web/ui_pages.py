"""Dashboard pages for conversions (with their click, ledger entries and history, and the
approve / reject / reverse forms), the postback ledger (with replay), offers (the
advertiser's postback URL and the two integration tests) and outbound postbacks to
affiliates (each delivery's attempts, with resend)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from clickback.domain import caps, integration, ledger, lifecycle, outbound_setup
from clickback.domain.listing import LISTS, text_filter
from clickback.domain.rollup import shared_enricher
from clickback.errors import InputError, NotFoundError
from clickback.web.http import Caller, base_url, redact
from clickback.web.present import PRESENTERS, attempt
from clickback.web.session import Session

if TYPE_CHECKING:
    from clickback.web.ui import Ui


async def read_form(request: Request) -> dict[str, str]:
    from clickback.web.ui import read_form as read

    return await read(request)


PAGE = 50
FILTERS = {
    "conversions": ("status", "offer_id", "affiliate_id", "refid", "ordernumber"),
    "postbacks": ("outcome", "code", "refid", "ordernumber", "advertiser_id"),
    "offers": ("advertiser_id", "status"),
    "deliveries": ("state", "event", "affiliate_id", "offer_id", "conversion_id"),
}


def filters_of(request: Request, table: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in FILTERS[table]:
        value = request.query_params.get(name, "").strip()
        if not value:
            continue
        if LISTS[table].filters[name] is int:
            if not (value.isascii() and value.isdigit()) or len(value) > 18:
                raise InputError(f"`{name}` must be an id", code="invalid_filter", field=name)
            out[name] = int(value)
        else:
            out[name] = text_filter(table, name, value)
    return out


NAMES_LISTED = 1000  # the newest of each kind, for the filters' choices


async def names(
    ui: Ui, table: str, rows: list[dict[str, Any]], filters: dict[str, Any]
) -> dict[int, str]:
    """Names by id: the newest NAMES_LISTED (the filters' choices), and those of the ids
    the rows show and the filters hold, however old, so that every row is named and an
    active filter stays chosen on the next submit."""
    page = await ui.app.store.list_rows(table, {}, None, None, NAMES_LISTED, None)
    out = {int(r["id"]): str(r["name"]) for r in page.items}
    column = f"{table[:-1]}_id"  # offers: offer_id
    wanted = {r.get(column) for r in rows} | {filters.get(column)}
    if table == "offers":  # the offers list: its own rows
        wanted |= {r.get("id") for r in rows}
    missing = sorted(int(i) for i in wanted if isinstance(i, int) and i not in out)
    if missing:
        out.update(await ui.app.store.report_names(table, missing))
    return out


def routes(ui: Ui) -> list[Route]:
    app = ui.app

    async def listing(
        request: Request, session: Session, table: str, template: str, size: int = PAGE
    ) -> Response:
        filters = filters_of(request, table)
        cursor = request.query_params.get("cursor") or None
        page = await app.store.list_rows(table, filters, None, None, size, cursor)
        base = base_url(app, request)
        items = [PRESENTERS[table](r, base) for r in page.items]
        older = None
        if page.next_cursor:
            older = urlencode({**filters, "cursor": page.next_cursor})
        return ui.render(
            request,
            template,
            session,
            items=items,
            filters=filters,
            older=older,
            offers=await names(ui, "offers", page.items, filters),
            affiliates=await names(ui, "affiliates", page.items, filters),
            advertisers=(
                await names(ui, "advertisers", page.items, filters) if table == "offers" else {}
            ),
        )

    async def conversions(request: Request, session: Session) -> Response:
        return await listing(request, session, "conversions", "conversions.html")

    async def conversion(request: Request, session: Session) -> Response:
        cid = _id(request)
        row, history = await app.store.conversion_with_history(cid)
        if row is None:
            raise NotFoundError(f"conversion {cid} does not exist")
        base = base_url(app, request)
        click = await app.store.get_row("clicks", row["refid"])
        enriched = None
        if click is not None:
            enricher = await asyncio.to_thread(shared_enricher, app.settings.geoip_mmdb)
            agent = enricher.agent(click["user_agent"])
            enriched = {
                "country": enricher.country(click["ip"]),
                "device": agent.device,
                "os": agent.os,
                "browser": agent.browser,
                "bot": agent.bot,
            }
        # the postbacks of this order (refused, counted, repeated), not of its RefID: a
        # RefID that fired more orders than a page left the one that counted this out
        order = {
            "ordernumber": row["ordernumber"],
            "advertiser_id": row["advertiser_id"],
            "is_test": int(row["is_test"]),  # a test order's number may be a real one's too
        }
        page = await app.store.list_rows("postbacks", order, None, None, PAGE, None)
        return ui.render(
            request,
            "conversion.html",
            session,
            c=PRESENTERS["conversions"](row, base),
            click=PRESENTERS["clicks"](click, base) if click else None,
            enriched=enriched,
            postbacks=[PRESENTERS["postbacks"](p, base) for p in page.items],
            history=history,
            moves=lifecycle.moves(row["status"]),
        )

    async def change_status(request: Request, session: Session) -> Response:
        cid = _id(request)
        form = await read_form(request)
        to = form.get("status", "")
        await lifecycle.change_status(
            app.store, cid, to, form.get("reason"), session.actor, app.catalog.delivery_state
        )
        return RedirectResponse(f"/ui/conversions/{cid}?{urlencode({'done': to})}", 303)

    async def postbacks(request: Request, session: Session) -> Response:
        return await listing(request, session, "postbacks", "postbacks.html")

    async def postback(request: Request, session: Session) -> Response:
        """One ledger row whole: every parameter as sent (the advertiser's token hidden
        from a read session, as the API hides it), every error with its message, and its
        replays."""
        pid = _id(request)
        row = await app.store.get_row("postbacks", pid)
        if row is None:
            raise NotFoundError(f"postback {pid} does not exist")
        base = base_url(app, request)
        shown = redact(PRESENTERS["postbacks"](row, base), Caller(session.actor, session.role))
        replays = await app.store.list_rows("postbacks", {"replay_of": pid}, None, None, PAGE, None)
        return ui.render(
            request,
            "postback.html",
            session,
            p=shown,
            replays=[PRESENTERS["postbacks"](r, base) for r in replays.items],
        )

    async def replay(request: Request, session: Session) -> Response:
        """Replays a postback, then shows the replay's own row: counted (or a duplicate)
        said as done, refused again said as an error with its reasons, as the CLI says."""
        original = _id(request)
        answer = await ledger.replay(app.store, app.tracker, original)
        said = f"postback {original} replayed as {answer.ledger_id}"
        if answer.body.get("status") in ("accepted", "duplicate"):
            message = {"done": f"{said}: {answer.body['status']}"}
        else:
            why = "; ".join(
                f"{e['code']}: {e['message']}" for e in answer.body.get("errors", [])
            ) or str(answer.body.get("code", ""))
            message = {"error": f"{said}: refused again ({why})"}
        return RedirectResponse(f"/ui/postbacks/{answer.ledger_id}?{urlencode(message)}", 303)

    async def deliveries(request: Request, session: Session) -> Response:
        return await listing(request, session, "deliveries", "deliveries.html")

    async def delivery(request: Request, session: Session) -> Response:
        """One outbound postback: its state and every attempt (URL, answer, latency,
        error), a URL's password hidden from a read session as the API hides it."""
        did = _id(request)
        row, attempts = await app.store.delivery_with_attempts(did)
        if row is None:
            raise NotFoundError(f"delivery {did} does not exist")
        shown = PRESENTERS["deliveries"](row, "")
        shown["attempts"] = [attempt(a) for a in attempts]
        return ui.render(
            request,
            "delivery.html",
            session,
            d=redact(shown, Caller(session.actor, session.role)),
        )

    async def resend(request: Request, session: Session) -> Response:
        did = _id(request)
        await outbound_setup.resend_delivery(app.store, did)
        return RedirectResponse(f"/ui/deliveries/{did}?{urlencode({'done': 'queued'})}", 303)

    async def offers(request: Request, session: Session) -> Response:
        return await listing(request, session, "offers", "offers.html", 200)

    async def offer(request: Request, session: Session) -> Response:
        oid = _id(request)
        row = await app.store.get_row("offers", oid)
        if row is None:
            raise NotFoundError(f"offer {oid} does not exist")
        advertiser = await app.store.get_row("advertisers", row["advertiser_id"])
        assert advertiser is not None
        base = base_url(app, request)
        page = await app.store.list_rows(
            "integration_tests", {"offer_id": oid}, None, None, 20, None
        )
        tests = [await integration.describe(app.store, base, t, session.admin) for t in page.items]
        links = await app.store.list_rows("links", {"offer_id": oid}, None, None, 200, None)
        rules = await app.store.list_rows(  # in force: what an affiliate is paid but the payout
            "commission_rules",
            {"offer_id": oid},
            None,
            None,
            200,
            None,
            nulls={"archived_at": True},
        )
        shown = PRESENTERS["offers"](row, base)
        return ui.render(
            request,
            "offer.html",
            session,
            o=shown,
            advertiser=PRESENTERS["advertisers"](advertiser, base),
            postback_url=integration.postback_template(base, advertiser, reveal=session.admin),
            instructions=integration.instructions(advertiser),
            fallback_url=app.settings.fallback_url,
            tests=tests,
            links=[PRESENTERS["links"](r, base) for r in links.items if not r["is_test"]],
            rules=[PRESENTERS["commission_rules"](r, base) for r in rules.items],
            affiliate_caps=await app.store.affiliate_caps(oid),
            caps_reached=await caps.reached_today(app.store, oid),
            # refreshed while a test's postback can still come: its click test made a
            # RefID, and the offer can serve again (not archived)
            waiting=shown["status"] != "archived"
            and any(
                t["conversion_test"]["status"] == integration.PENDING and t["refid"] for t in tests
            ),
        )

    async def start_test(request: Request, session: Session) -> Response:
        oid = _id(request)
        await integration.start(app.store, app.tracker, oid, None, app.probe)
        return RedirectResponse(f"/ui/offers/{oid}?{urlencode({'done': 'test started'})}", 303)

    async def rerun_test(request: Request, session: Session) -> Response:
        test_id = _id(request)
        await integration.rerun(app.store, app.tracker, test_id, app.probe)
        row = await app.store.get_row("integration_tests", test_id)
        assert row is not None
        done = urlencode({"done": f"test {test_id} run again"})
        return RedirectResponse(f"/ui/offers/{row['offer_id']}?{done}", 303)

    return [
        Route("/ui/conversions", ui.page(conversions)),
        Route("/ui/conversions/{id}", ui.page(conversion)),
        Route(
            "/ui/conversions/{id}/status",
            ui.page(change_status, form=True, admin=True),
            methods=["POST"],
        ),
        Route("/ui/postbacks", ui.page(postbacks)),
        Route("/ui/postbacks/{id}", ui.page(postback)),
        Route(
            "/ui/postbacks/{id}/replay", ui.page(replay, form=True, admin=True), methods=["POST"]
        ),
        Route("/ui/deliveries", ui.page(deliveries)),
        Route("/ui/deliveries/{id}", ui.page(delivery)),
        Route(
            "/ui/deliveries/{id}/resend",
            ui.page(resend, form=True, admin=True),
            methods=["POST"],
        ),
        Route("/ui/offers", ui.page(offers)),
        Route("/ui/offers/{id}", ui.page(offer)),
        Route(
            "/ui/offers/{id}/integration-tests",
            ui.page(start_test, form=True, admin=True),
            methods=["POST"],
        ),
        Route(
            "/ui/integration-tests/{id}/rerun",
            ui.page(rerun_test, form=True, admin=True),
            methods=["POST"],
        ),
    ]


def _id(request: Request) -> int:
    raw = request.path_params["id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise NotFoundError(f"{raw!r} is not an id")
    return int(raw)
