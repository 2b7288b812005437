"""Admin endpoints for outbound postbacks: per-offer overrides and the delivery log."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from clickback import outbound_http
from clickback.domain import outbound_setup
from clickback.errors import NotFoundError
from clickback.web.http import Caller, Endpoint, int_param, read_json, redact, whole_list
from clickback.web.present import PRESENTERS, attempt, json_response, offer_postback

if TYPE_CHECKING:
    from clickback.web.app import ClickbackApp


def endpoints(app: ClickbackApp) -> list[Endpoint]:
    async def check_url(url: str) -> None:
        await outbound_http.check_destination(url, app.settings.outbound_allow_private)

    async def read_delivery(request: Request, caller: Caller) -> Response:
        delivery_id = int_param(request)
        row, attempts = await app.store.delivery_with_attempts(delivery_id)
        if row is None or caller.affiliate_id not in (None, row["affiliate_id"]):
            # another affiliate's, to an affiliate token: as an unknown id
            raise NotFoundError(f"delivery {delivery_id} does not exist")
        body = PRESENTERS["deliveries"](row, "")
        body["attempts"] = [attempt(a) for a in attempts]
        return json_response(redact(body, caller))

    async def resend(request: Request, caller: Caller) -> Response:
        await outbound_setup.resend_delivery(app.store, int_param(request))
        return await read_delivery(request, caller)

    async def put_override(request: Request, caller: Caller) -> Response:
        offer_id, affiliate_id = int_param(request), int_param(request, "affiliate_id")
        body = await read_json(request)
        await outbound_setup.set_offer_postback(app.store, offer_id, affiliate_id, body, check_url)
        await app.catalog.reload()
        return await get_override(request, caller)

    async def get_override(request: Request, caller: Caller) -> Response:
        offer_id, affiliate_id = int_param(request), int_param(request, "affiliate_id")
        found = await outbound_setup.offer_postback(app.store, offer_id, affiliate_id)
        return json_response(redact(offer_postback(found), caller))

    async def delete_override(request: Request, caller: Caller) -> Response:
        offer_id, affiliate_id = int_param(request), int_param(request, "affiliate_id")
        await outbound_setup.remove_offer_postback(app.store, offer_id, affiliate_id)
        await app.catalog.reload()
        return Response(status_code=204)

    async def list_overrides(request: Request, caller: Caller) -> Response:
        whole_list(request, "every override of the offer")
        rows = await outbound_setup.offer_postbacks(app.store, int_param(request))
        items = [redact(offer_postback(r), caller) for r in rows]
        return json_response({"items": items, "next_cursor": None})

    tags = ("outbound postbacks",)
    override = "/api/v1/offers/{id}/postbacks/{affiliate_id}"
    return [
        Endpoint(
            "PUT",
            override,
            put_override,
            "Set an offer+affiliate outbound postback (overrides the affiliate's)",
            write=True,
            body="OfferPostbackSet",
            response="OfferPostback",
            tags=tags,
        ),
        Endpoint(
            "GET",
            override,
            get_override,
            "Read an offer+affiliate outbound postback override (404: none)",
            response="OfferPostback",
            tags=tags,
        ),
        Endpoint(
            "DELETE",
            override,
            delete_override,
            "Remove an override: the affiliate's own postback applies again",
            write=True,
            status=204,
            tags=tags,
        ),
        Endpoint(
            "GET",
            "/api/v1/offers/{id}/postbacks",
            list_overrides,
            "List an offer's outbound postback overrides",
            response="OfferPostbackList",
            tags=tags,
        ),
        Endpoint(
            "GET",
            "/api/v1/deliveries/{id}",
            read_delivery,
            "Read a delivery with every attempt",
            response="DeliveryDetail",
            affiliate=True,
            tags=tags,
        ),
        Endpoint(
            "POST",
            "/api/v1/deliveries/{id}/resend",
            resend,
            "Send a delivery again (same Idempotency-Key); 409 while an attempt is in flight,"
            " while the affiliate's postback is disabled, or once a later delivery of its"
            " conversion reached the affiliate",
            write=True,
            errors=(400, 404, 409),
            response="DeliveryDetail",
            tags=tags,
        ),
    ]
