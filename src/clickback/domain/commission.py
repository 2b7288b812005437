"""Which payout applies to a conversion, and what it pays.

Most specific first: a rule for this affiliate and this `commissionid`, a rule for this
`commissionid`, a rule for this affiliate, then the offer's default. An unknown
`commissionid` (one no rule names, or only rules for other affiliates) falls back (it is
flagged, never refused).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal

from clickback.domain import money
from clickback.domain.models import CommissionRule, Offer, PayoutType


def pick_rule(
    rules: Sequence[CommissionRule], affiliate_id: int, commissionid: str
) -> tuple[CommissionRule | None, bool]:
    """The rule to apply (None: the offer's default), and whether `commissionid` was unknown."""
    by_id = [r for r in rules if commissionid and r.commissionid == commissionid]
    for rule in by_id:
        if rule.affiliate_id == affiliate_id:
            return rule, False
    for rule in by_id:
        if rule.affiliate_id is None:
            return rule, False
    # no rule for it that applies to this affiliate: another affiliate's rule for the
    # same id is none of this one's, so the id is as unknown as one no rule names
    unknown = bool(commissionid)
    for rule in rules:
        if rule.affiliate_id == affiliate_id and not rule.commissionid:
            return rule, unknown
    return None, unknown


def commission(
    offer: Offer, rule: CommissionRule | None, amount: Decimal, currency: str
) -> tuple[int, str]:
    """The commission in minor units, and its currency: CPS pays a percent of the order
    (in the order's currency), CPA and CPL a fixed amount (in the offer's, or the rule's)."""
    ptype = rule.payout_type if rule else offer.payout_type
    if ptype is PayoutType.CPS:
        percent = rule.payout_percent if rule else offer.payout_percent
        return money.to_minor(money.percent_of(amount, percent, currency), currency), currency
    if rule is not None:
        return rule.payout_amount, rule.currency
    return offer.payout_amount, offer.currency


def rule_name(rule: CommissionRule | None) -> str:
    return f"rule:{rule.id}" if rule else "default"


def revenue_terms(kind: str, amount: str, percent: str) -> str:
    """An offer's revenue terms as a conversion keeps them from when it was recorded:
    `cpa:AMOUNT` (in the base currency), `cps:PERCENT` (of the sale), '' none."""
    if kind == "cpa":
        return f"cpa:{amount}"
    if kind == "cps":
        return f"cps:{percent}"
    return ""


def revenue(terms: str, sale: int, base_currency: str) -> int:
    """What the advertiser pays the network for a conversion under `terms`
    (`revenue_terms`), in minor units of the base currency, from its sale in those
    units: a CPS share is rounded half-up per conversion."""
    kind, _, value = terms.partition(":")
    if kind == "cpa":
        return money.to_minor(Decimal(value), base_currency)
    if kind == "cps":
        return int((Decimal(sale) * Decimal(value) / 100).to_integral_value(ROUND_HALF_UP))
    return 0
