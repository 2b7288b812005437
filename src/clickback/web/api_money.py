"""Admin endpoints for money: the conversion lifecycle (one by one and by CSV), commission
rules, exchange rates, base-currency totals, CSV exports, and API tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from clickback.domain import admin, fx, lifecycle, rules
from clickback.domain.money import format_minor
from clickback.domain.timefmt import iso
from clickback.domain.tokens import NETWORK_FIELDS, scoped, token_terms
from clickback.errors import InputError, NotFoundError
from clickback.web.export import csv_pages
from clickback.web.http import (
    Caller,
    Endpoint,
    base_url,
    hash_token,
    int_param,
    keyed_list_query,
    list_query,
    read_json,
)
from clickback.web.present import PRESENTERS, json_response

if TYPE_CHECKING:
    from clickback.web.app import ClickbackApp

MAX_CSV = 10 * 1024 * 1024


async def read_text(request: Request) -> str:
    body = await request.body()
    if len(body) > MAX_CSV:
        raise InputError(f"the file is larger than {MAX_CSV} bytes", code="too_large")
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError("the file must be UTF-8 text", code="invalid_encoding") from None


async def _chain(first: str, rest: AsyncIterator[tuple[str, int]]) -> AsyncIterator[str]:
    yield first
    async for text, _ in rest:
        yield text


def export_limit(raw: str | None) -> int | None:
    """An export's `limit`: the most rows it writes (None: every matching row). Not a
    page size, so not bounded as a list's is."""
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18 or int(raw) < 1:
        raise InputError(
            "`limit` must be a whole number from 1: the most rows the export writes",
            code="invalid_limit",
            field="limit",
        )
    return int(raw)


