"""The admin API under `/api/v1` (Starlette), plus `/healthz` and `/readyz`.

Off the hot path, so it may be richer: every call needs `Authorization: Bearer <token>`
(the `CLICKBACK_ADMIN_TOKEN` setting, or a token from `clickback token create`), and
every list follows one contract: `items`/`next_cursor`, `limit`, `cursor`, exact-value
filters, `since`/`until`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from clickback.domain import admin, integration, ledger
from clickback.domain.listing import DEFAULT_LIMIT, LISTS, MAX_LIMIT
from clickback.errors import AuthError, InputError, NotFoundError, PermissionDeniedError
from clickback.web.errors import HANDLERS
from clickback.web.present import PRESENTERS, json_response, parse_time

if TYPE_CHECKING:
    from clickback.web.app import ClickbackApp

Handler = Callable[[Request], Awaitable[Response]]

CREATORS = {
    "advertisers": admin.create_advertiser,
    "offers": admin.create_offer,
    "affiliates": admin.create_affiliate,
    "links": admin.create_link,
}


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def base_url(app: ClickbackApp, request: Request) -> str:
    return app.settings.public_url or str(request.base_url).rstrip("/")


def build_api(app: ClickbackApp) -> Starlette:
    async def authorize(request: Request, write: bool) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthError("send `Authorization: Bearer <token>`", code="token_missing")
        configured = app.settings.admin_token
        if configured and hmac.compare_digest(token.encode(), configured.encode()):
            return
        row = await app.store.find_token(hash_token(token))
        if row is None:
            raise AuthError("this token is not valid (unknown or revoked)", code="token_invalid")
        if write and row["role"] != "admin":
            raise PermissionDeniedError("this token may only read", code="read_only_token")

    def guarded(write: bool, handler: Handler) -> Handler:
        async def run(request: Request) -> Response:
            await authorize(request, write)
            return await handler(request)

        return run

    async def read_json(request: Request) -> dict[str, Any]:
        try:
            data = orjson.loads(await request.body() or b"{}")
        except orjson.JSONDecodeError:
            raise InputError("the body must be a JSON object", code="invalid_json") from None
        if not isinstance(data, dict):
            raise InputError("the body must be a JSON object", code="invalid_json")
        return data

    async def show(request: Request, table: str, row_id: Any) -> dict[str, Any]:
        row = await app.store.get_row(table, row_id)
        if row is None:
            raise NotFoundError(f"{table[:-1]} {row_id} does not exist")
        return PRESENTERS[table](row, base_url(app, request))

    def lister(table: str) -> Handler:
        spec = LISTS[table]

        async def list_(request: Request) -> Response:
            filters: dict[str, Any] = {}
            since = until = None
            limit = DEFAULT_LIMIT
            cursor = None
            for name, value in request.query_params.items():
                if name == "limit":
                    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
                        raise InputError(
                            f"`limit` must be 1 to {MAX_LIMIT}", code="invalid_limit", field="limit"
                        )
                    limit = int(value)
                elif name == "cursor":
                    cursor = value or None
                elif name == "since":
                    since = parse_time(value, "since")
                elif name == "until":
                    until = parse_time(value, "until")
                elif name in spec.filters:
                    kind = spec.filters[name]
                    if kind is int:
                        if name.startswith("is_") and value in ("true", "false"):
                            value = "1" if value == "true" else "0"
                        try:
                            filters[name] = int(value)
                        except ValueError:
                            raise InputError(
                                f"`{name}` must be an integer", code="invalid_filter", field=name
                            ) from None
                    else:
                        filters[name] = value
                else:
                    raise InputError(
                        f"unknown filter `{name}`; {table} filter by: "
                        + ", ".join(sorted(spec.filters)),
                        code="unknown_filter",
                        field=name,
                    )
            page = await app.store.list_rows(table, filters, since, until, limit, cursor)
            present = PRESENTERS[table]
            base = base_url(app, request)
            return json_response(
                {"items": [present(r, base) for r in page.items], "next_cursor": page.next_cursor}
            )

        return list_

    def creator(table: str) -> Handler:
        async def create(request: Request) -> Response:
            new_id = await CREATORS[table](app.store, await read_json(request))
            await app.catalog.reload()
            return json_response(await show(request, table, new_id), 201)

        return create

    def reader(table: str) -> Handler:
        async def read(request: Request) -> Response:
            raw = request.path_params["id"]
            key: Any = raw
            if LISTS[table].filters[LISTS[table].key] is int:
                if not raw.isdigit():
                    raise NotFoundError(f"{table[:-1]} {raw} does not exist")
                key = int(raw)
            return json_response(await show(request, table, key))

        return read

    async def patch_offer(request: Request) -> Response:
        offer_id = int(request.path_params["id"])
        await admin.update_offer(app.store, offer_id, await read_json(request))
        await app.catalog.reload()
        return json_response(await show(request, "offers", offer_id))

    def int_param(request: Request, name: str = "id") -> int:
        raw = request.path_params[name]
        if not raw.isdigit():
            raise NotFoundError(f"{raw} is not an id")
        return int(raw)

    async def present_test(request: Request, row: dict[str, Any]) -> dict[str, Any]:
        return await integration.describe(app.store, base_url(app, request), row)

    async def start_test(request: Request) -> Response:
        body = await read_json(request)
        affiliate = body.get("affiliate_id")
        if affiliate is not None and (
            isinstance(affiliate, bool) or not isinstance(affiliate, int)
        ):
            raise InputError(
                "`affiliate_id` must be an integer id", code="invalid_id", field="affiliate_id"
            )
        test_id = await integration.start(
            app.store, app.tracker, int_param(request), affiliate, app.probe
        )
        row = await app.store.get_row("integration_tests", test_id)
        assert row is not None
        return json_response(await present_test(request, row), 201)

    async def list_tests(request: Request) -> Response:
        offer_id = int_param(request)
        if await app.store.get_row("offers", offer_id) is None:
            raise NotFoundError(f"offer {offer_id} does not exist")
        page = await app.store.list_rows(
            "integration_tests", {"offer_id": offer_id}, None, None, MAX_LIMIT, None
        )
        items = [await present_test(request, r) for r in page.items]
        return json_response({"items": items, "next_cursor": None})

    async def get_test(request: Request) -> Response:
        row = await app.store.get_row("integration_tests", int_param(request))
        if row is None:
            raise NotFoundError(f"integration test {request.path_params['id']} does not exist")
        return json_response(await present_test(request, row))

    async def delete_test(request: Request) -> Response:
        await integration.remove(app.store, app.tracker, int_param(request))
        return Response(status_code=204)

    async def rerun_test(request: Request) -> Response:
        test_id = int_param(request)
        await integration.rerun(app.store, app.tracker, test_id, app.probe)
        row = await app.store.get_row("integration_tests", test_id)
        assert row is not None
        return json_response(await present_test(request, row))

    async def postback_url(request: Request) -> Response:
        offer = await show(request, "offers", int_param(request))
        advertiser = await app.store.get_row("advertisers", offer["advertiser_id"])
        assert advertiser is not None
        return json_response(
            {
                "offer_id": offer["id"],
                "postback_url": integration.postback_template(base_url(app, request), advertiser),
                "methods": ["GET", "POST"],
                "required": ["refid", "orderamount", "ordernumber"]
                + (["token"] if advertiser["require_token"] else []),
                "optional": ["coupon", "currency", "geo", "commissionid"],
                "instructions": integration.POSTBACK_INSTRUCTIONS,
            }
        )

    async def replay_postback(request: Request) -> Response:
        answer = await ledger.replay(app.store, app.tracker, int_param(request))
        row = await app.store.get_row("postbacks", answer.ledger_id)
        assert row is not None
        return json_response(
            {
                "replayed": int_param(request),
                "answer": answer.body,
                "postback": PRESENTERS["postbacks"](row, base_url(app, request)),
            }
        )

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        try:
            ok = app.ready and await app.store.ping()
        except Exception:
            ok = False
        return PlainTextResponse("ready" if ok else "not ready", 200 if ok else 503)

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        _route(
            "/api/v1/offers/{id}/integration-tests",
            [("POST", guarded(True, start_test)), ("GET", guarded(False, list_tests))],
        ),
        _route(
            "/api/v1/integration-tests/{id}",
            [("GET", guarded(False, get_test)), ("DELETE", guarded(True, delete_test))],
        ),
        _route("/api/v1/integration-tests/{id}/rerun", [("POST", guarded(True, rerun_test))]),
        _route("/api/v1/offers/{id}/postback-url", [("GET", guarded(False, postback_url))]),
        _route("/api/v1/postbacks/{id}/replay", [("POST", guarded(True, replay_postback))]),
    ]
    for table in LISTS:
        if table == "integration_tests":
            continue  # listed per offer, above
        path = f"/api/v1/{table}"
        methods: list[tuple[str, Handler]] = [("GET", guarded(False, lister(table)))]
        if table in CREATORS:
            methods.append(("POST", guarded(True, creator(table))))
        routes.append(_route(path, methods))
        item = [("GET", guarded(False, reader(table)))]
        if table == "offers":
            item.append(("PATCH", guarded(True, patch_offer)))
        routes.append(_route(f"{path}/{{id}}", item))
    return Starlette(routes=routes, exception_handlers=HANDLERS)


def _route(path: str, methods: list[tuple[str, Handler]]) -> Route:
    by_method = dict(methods)

    async def dispatch(request: Request) -> Response:
        handler = by_method.get(request.method)
        if handler is None:
            raise InputError(f"{request.method} is not allowed here", code="method_not_allowed")
        return await handler(request)

    return Route(
        path, dispatch, methods=[*by_method, "HEAD"] if "GET" in by_method else list(by_method)
    )
