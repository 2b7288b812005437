"""An affiliate's own daily conversion cap on an offer, beside the offer's `daily_cap`:
how many of the offer's conversions a UTC day the network takes from that affiliate.
The screening counts and flags by both (`domain.fraud.ConversionScreen.over_cap`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clickback.domain.admin import daily_cap, require_live
from clickback.domain.ports import Store
from clickback.domain.timefmt import iso, now_us
from clickback.errors import InputError, NotFoundError

DAY_US = 86_400_000_000


async def _check_offer(store: Store, offer_id: int) -> None:
    if await store.get_row("offers", offer_id) is None:
        raise NotFoundError(f"offer {offer_id} does not exist")


async def set_affiliate_cap(
    store: Store, offer_id: int, affiliate_id: int, values: Mapping[str, Any]
) -> None:
    """Sets (or changes) the affiliate's daily cap on the offer."""
    await require_live(store, "offers", offer_id)
    await require_live(store, "affiliates", affiliate_id)
    cap = daily_cap(values.get("daily_cap"))
    if cap is None:
        raise InputError(
            "`daily_cap` is required (DELETE removes the affiliate's cap)",
            code="invalid_cap",
            field="daily_cap",
        )
    await store.set_affiliate_cap(offer_id, affiliate_id, cap, now_us())


async def affiliate_cap(store: Store, offer_id: int, affiliate_id: int) -> dict[str, Any]:
    """The affiliate's cap on the offer; NotFoundError when it has none."""
    await _check_offer(store, offer_id)
    found = await store.affiliate_caps(offer_id, affiliate_id)
    if not found:
        raise NotFoundError(
            f"affiliate {affiliate_id} has no daily cap of its own on offer {offer_id}"
        )
    return found[0]


async def affiliate_caps(store: Store, offer_id: int) -> list[dict[str, Any]]:
    """An offer's per-affiliate caps, by affiliate."""
    await _check_offer(store, offer_id)
    return await store.affiliate_caps(offer_id)


async def reached_today(
    store: Store, offer_id: int, now: int | None = None
) -> list[dict[str, Any]]:
    """The offer's daily caps reached this UTC day, each {"affiliate_id": None for the
    offer's own or the affiliate's id, "reached_at"}, as the screening stored them when
    it counted the conversion that reached the cap."""
    day = (now_us() if now is None else now) // DAY_US
    return [
        {"affiliate_id": affiliate or None, "reached_at": iso(at)}
        for affiliate, at in await store.caps_reached_on(offer_id, day)
    ]


async def remove_affiliate_cap(store: Store, offer_id: int, affiliate_id: int) -> None:
    await _check_offer(store, offer_id)
    if not await store.delete_affiliate_cap(offer_id, affiliate_id):
        raise NotFoundError(
            f"affiliate {affiliate_id} has no daily cap of its own on offer {offer_id}"
        )
