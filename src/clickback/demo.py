"""The demo `clickback serve --demo` sets up: an advertiser, offer, affiliate and link
made once and remembered in meta, and at each start the two URLs to try, the postback
with an order number not used before.

A remembered link that no longer serves (it, its affiliate, its offer or its advertiser
paused or archived since) would print a URL that leads to the 404 page or a fallback:
a new demo link is made and remembered instead, on what of the old demo still serves,
and the start says why. Nothing is re-activated: a pause or an archive was someone's
choice.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from clickback.domain import admin
from clickback.domain.ports import Store

DEMO_LINK = "demo_link_id"  # meta: the link `serve --demo` made
DEMO_ORDERS = "demo_orders"  # meta: how many demo order numbers were handed out


async def create_demo(store: Store, base: str) -> tuple[str, str, str]:
    """The demo's two URLs, the postback with an order number new at each start, and a
    note when its remembered link did not serve and a new one was made ('' otherwise)."""
    remembered = await store.get_meta(DEMO_LINK)
    link = await store.get_row("links", int(remembered)) if remembered else None
    if link is None and remembered is None:
        link = await _earlier_demo(store)  # made before the demo was remembered
    note = ""
    if link is not None:
        why = await _not_serving(store, link)
        if why:
            old = link["id"]
            link = await _make_link(store, link)
            note = (
                f"the demo link {old} does not serve: {why}; made a new demo link"
                f" {link['id']}, of offer {link['offer_id']} and affiliate"
                f" {link['affiliate_id']} (nothing was re-activated)"
            )
    if link is None:
        link = await _make_link(store, None)
    # a new order number each start: the one fired last time would answer `duplicate`
    order = int(await store.get_meta(DEMO_ORDERS) or 0) + 1
    await store.set_meta(DEMO_ORDERS, str(order))
    tracking = f"{base}/c/{link['code']}?sub1=demo"
    postback = (
        f"{base}/postback?refid=REFID&orderamount=49.90&ordernumber=ORDER-{order}"
        "&coupon=&currency=USD&geo=US&commissionid="
    )
    _, _, advertiser = await _rows(store, link)
    if advertiser is not None and advertiser["require_token"]:  # set since the demo began
        postback += f"&token={quote(advertiser['postback_token'], safe='')}"
    if advertiser is not None and advertiser["require_signature"]:
        note = " ".join(
            x
            for x in (
                note,
                "the demo advertiser's postbacks must be signed: see"
                f" `clickback postback-url {link['offer_id']}`",
            )
            if x
        )
    return tracking, postback, note


async def _rows(store: Store, link: dict[str, Any]) -> tuple[dict[str, Any] | None, ...]:
    """The link's affiliate, offer and advertiser rows."""
    affiliate = await store.get_row("affiliates", link["affiliate_id"])
    offer = await store.get_row("offers", link["offer_id"])
    advertiser = await store.get_row("advertisers", offer["advertiser_id"]) if offer else None
    return affiliate, offer, advertiser


def _offer_serves(offer: dict[str, Any] | None, advertiser: dict[str, Any] | None) -> str:
    """Why the offer does not serve ('' when it does)."""
    if offer is None or advertiser is None:
        return "its offer is gone"
    if advertiser["archived_at"] is not None:
        return f"its advertiser {advertiser['id']} is archived"
    if offer["archived_at"] is not None:
        return f"its offer {offer['id']} is archived"
    if offer["status"] != "active":
        return f"its offer {offer['id']} is {offer['status']}"
    return ""


async def _not_serving(store: Store, link: dict[str, Any]) -> str:
    """Why a click on the link would not be served ('' when it would), as the catalog
    decides it (`storage.base`: an archived advertiser archives its offers, an archived
    affiliate stops its links)."""
    affiliate, offer, advertiser = await _rows(store, link)
    why = [w for w in (_offer_serves(offer, advertiser),) if w]
    if link["archived_at"] is not None:
        why.append("it is archived")
    elif not link["active"]:
        why.append("it is inactive")
    if affiliate is None or affiliate["archived_at"] is not None:
        why.append(f"its affiliate {link['affiliate_id']} is archived")
    return ", ".join(why)


async def _make_link(store: Store, old: dict[str, Any] | None) -> dict[str, Any]:
    """A new demo link, remembered; on the old demo's offer and affiliate where they
    still serve, else on new ones (the demo advertiser kept unless it is archived)."""
    affiliate, offer, advertiser = await _rows(store, old) if old else (None, None, None)
    if offer is not None and not _offer_serves(offer, advertiser):
        offer_id = offer["id"]
    else:
        if advertiser is not None and advertiser["archived_at"] is None:
            adv = advertiser["id"]
        else:
            adv = await admin.create_advertiser(store, {"name": "Demo Shop"})
        offer_id = await admin.create_offer(
            store,
            {
                "advertiser_id": adv,
                "name": "Demo offer",
                "payout_type": "cps",
                "payout_percent": "10",
                "currency": "USD",
                "destination_url": "https://shop.example.com/landing?utm_source=clickback",
            },
        )
    if affiliate is not None and affiliate["archived_at"] is None:
        aff = affiliate["id"]
    else:
        aff = await admin.create_affiliate(store, {"name": "Demo Affiliate"})
    link_id = await admin.create_link(store, {"offer_id": offer_id, "affiliate_id": aff})
    await store.set_meta(DEMO_LINK, str(link_id))
    link = await store.get_row("links", link_id)
    assert link is not None
    return link


async def _earlier_demo(store: Store) -> dict[str, Any] | None:
    """The demo's link as `serve --demo` made it before it kept its id in meta (the link
    of "Demo offer" of "Demo Shop"), remembered from now on, with the order numbers its
    postbacks used, so that the next is new; None if there is none."""
    shops = await store.list_rows("advertisers", {"name": "Demo Shop"}, None, None, 1, None)
    if not shops.items:
        return None
    adv = shops.items[0]["id"]
    offers = await store.list_rows(
        "offers", {"advertiser_id": adv, "name": "Demo offer"}, None, None, 1, None
    )
    if not offers.items:
        return None
    links = await store.list_rows(
        "links", {"offer_id": offers.items[0]["id"]}, None, None, 1, None, ascending=True
    )
    if not links.items:
        return None
    link = links.items[0]
    await store.set_meta(DEMO_LINK, str(link["id"]))
    used = await store.list_rows("conversions", {"advertiser_id": adv}, None, None, 1000, None)
    numbers = [
        int(c["ordernumber"][6:])
        for c in used.items
        if c["ordernumber"].startswith("ORDER-") and c["ordernumber"][6:].isdigit()
    ]
    await store.set_meta(DEMO_ORDERS, str(max(numbers, default=0)))
    return link
