"""Deciding what a valid postback is worth: its click, window, offer state and commission.

Pure: it takes the parsed postback, what the RefID says about itself, and the cached
advertiser and offer, and returns either a conversion to store or the reason it is
refused. Dedupe of `ordernumber` is not decided here but by the store's unique
constraint, exactly, under concurrency; what a duplicate is told (`duplicate`) is said
here, from the conversion the store found it repeats.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Protocol
from urllib.parse import unquote

import orjson

from clickback.domain import commission, money
from clickback.domain.fx import Rates, stored_rate
from clickback.domain.models import (
    Advertiser,
    CommissionRule,
    FieldError,
    Link,
    Offer,
    OfferStatus,
    Outcome,
)
from clickback.domain.ports import ConversionRow, LedgerRow, StoredOrder
from clickback.domain.postback import (
    PostbackInput,
    check_precision,
    placeholder,
    thousands_like,
    too_large,
)
from clickback.domain.refid import ALPHABET as REFID_ALPHABET
from clickback.domain.refid import HEAD_REFID, TEXT_LEN, RefIdInfo

DAY_US = 86_400_000_000
MISSING_RATE = "missing_rate"
UNKNOWN_COMMISSIONID = "unknown_commissionid"
THOUSANDS_LIKE = "thousands_like_amount"  # `postback.thousands_like`
DUPLICATE_ORDERNUMBER = "duplicate_ordernumber"

HTTP_STATUS = {
    Outcome.ACCEPTED: 200,
    Outcome.DUPLICATE: 200,
    Outcome.REJECTED: 400,
    Outcome.FORBIDDEN: 403,
    Outcome.RATE_LIMITED: 429,
    Outcome.UNKNOWN_REFID: 404,
    Outcome.EXPIRED_REFID: 422,
    Outcome.OFFER_PAUSED: 422,
}


@dataclass(frozen=True, slots=True)
class Refusal:
    outcome: Outcome
    errors: list[FieldError]


# what JavaScript, PHP, Python and the rest write for a variable that holds nothing
NOTHING_WORDS = frozenset({"undefined", "null", "none", "nil", "nan", "(null)", "false"})


_ESCAPED = re.compile(r"%[0-9A-Fa-f]{2}")  # what a RefID encoded twice still holds


def unknown_refid(sent: str = "", after: str = "") -> Refusal:
    """A RefID of no click; `sent`, where it is a placeholder left unfilled, is told so,
    and where it is a RefID with `after` added after it (a `#fragment`, a `/`, a `%20`
    encoded twice), that."""
    message = "no click was tracked with this RefID"
    escaped = _ESCAPED.search(sent)
    if after:
        message = (
            f"the RefID `{sent[: len(sent) - len(after)]}` was sent with `{after[:40]}` added"
            " after it: send the RefID alone (whatever the page or the URL template put"
            " after it is not part of it)"
        )
    elif escaped and not placeholder(unquote(sent)):
        message = (
            f"`{sent[:40]}` is percent-encoded (`{escaped.group(0)}` where a character"
            " should be): the RefID was encoded twice on its way, by code that"
            " encoded a value the URL already carried encoded; send it as the landing page"
            " got it"
        )
    elif sent and placeholder(sent):
        message = (
            f"`{sent[:40]}` is a placeholder, not a RefID: the postback URL's placeholder must"
            " be replaced by the RefID of the visitor's click (the `refid` its landing page got)"
        )
    elif sent.lower() in NOTHING_WORDS:
        message = (
            f"`{sent}` is what code writes for a variable that holds nothing, not a RefID: the"
            " RefID the landing page got was not kept (cookie, hidden field, session) or not"
            " handed to the code that fires the postback"
        )
    elif sent == HEAD_REFID:  # the tracker's own answer to a HEAD
        message += ": it is the one a HEAD request is answered with, when no click is tracked"
    elif len(sent) == TEXT_LEN and REFID_ALPHABET.issuperset(sent):
        message += (
            ": it has the form of this tracker's RefIDs, but its signature does not verify"
            " here: it was issued by another installation (a staging tracker, another"
            " CLICKBACK_SECRET) or changed on the way (a character, its letters' case)"
        )
    elif 0 < len(sent) < TEXT_LEN and REFID_ALPHABET.issuperset(sent):
        message += (
            f": RefIDs this tracker issues have {TEXT_LEN} characters and this one has"
            f" {len(sent)}; was it cut short on the way (a database column, a URL cut)?"
        )
    return Refusal(Outcome.UNKNOWN_REFID, [FieldError("refid", "unknown_refid", message)])


# The optional fields a repeat is compared on, as stored: one the repeat did not send
# ('' as parsed) is no difference, as a retry may leave out what the first one had.
_COMPARED_IF_SENT = ("commissionid", "coupon", "geo")


class Sent(Protocol):
    """What a repeat of an order sent, as a duplicate compares it with the stored one: a
    conversion it would have made, or a `SentOrder` when it was refused."""

    @property
    def refid(self) -> str: ...
    @property
    def ordernumber(self) -> str: ...
    @property
    def orderamount(self) -> int: ...
    @property
    def currency(self) -> str: ...
    @property
    def commissionid(self) -> str: ...
    @property
    def coupon(self) -> str: ...
    @property
    def geo(self) -> str: ...


@dataclass(frozen=True, slots=True)
class SentOrder:
    refid: str
    ordernumber: str
    orderamount: int  # minor units of currency
    currency: str
    commissionid: str
    coupon: str
    geo: str


# refusals that come of the offer or the click, not of what was sent: a repeat of an
# order counted already is answered `duplicate` whatever they say now (a retry after a
# lost answer, once the offer was paused or the window passed, is counted, not refused)
OF_THE_OFFER = frozenset({Outcome.OFFER_PAUSED, Outcome.EXPIRED_REFID})


def sent_order(inp: PostbackInput, offer: Offer) -> SentOrder | None:
    """What a refused postback sent, as a duplicate of a stored order is told of it; None
    when its amount does not fit its currency (it could be no repeat of a stored one)."""
    currency = inp.currency or offer.currency
    if check_precision(inp.orderamount, currency) is not None:
        return None
    return SentOrder(
        inp.refid,
        inp.ordernumber,
        money.to_minor(inp.orderamount, currency),
        currency,
        inp.commissionid,
        inp.coupon,
        inp.geo or "",
    )


def duplicate(repeat: Sent, stored: StoredOrder) -> tuple[str, list[dict[str, str]]]:
    """Why a repeat of an order counted already was not counted: the stored conversion's
    id and, where they differ, its amount, currency and RefID beside the repeat's, and its
    commissionid, coupon and geo where the repeat sent one (a second sale given the first
    one's order number would otherwise pass as a retry)."""
    before = money.from_minor(stored.orderamount, stored.currency)
    now = money.from_minor(repeat.orderamount, repeat.currency)
    differs = []
    if before != now:
        differs.append(
            {
                "field": "orderamount",
                "stored": money.format_minor(stored.orderamount, stored.currency),
                "sent": money.format_minor(repeat.orderamount, repeat.currency),
            }
        )
    if stored.currency != repeat.currency:
        differs.append({"field": "currency", "stored": stored.currency, "sent": repeat.currency})
    parts = []
    if differs:
        parts.append(
            f"stored orderamount {money.format_minor(stored.orderamount, stored.currency)}"
            f" {stored.currency}, this one"
            f" {money.format_minor(repeat.orderamount, repeat.currency)} {repeat.currency}"
        )
    if stored.refid != repeat.refid:
        differs.append({"field": "refid", "stored": stored.refid, "sent": repeat.refid})
        parts.append(f"stored RefID {stored.refid}, this one {repeat.refid}")
    for field in _COMPARED_IF_SENT:
        sent, before_text = getattr(repeat, field), getattr(stored, field)
        if sent and sent != before_text:
            differs.append({"field": field, "stored": before_text, "sent": sent})
            parts.append(f"stored {field} {before_text or '(none)'}, this one {sent}")
    message = (
        f"ordernumber {repeat.ordernumber!r} was counted already, as conversion"
        f" {stored.conversion_id}"
    )
    if parts:
        message += "; this one differs: " + "; ".join(parts)
    return message, differs


def ledger_duplicate(ledger: LedgerRow, repeat: ConversionRow, stored: StoredOrder) -> LedgerRow:
    """The ledger row of a repeat found a duplicate as it was written: its reason (and
    code) is the duplicate, followed by the warnings the repeat raised as an accepted
    postback's row would carry them (`warnings`): they are about what was sent. Only a
    duplicate pays for reading them back. The entry carries the answer's `differs` too,
    for whoever reads the ledger later (an integration test)."""
    message, differs = duplicate(repeat, stored)
    note = FieldError("ordernumber", DUPLICATE_ORDERNUMBER, message)
    errors = [{**note.as_dict(), "differs": differs}, *orjson.loads(ledger.errors)]
    return replace(ledger, errors=orjson.dumps(errors).decode(), code=note.code)


def decide(
    inp: PostbackInput,
    info: RefIdInfo,
    link: Link | None,
    offer: Offer | None,
    advertiser: Advertiser | None,
    now_us: int,
    rules: Sequence[CommissionRule],
    rates: Rates,
    ip: str = "",
    delivery: str = "",
    recorded_us: int | None = None,
) -> ConversionRow | Refusal:
    """The conversion to store, or why not, judged as of `now_us`, when the postback
    arrived. `delivery` is the state of the outbound postback it sets off ('' for none),
    `ip` where the postback came from, `recorded_us` when it is recorded, if not then
    (a replay's)."""
    if link is None or offer is None or advertiser is None:
        return unknown_refid()
    if offer.status is OfferStatus.ARCHIVED:
        return Refusal(
            Outcome.OFFER_PAUSED,
            [FieldError("refid", "offer_archived", f"offer {offer.id} is archived")],
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
    rule, unknown_id = commission.pick_rule(rules, link.affiliate_id, inp.commissionid)
    paid, paid_currency = commission.commission(offer, rule, inp.orderamount, currency)
    amount = money.to_minor(inp.orderamount, currency)
    day = utc_day(now_us)
    rate, base_amount = rates.to_base(amount, currency, day)
    _, base_commission = rates.to_base(paid, paid_currency, day)
    if any(
        abs(v) > money.MAX_MINOR for v in (amount, paid, base_amount or 0, base_commission or 0)
    ):
        return Refusal(Outcome.REJECTED, [too_large(rates.base)])
    flags = []
    if base_amount is None or base_commission is None:
        flags.append(MISSING_RATE)
        base_amount = base_commission = None
    if unknown_id:
        flags.append(UNKNOWN_COMMISSIONID)
    if thousands_like(inp.orderamount, currency):
        flags.append(THOUSANDS_LIKE)
    return ConversionRow(
        refid=inp.refid,
        offer_id=offer.id,
        affiliate_id=link.affiliate_id,
        advertiser_id=advertiser.id,
        link_id=link.id,
        ordernumber=inp.ordernumber,
        orderamount=amount,
        currency=currency,
        commission=paid,
        commission_currency=paid_currency,
        coupon=inp.coupon,
        geo=inp.geo or "",
        commissionid=inp.commissionid,
        status="pending" if offer.approval == "review" else "approved",
        created_at=now_us,
        recorded_at=now_us if recorded_us is None else recorded_us,
        clicked_at=clicked_at,
        is_test=int(link.is_test),
        rule=commission.rule_name(rule),
        flags=",".join(flags),
        base_currency=rates.base,
        rate=stored_rate(rate, base_amount),
        base_amount=base_amount,
        base_commission=base_commission,
        ip=ip,
        delivery=delivery,
        revenue_terms=offer.revenue,
    )


def utc_day(us: int) -> str:
    return _day(us // DAY_US)


@lru_cache(maxsize=64)
def _day(days: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(days * 86_400))


def warnings(conversion: ConversionRow, rates: Rates) -> list[FieldError]:
    """What an accepted postback is flagged with, for the ledger and the answer (`rates`:
    the ones it was valued with)."""
    out = []
    if UNKNOWN_COMMISSIONID in conversion.flags:
        out.append(
            FieldError(
                "commissionid",
                UNKNOWN_COMMISSIONID,
                f"no commission rule `{conversion.commissionid}` for this affiliate: "
                + (
                    "the default payout applied"
                    if conversion.rule == "default"
                    else f"the affiliate's own payout ({conversion.rule}) applied"
                ),
            )
        )
    if MISSING_RATE in conversion.flags:
        day = utc_day(conversion.created_at)
        out.append(
            FieldError(
                "currency",
                MISSING_RATE,
                f"no exchange rate into {conversion.base_currency} for "
                + " or ".join(
                    dict.fromkeys(
                        c
                        for c, minor in (
                            (conversion.currency, conversion.orderamount),
                            (conversion.commission_currency, conversion.commission),
                        )
                        if minor and rates.rate(c, day) is None  # zero needs none
                    )
                )
                + f" dated on or before {day} yet: valued when one"
                " is imported",
            )
        )
    if THOUSANDS_LIKE in conversion.flags:  # last: the ledger's `code` is the first's
        shown = money.format_minor(conversion.orderamount, conversion.currency)
        thousands = f"{money.from_minor(conversion.orderamount, conversion.currency) * 1000:.0f}"
        out.append(
            FieldError(
                "orderamount",
                THOUSANDS_LIKE,
                f"counted as {shown} {conversion.currency}; an amount with three digits after"
                f" its point is also how a point between thousands writes {thousands}: if that"
                " was meant, send amounts with no thousands separator, and have this conversion"
                " rejected",
            )
        )
    return out
