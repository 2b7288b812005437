"""Admin endpoints for proving an integration: the two tests, the postback URL, replay."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from clickback.domain import integration, ledger
from clickback.errors import InputError, NotFoundError
from clickback.web.http import Caller, Endpoint, base_url, int_param, list_query, read_json
from clickback.web.present import PRESENTERS, json_response

if TYPE_CHECKING:
    from clickback.web.app import ClickbackApp


def endpoints(app: ClickbackApp) -> list[Endpoint]:
    async def present(request: Request, row: dict[str, Any], caller: Caller) -> dict[str, Any]:
        reveal = caller.role == "admin"  # the advertiser's token (`http.redact`)
        return await integration.describe(app.store, base_url(app, request), row, reveal)

    async def read_test(request: Request, test_id: int, caller: Caller) -> Response:
        row = await app.store.get_row("integration_tests", test_id)
        if row is None:
            raise NotFoundError(f"integration test {test_id} does not exist")
        return json_response(await present(request, row, caller))

    async def start_test(request: Request, caller: Caller) -> Response:
        body = await read_json(request)
        affiliate = body.get("affiliate_id")
        if affiliate is not None and (
            isinstance(affiliate, bool) or not isinstance(affiliate, int)
        ):
            raise InputError(
                "`affiliate_id` must be an integer id", code="invalid_id", field="affiliate_id"
            )
        simulate = body.get("simulate", False)
        if not isinstance(simulate, bool):
            raise InputError(
                "`simulate` must be true or false", code="invalid_bool", field="simulate"
            )
        test_id = await integration.start(
            app.store, app.tracker, int_param(request), affiliate, app.probe
        )
        if simulate:  # the test postback too, as the advertiser's server would fire it
            await integration.simulate(app.store, app.tracker, test_id)
        response = await read_test(request, test_id, caller)
        response.status_code = 201
        return response

    async def list_tests(request: Request, caller: Caller) -> Response:
        offer_id = int_param(request)
        if await app.store.get_row("offers", offer_id) is None:
            raise NotFoundError(f"offer {offer_id} does not exist")
        q = list_query("integration_tests", request.query_params)
        page = await app.store.list_rows(
            "integration_tests",
            {**q.filters, "offer_id": offer_id},  # the path's offer
            q.since,
            q.until,
            q.limit,
            q.cursor,
            ascending=q.ascending,
        )
        items = [await present(request, r, caller) for r in page.items]
        return json_response({"items": items, "next_cursor": page.next_cursor})

    async def get_test(request: Request, caller: Caller) -> Response:
        return await read_test(request, int_param(request), caller)

    async def delete_test(request: Request, caller: Caller) -> Response:
        await integration.remove(app.store, app.tracker, int_param(request))
        return Response(status_code=204)

    async def rerun_test(request: Request, caller: Caller) -> Response:
        test_id = int_param(request)
        await integration.rerun(app.store, app.tracker, test_id, app.probe)
        return await read_test(request, test_id, caller)

    async def postback_url(request: Request, caller: Caller) -> Response:
        offer = await app.store.get_row("offers", int_param(request))
        if offer is None:
            raise NotFoundError(f"offer {request.path_params['id']} does not exist")
        advertiser = await app.store.get_row("advertisers", offer["advertiser_id"])
        assert advertiser is not None
        signed = integration.signature_required(advertiser)
        return json_response(
            {
                "offer_id": offer["id"],
                "postback_url": integration.postback_template(
                    base_url(app, request), advertiser, reveal=caller.role == "admin"
                ),
                "methods": ["GET", "POST"],
                "required": ["refid", "orderamount", "ordernumber"]
                + (["token"] if advertiser["require_token"] else [])
                + (["ts", "sig"] if signed else []),
                "optional": ["coupon", "currency", "geo", "commissionid"],
                "signature_required": signed,
                "instructions": integration.instructions(advertiser),
            }
        )

    async def replay(request: Request, caller: Caller) -> Response:
        original = int_param(request)
        answer = await ledger.replay(app.store, app.tracker, original)
        row = await app.store.get_row("postbacks", answer.ledger_id)
        assert row is not None
        return json_response(
            {
                "replayed": original,
                "answer": answer.body,
                "postback": PRESENTERS["postbacks"](row, base_url(app, request)),
            }
        )

    tests = "/api/v1/integration-tests/{id}"
    tags = ("integration tests",)
    return [
        Endpoint(
            "POST",
            "/api/v1/offers/{id}/integration-tests",
            start_test,
            "Start the two integration tests for an offer",
            write=True,
            body="IntegrationTestStart",
            response="IntegrationTest",
            status=201,
            errors=(400, 404, 409),  # 409: the offer or affiliate is archived
            tags=tags,
        ),
        Endpoint(
            "GET",
            "/api/v1/offers/{id}/integration-tests",
            list_tests,
            "List an offer's integration tests",
            response="IntegrationTestList",
            listing="integration_tests",
            tags=tags,
        ),
        Endpoint(
            "GET",
            tests,
            get_test,
            "Read an integration test and both results",
            response="IntegrationTest",
            tags=tags,
        ),
        Endpoint(
            "DELETE",
            tests,
            delete_test,
            "Remove an integration test (its link stops)",
            write=True,
            status=204,
            tags=tags,
        ),
        Endpoint(
            "POST",
            tests + "/rerun",
            rerun_test,
            "Re-run an integration test",
            write=True,
            response="IntegrationTest",
            tags=tags,
        ),
        Endpoint(
            "GET",
            "/api/v1/offers/{id}/postback-url",
            postback_url,
            "The postback URL to give the offer's advertiser",
            response="PostbackUrl",
            tags=("offers",),
        ),
        Endpoint(
            "POST",
            "/api/v1/postbacks/{id}/replay",
            replay,
            "Re-decide a stored postback (never counts an order twice)",
            write=True,
            response="Replay",
            tags=("postbacks",),
        ),
    ]
