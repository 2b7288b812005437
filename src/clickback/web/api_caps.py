"""Admin endpoints for an affiliate's own daily conversion cap on an offer (the offer's
own `daily_cap` is one of its fields)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from clickback.domain import caps
from clickback.web.http import Caller, Endpoint, int_param, read_json, whole_list
from clickback.web.present import affiliate_cap, json_response

if TYPE_CHECKING:
    from clickback.web.app import ClickbackApp


def endpoints(app: ClickbackApp) -> list[Endpoint]:
    async def put_cap(request: Request, caller: Caller) -> Response:
        offer_id, affiliate_id = int_param(request), int_param(request, "affiliate_id")
        await caps.set_affiliate_cap(app.store, offer_id, affiliate_id, await read_json(request))
        return await get_cap(request, caller)

    async def get_cap(request: Request, caller: Caller) -> Response:
        offer_id, affiliate_id = int_param(request), int_param(request, "affiliate_id")
        return json_response(
            affiliate_cap(await caps.affiliate_cap(app.store, offer_id, affiliate_id))
        )

    async def delete_cap(request: Request, caller: Caller) -> Response:
        offer_id, affiliate_id = int_param(request), int_param(request, "affiliate_id")
        await caps.remove_affiliate_cap(app.store, offer_id, affiliate_id)
        return Response(status_code=204)

    async def list_caps(request: Request, caller: Caller) -> Response:
        whole_list(request, "every affiliate cap of the offer")
        rows = await caps.affiliate_caps(app.store, int_param(request))
        return json_response({"items": [affiliate_cap(r) for r in rows], "next_cursor": None})

    tags = ("offers",)
    one = "/api/v1/offers/{id}/caps/{affiliate_id}"
    return [
        Endpoint(
            "PUT",
            one,
            put_cap,
            "Set an affiliate's own daily conversion cap on an offer",
            write=True,
            body="AffiliateCapSet",
            response="AffiliateCap",
            errors=(400, 404, 409),  # 409: the offer or affiliate is archived
            tags=tags,
        ),
        Endpoint(
            "GET",
            one,
            get_cap,
            "Read an affiliate's daily cap on an offer (404: none)",
            response="AffiliateCap",
            tags=tags,
        ),
        Endpoint(
            "DELETE",
            one,
            delete_cap,
            "Remove an affiliate's daily cap on an offer (the offer's own still applies)",
            write=True,
            status=204,
            tags=tags,
        ),
        Endpoint(
            "GET",
            "/api/v1/offers/{id}/caps",
            list_caps,
            "List an offer's per-affiliate daily caps",
            response="AffiliateCapList",
            tags=tags,
        ),
    ]
