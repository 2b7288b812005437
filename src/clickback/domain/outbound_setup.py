"""Where an affiliate's outbound postbacks go, as the operator sets it (an affiliate's own
postback fields, checked; an offer's override of them) and a delivery sent again: the
admin API and the CLI call these (`domain.admin` sets the affiliate's own)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from clickback.domain.outbound import CANCELLED, EVENTS, HELD, MACROS, ascii_host
from clickback.domain.ports import Store
from clickback.domain.timefmt import now_us
from clickback.errors import ConflictError, InputError, NotFoundError

UrlCheck = Callable[[str], Awaitable[None]]


async def no_check(url: str) -> None:
    return None


# what other platforms call what a macro here says, to name the one meant
_OTHER_MACROS = {
    "payout": "commission",
    "affpayout": "commission",
    "amount": "orderamount",
    "saleamount": "orderamount",
    "revenue": "orderamount",
    "orderid": "ordernumber",
    "clickid": "refid",
    "transactionid": "refid",
    "txid": "refid",
    "subid": "sub1",
    "country": "geo",
    "offer": "offer_id",
    "affiliate": "affiliate_id",
    "affid": "affiliate_id",
    **{f"affsub{i}": f"sub{i}" for i in range(1, 6)},
    **{f"s{i}": f"sub{i}" for i in range(1, 6)},
    "affsub": "sub1",
}
_BRACED = re.compile(r"\{([^{}]*)\}")


def unknown_macro(url: str) -> InputError | None:
    """The error for a `{name}` in a postback URL that is no macro (`{payout}`, a typo):
    it would be sent as the text `{payout}`, and the affiliate would read nothing. So for
    a macro after the URL's `#`: its fragment is never sent."""
    _, hash_sign, fragment = url.partition("#")
    if hash_sign and (
        inside := [m.strip() for m in _BRACED.findall(fragment) if m.strip() in MACROS]
    ):
        return InputError(
            f"`{{{inside[0]}}}` is after the `#` of `postback_url`: what follows a `#` is "
            "never sent, so the affiliate would read nothing there; put it in the query "
            f"(`?{inside[0]}={{{inside[0]}}}`), or a `#` meant as text as `%23`",
            code="invalid_url",
            field="postback_url",
        )
    for braced in _BRACED.findall(url):
        name = braced.strip()
        # a macro, or braces around no name (`{}`, a JSON-like literal): not taken for one
        if braced in MACROS or not name or any(c in name for c in '":,'):
            continue
        folded = name.lower().replace("_", "").replace("-", "")
        meant = next((m for m in MACROS if m.replace("_", "") == folded), None)
        meant = meant or _OTHER_MACROS.get(folded)
        hint = f" (`{{{meant}}}` is what it may mean)" if meant else ""
        return InputError(
            f"`{{{braced}}}` in `postback_url` is no macro{hint}: it would be sent as it is."
            f" The macros: {', '.join('{' + m + '}' for m in MACROS)}",
            code="unknown_macro",
            field="postback_url",
        )
    return None


def postback_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Validated outbound postback fields (those given)."""
    cols: dict[str, Any] = {}
    if values.get("postback_url") is not None:
        url = values["postback_url"]
        if not isinstance(url, str) or len(url) > 2000:
            raise InputError(
                "`postback_url` must be a URL of at most 2000 characters",
                code="invalid_url",
                field="postback_url",
            )
        # a host of other letters in its ASCII form, as a destination's: the Host header
        # of each attempt must be ASCII
        cols["postback_url"] = ascii_host(url.strip(), "postback_url")
        if (wrong := unknown_macro(url)) is not None:
            raise wrong
    if values.get("postback_method") is not None:
        method = str(values["postback_method"]).upper()
        if method not in ("GET", "POST"):
            raise InputError(
                "`postback_method` is GET or POST", code="invalid_method", field="postback_method"
            )
        cols["postback_method"] = method
    if values.get("postback_events") is not None:
        events = values["postback_events"]
        if not isinstance(events, list) or not all(e in EVENTS for e in events):
            raise InputError(
                f"`postback_events` is a list out of {', '.join(EVENTS)}",
                code="invalid_events",
                field="postback_events",
            )
        cols["postback_events"] = ",".join(dict.fromkeys(events))
    return cols


async def set_offer_postback(
    store: Store,
    offer_id: int,
    affiliate_id: int,
    values: Mapping[str, Any],
    check_url: UrlCheck = no_check,
) -> None:
    """An offer+affiliate override of the affiliate's outbound postback."""
    if await store.get_row("offers", offer_id) is None:
        raise NotFoundError(f"offer {offer_id} does not exist")
    if await store.get_row("affiliates", affiliate_id) is None:
        raise NotFoundError(f"affiliate {affiliate_id} does not exist")
    cols = postback_values(values)
    if not cols.get("postback_url"):
        raise InputError(
            "`postback_url` is required (DELETE removes the override)",
            code="invalid_url",
            field="postback_url",
        )
    await check_url(cols["postback_url"])
    await store.set_offer_postback(
        offer_id,
        affiliate_id,
        cols["postback_url"],
        cols.get("postback_method", "GET"),
        cols.get("postback_events", "conversion"),
        now_us(),
    )