def endpoints(app: ClickbackApp) -> list[Endpoint]:
    async def read_conversion(request: Request, caller: Caller) -> Response:
        conversion_id = int_param(request)
        row, events = await app.store.conversion_with_history(conversion_id)
        if row is None:
            raise NotFoundError(f"conversion {conversion_id} does not exist")
        body = PRESENTERS["conversions"](row, base_url(app, request))
        body["history"] = [
            {
                "from": e["from_status"],
                "to": e["to_status"],
                "reason": e["reason"],
                "actor": e["actor"],
                "at": iso(e["created_at"]),
            }
            for e in events
        ]
        return json_response(body)

    async def change_status(request: Request, caller: Caller) -> Response:
        body = await read_json(request)
        status = body.get("status")
        if not isinstance(status, str):
            raise InputError(
                "`status` is required"
                if status is None
                else f"`status` must be a string, one of {', '.join(lifecycle.STATUSES)}",
                code="invalid_status",
                field="status",
            )
        await lifecycle.change_status(
            app.store,
            int_param(request),
            status,
            body.get("reason"),
            caller.actor,
            app.catalog.delivery_state,
        )
        return await read_conversion(request, caller)

    async def bulk_status(request: Request, caller: Caller) -> Response:
        lines = await lifecycle.apply_csv(
            app.store,
            int_param(request),
            await read_text(request),
            caller.actor,
            app.catalog.delivery_state,
        )
        counts = {k: sum(line.result == k for line in lines) for k in ("changed", "unchanged")}
        return json_response(
            {
                **counts,
                "errors": sum(line.result == "error" for line in lines),
                "lines": [line.as_dict() for line in lines],
            }
        )

    async def totals(request: Request, caller: Caller) -> Response:
        q = list_query("conversions", request.query_params)
        if q.cursor or q.nulls or q.limit != 100 or q.ascending or q.flag:
            raise InputError("totals take filters and since/until only", code="unknown_filter")
        base = app.settings.base_currency
        out: dict[str, Any] = {}
        # test conversions (integration tests) are nobody's money, as in the reports;
        # `is_test=1` asks for them
        filters = {"is_test": 0, **q.filters}
        for r in await app.store.conversion_totals(filters, q.since, q.until):
            out[r["status"]] = {
                "conversions": r["conversions"],
                "base_amount": format_minor(int(r["base_amount"]), base),
                "base_commission": format_minor(int(r["base_commission"]), base),
                "missing_rate": int(r["missing_rate"]),
            }
        approved = out.get("approved", {}).get("base_commission", format_minor(0, base))
        return json_response({"base_currency": base, "by_status": out, "payable": approved})

    def exporter(table: str) -> Any:
        async def handle(request: Request, caller: Caller) -> Response:
            q = list_query(table, request.query_params, extra=frozenset({"limit"}))
            pages = csv_pages(
                app.store,
                table,
                base_url(app, request),
                scoped(q.filters, caller.affiliate_id),
                q.since,
                q.until,
                limit=export_limit(request.query_params.get("limit")),
                cursor=q.cursor,
                ascending=q.ascending,
                flag=q.flag,
                omit=NETWORK_FIELDS if caller.affiliate_id is not None else frozenset(),
            )
            # the first page read before the answer starts: a bad cursor is a 400, not a
            # CSV broken off after its status line
            first, _ = await anext(pages)
            return StreamingResponse(
                _chain(first, pages),
                media_type="text/csv; charset=utf-8",
                headers={"content-disposition": f'attachment; filename="{table}.csv"'},
            )

        return handle

    async def create_rule(request: Request, caller: Caller) -> Response:
        rule_id = await rules.create_rule(
            app.store, int_param(request), await read_json(request), app.settings.base_currency
        )
        await app.catalog.reload()
        row = await app.store.get_row("commission_rules", rule_id)
        assert row is not None
        return json_response(PRESENTERS["commission_rules"](row, ""), 201)

    async def list_rules(request: Request, caller: Caller) -> Response:
        offer_id = int_param(request)
        q = list_query("commission_rules", request.query_params)
        page = await app.store.list_rows(
            "commission_rules",
            {**q.filters, "offer_id": offer_id},  # the path's offer
            q.since,
            q.until,
            q.limit,
            q.cursor,
            nulls=q.nulls or {"archived_at": True},  # the rules in force, unless asked
            ascending=q.ascending,
        )
        items = [PRESENTERS["commission_rules"](r, "") for r in page.items]
        return json_response({"items": items, "next_cursor": page.next_cursor})

    async def archive_rule(request: Request, caller: Caller) -> Response:
        rule_id = int_param(request)
        await admin.archive(app.store, "commission_rules", rule_id)
        await app.catalog.reload()
        row = await app.store.get_row("commission_rules", rule_id)
        assert row is not None
        return json_response(PRESENTERS["commission_rules"](row, ""))

    async def import_rates(request: Request, caller: Caller) -> Response:
        base = app.settings.base_currency
        rows = fx.parse_rates(await read_text(request), base)
        done = await fx.import_rates(app.store, rows, base)
        await app.catalog.reload()
        return json_response(
            {
                "stored": len(rows),
                "valued": done.valued,
                "waiting": done.waiting,
                "too_large": done.too_large,
                "replaced": [
                    {"currency": c, "date": d, "was": was, "rate": now}
                    for c, d, was, now in done.replaced
                ],
                "kept_earlier_rate": [{"currency": c, "from": d} for c, d in done.kept_earlier],
                "note": done.note(),
            }
        )

    async def list_rates(request: Request, caller: Caller) -> Response:
        filters, limit, cursor = keyed_list_query("rates", request.query_params, ("currency",))
        page = await app.store.list_rates(filters.get("currency"), limit, cursor)
        items = [
            {"currency": r["currency"], "date": r["day"], "rate": r["rate"]} for r in page.items
        ]
        return json_response(
            {
                "base_currency": app.settings.base_currency,
                "items": items,
                "next_cursor": page.next_cursor,
            }
        )

    async def create_token(request: Request, caller: Caller) -> Response:
        name, role, affiliate_id = await token_terms(app.store, await read_json(request))
        token = admin.new_token()
        token_id = await app.store.create_token(name, hash_token(token), role, affiliate_id)
        return json_response(
            {
                "id": token_id,
                "name": name,
                "role": role,
                "affiliate_id": affiliate_id,
                "token": token,
            },
            201,
        )

    async def list_tokens(request: Request, caller: Caller) -> Response:
        q = list_query("api_tokens", request.query_params)
        page = await app.store.list_rows(
            "api_tokens", q.filters, q.since, q.until, q.limit, q.cursor, ascending=q.ascending
        )
        items = [PRESENTERS["api_tokens"](t, "") for t in page.items]
        return json_response({"items": items, "next_cursor": page.next_cursor})

    async def revoke_token(request: Request, caller: Caller) -> Response:
        if not await app.store.revoke_token(int_param(request)):
            raise NotFoundError(f"no active token {request.path_params['id']}")
        return Response(status_code=204)

    conv, money_tags = ("conversions",), ("money",)
    return [
        Endpoint(
            "GET",
            "/api/v1/conversions/totals",
            totals,
            "Conversions and base-currency sums per status",
            response="Totals",
            listing="conversions",
            tags=conv,
        ),
        Endpoint(
            "GET",
            "/api/v1/conversions/export",
            exporter("conversions"),
            "Conversions as CSV (streamed)",
            listing="conversions",
            produces="text/csv",
            affiliate=True,
            tags=conv,
        ),
        Endpoint(
            "GET",
            "/api/v1/clicks/export",
            exporter("clicks"),
            "Clicks as CSV (streamed)",
            listing="clicks",
            produces="text/csv",
            affiliate=True,
            tags=("clicks",),
        ),
        Endpoint(
            "GET",
            "/api/v1/conversions/{id}",
            read_conversion,
            "Read a conversion with its status history",
            response="ConversionDetail",
            tags=conv,
        ),
        Endpoint(
            "POST",
            "/api/v1/conversions/{id}/status",
            change_status,
            "Approve, reject or reverse a conversion",
            write=True,
            body="StatusChange",
            response="ConversionDetail",
            errors=(400, 404, 409),
            tags=conv,
        ),
        Endpoint(
            "POST",
            "/api/v1/advertisers/{id}/conversion-statuses",
            bulk_status,
            "Apply an advertiser's validation CSV (ordernumber,status,reason)",
            write=True,
            body="csv",
            response="BulkStatus",
            tags=conv,
        ),
        Endpoint(
            "POST",
            "/api/v1/offers/{id}/rules",
            create_rule,
            "Add a commission rule (by commissionid and/or affiliate)",
            write=True,
            body="RuleCreate",
            response="Rule",
            status=201,
            errors=(400, 404, 409),  # 409: the offer or affiliate is archived
            tags=money_tags,
        ),
        Endpoint(
            "GET",
            "/api/v1/offers/{id}/rules",
            list_rules,
            "List an offer's rules (those in force unless `archived` is given)",
            response="RuleList",
            listing="commission_rules",
            tags=money_tags,
        ),
        Endpoint(
            "DELETE",
            "/api/v1/rules/{id}",
            archive_rule,
            "Archive a commission rule",
            write=True,
            response="Rule",
            tags=money_tags,
        ),
        Endpoint(
            "POST",
            "/api/v1/rates",
            import_rates,
            "Load exchange rates (CSV date,currency,rate); values waiting conversions",
            write=True,
            body="csv",
            response="RatesImported",
            tags=money_tags,
        ),
        Endpoint(
            "GET",
            "/api/v1/rates",
            list_rates,
            "List exchange rates, by currency and date",
            response="RateList",
            query=("limit", "cursor", "currency"),
            tags=money_tags,
        ),
        Endpoint(
            "POST",
            "/api/v1/tokens",
            create_token,
            "Create an API token (shown once)",
            write=True,
            body="TokenCreate",
            response="TokenCreated",
            status=201,
            errors=(400, 404, 409),
            tags=("tokens",),
        ),
        Endpoint(
            "GET",
            "/api/v1/tokens",
            list_tokens,
            "List API tokens",
            write=True,
            response="TokenList",
            listing="api_tokens",
            tags=("tokens",),
        ),
        Endpoint(
            "DELETE",
            "/api/v1/tokens/{id}",
            revoke_token,
            "Revoke an API token",
            write=True,
            status=204,
            tags=("tokens",),
        ),
    ]
