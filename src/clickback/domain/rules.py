"""Commission rules: an offer's payout for a `commissionid`, an affiliate, or both,
checked as an offer's payout is (`admin.offer_values`) and refused when a rule in force
already covers the same."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clickback.domain.admin import _check_base_value, _id, offer_values, require_live
from clickback.domain.ports import Store
from clickback.errors import ConflictError, InputError


async def _no_rule_alike(
    store: Store, offer_id: int, affiliate_id: int | None, commissionid: str
) -> None:
    """Refuses a rule for what a rule in force already covers (the same affiliate, or
    none, and the same commissionid): of two, the older would always apply, and the new
    payout never (a payout raised so would silently stay as it was)."""
    live = await store.list_rows(
        "commission_rules",
        {"offer_id": offer_id},
        None,
        None,
        1000,
        None,
        nulls={"archived_at": True},
    )
    same = [
        r["id"]
        for r in live.items
        if r["affiliate_id"] == affiliate_id and r["commissionid"] == commissionid
    ]
    if same:
        covers = f"commissionid `{commissionid}`" if commissionid else "no commissionid"
        covers += f", affiliate {affiliate_id}" if affiliate_id else ", any affiliate"
        raise ConflictError(
            f"offer {offer_id} has rule {same[0]} for this already ({covers}): archive it"
            f" first (DELETE /api/v1/rules/{same[0]}, `clickback rule archive {same[0]}`),"
            " then create the new one",
            code="rule_exists",
            field="commissionid",
        )


async def create_rule(
    store: Store, offer_id: int, values: Mapping[str, Any], base_currency: str = "USD"
) -> int:
    """A commission rule for an offer: by `commissionid`, by `affiliate_id`, or both;
    `base_currency` (the tracker's) for the bound on the payout's value in it."""
    await require_live(store, "offers", offer_id)
    offer = await store.get_row("offers", offer_id)
    assert offer is not None
    commissionid = values.get("commissionid") or ""
    if not isinstance(commissionid, str) or len(commissionid) > 255:
        raise InputError(
            "`commissionid` must be a string of at most 255 characters",
            code="invalid_commissionid",
            field="commissionid",
        )
    commissionid = commissionid.strip()  # as a postback's values are read
    affiliate_id = None
    if values.get("affiliate_id") is not None:
        affiliate_id = _id(values, "affiliate_id")
        await require_live(store, "affiliates", affiliate_id, "affiliate_id")
    if not commissionid and affiliate_id is None:
        raise InputError(
            "a rule needs a `commissionid`, an `affiliate_id`, or both",
            code="invalid_rule",
            field="commissionid",
        )
    payout = offer_values({**values, "currency": offer["currency"]}, partial=True)
    if "payout_type" not in payout:
        raise InputError(
            "`payout_type` is required: cpa, cps or cpl",
            code="invalid_payout_type",
            field="payout_type",
        )
    await _check_base_value(store, payout, offer["currency"], base_currency)
    await _no_rule_alike(store, offer_id, affiliate_id, commissionid)
    return await store.create_rule(
        {
            "offer_id": offer_id,
            "affiliate_id": affiliate_id,
            "commissionid": commissionid,
            "payout_type": payout["payout_type"],
            "payout_amount": payout["payout_amount"],
            "payout_percent": payout["payout_percent"],
            "currency": offer["currency"],
        }
    )