async def offer_postback(store: Store, offer_id: int, affiliate_id: int) -> dict[str, Any]:
    """An offer+affiliate override; NotFoundError when there is none."""
    found = await store.offer_postbacks(offer_id, affiliate_id)
    if not found:
        raise NotFoundError(
            f"affiliate {affiliate_id} has no postback override for offer {offer_id}"
            " (its own postback applies)"
        )
    return found[0]


async def offer_postbacks(store: Store, offer_id: int) -> list[dict[str, Any]]:
    """An offer's postback overrides, by affiliate."""
    if await store.get_row("offers", offer_id) is None:
        raise NotFoundError(f"offer {offer_id} does not exist")
    return await store.offer_postbacks(offer_id=offer_id)


async def remove_offer_postback(store: Store, offer_id: int, affiliate_id: int) -> None:
    """Removes an override: the affiliate's own postback applies to the offer again."""
    if not await store.delete_offer_postback(offer_id, affiliate_id):
        raise NotFoundError(
            f"affiliate {affiliate_id} has no postback override for offer {offer_id}"
        )


async def resend_delivery(store: Store, delivery_id: int) -> int:
    """Queues an outbound postback again now. Refused while an attempt of it is in
    flight, for its sender would not record that attempt and another would send it
    again; while its affiliate's postback is disabled, for it would wait unsent; and once
    a later postback of its conversion reached the affiliate or is being sent (a reversal
    after a sale whose postback failed), for it would arrive after that one and be taken
    as the conversion's newest status. The later postbacks of its conversion to the
    affiliate that failed too are queued again after it (a `reversed` after its sale):
    how many."""
    for _ in range(3):  # what refused it may have changed before it was read
        outcome = await store.resend_delivery(delivery_id, now_us())
        if outcome is None:
            raise NotFoundError(f"delivery {delivery_id} does not exist")
        if outcome["queued"]:
            return int(outcome["later"])
        affiliate = outcome["affiliate_id"]
        if outcome["state"] == CANCELLED:
            raise ConflictError(
                f"delivery {delivery_id} was cancelled: its conversion was rejected by the"
                " offer's fraud rules, or the affiliate no longer took its event when its"
                " turn came; it is not sent (a conversion approved after its rejection is"
                " posted back then, anew)",
                code="delivery_cancelled",
            )
        if outcome["in_flight"]:
            raise ConflictError(
                f"delivery {delivery_id} is being sent now: resend it once this attempt is"
                " recorded (within the send timeout)",
                code="delivery_in_flight",
            )
        if outcome["disabled_at"] is not None:
            how = (
                "queues its held deliveries again, this one among them"
                if outcome["state"] == HELD
                else "holds nothing back; then resend this one"
            )
            raise ConflictError(
                f"affiliate {affiliate}'s postback is disabled, so delivery {delivery_id}"
                f" would wait unsent: enabling it (`clickback affiliate enable-postback"
                f' {affiliate}`, or PATCH /api/v1/affiliates/{affiliate} with {{"postback_enabled":'
                f" true}}) {how}",
                code="postback_disabled",
            )
        if outcome["later_id"] is not None:
            raise ConflictError(
                f"delivery {outcome['later_id']} ({outcome['later_event']}) of conversion"
                f" {outcome['conversion_id']}, later than delivery {delivery_id}"
                f" ({outcome['event']}), reached affiliate {affiliate}, is being sent to"
                " it, or tells it the same: sent now, this older one would arrive after it"
                " (and be taken as the conversion's newest status) or tell it twice",
                code="later_delivered",
            )
    raise ConflictError(
        f"delivery {delivery_id} changed while it was resent: try again",
        code="delivery_in_flight",
    )
