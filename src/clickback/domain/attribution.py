"""Deciding what a valid postback is worth: its click, window, offer state and commission.

Pure: it takes the parsed postback, what the RefID says about itself, and the cached
advertiser and offer, and returns either a conversion to store or the reason it is
refused. Dedupe of `ordernumber` is not decided here but by the store's unique
constraint, exactly, under concurrency.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from decimal import Decimal

from clickback.domain import money
from clickback.domain.models import (
    Advertiser,
    FieldError,
    Link,
    Offer,
    OfferStatus,
    Outcome,
    PayoutType,
)
from clickback.domain.ports import ConversionRow
from clickback.domain.postback import PostbackInput, check_precision
from clickback.domain.refid import RefIdInfo

DAY_US = 86_400_000_000

HTTP_STATUS = {
    Outcome.ACCEPTED: 200,
    Outcome.DUPLICATE: 200,
    Outcome.REJECTED: 400,
    Outcome.FORBIDDEN: 403,
    Outcome.UNKNOWN_REFID: 404,
    Outcome.EXPIRED_REFID: 422,
    Outcome.OFFER_PAUSED: 422,
}


@dataclass(frozen=True, slots=True)
class Refusal:
    outcome: Outcome
    errors: list[FieldError]


def unknown_refid() -> Refusal:
    return Refusal(
        Outcome.UNKNOWN_REFID,
        [FieldError("refid", "unknown_refid", "no click was tracked with this RefID")],
    )


def commission_for(offer: Offer, amount: Decimal, currency: str) -> tuple[int, str]:
    """The commission in minor units, and its currency, per the offer's payout."""
    if offer.payout_type is PayoutType.CPS:
        value = money.percent_of(amount, offer.payout_percent, currency)
        return money.to_minor(value, currency), currency
    return offer.payout_amount, offer.currency


def decide(
    inp: PostbackInput,
    info: RefIdInfo,
    link: Link | None,
    offer: Offer | None,
    advertiser: Advertiser | None,
    now_us: int,
) -> ConversionRow | Refusal:
    if link is None or offer is None or advertiser is None:
        return unknown_refid()
    if advertiser.require_token and not hmac.compare_digest(
        inp.token.encode(), advertiser.postback_token.encode()
    ):
        code = "token_missing" if not inp.token else "token_invalid"
        return Refusal(
            Outcome.FORBIDDEN,
            [FieldError("token", code, "this advertiser's postbacks need its postback token")],
        )
    if offer.status is not OfferStatus.ACTIVE:
        return Refusal(
            Outcome.OFFER_PAUSED,
            [FieldError("refid", "offer_paused", f"offer {offer.id} is paused")],
        )
    clicked_at = info.created_ms * 1000
    if now_us - clicked_at > offer.attribution_window_days * DAY_US:
        return Refusal(
            Outcome.EXPIRED_REFID,
            [
                FieldError(
                    "refid",
                    "expired_refid",
                    f"the click is older than the offer's {offer.attribution_window_days}-day "
                    "attribution window",
                )
            ],
        )
    currency = inp.currency or offer.currency
    precision = check_precision(inp.orderamount, currency)
    if precision is not None:
        return Refusal(Outcome.REJECTED, [precision])
    commission, commission_currency = commission_for(offer, inp.orderamount, currency)
    return ConversionRow(
        refid=inp.refid,
        offer_id=offer.id,
        affiliate_id=link.affiliate_id,
        advertiser_id=advertiser.id,
        link_id=link.id,
        ordernumber=inp.ordernumber,
        orderamount=money.to_minor(inp.orderamount, currency),
        currency=currency,
        commission=commission,
        commission_currency=commission_currency,
        coupon=inp.coupon,
        geo=inp.geo or "",
        commissionid=inp.commissionid,
        status="approved",
        created_at=now_us,
        clicked_at=clicked_at,
        is_test=int(link.is_test),
    )
