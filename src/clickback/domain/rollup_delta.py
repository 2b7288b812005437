"""What a rollup pass folds, apart from the job that folds it (`domain.rollup`): the
watermarks it reads after (`Mark`), what the rollups hold of a conversion (`Fact`), the
sums of clicks and conversions by key (`Delta`) and how they spread over the report
levels (`leveled`, `by_day`), and the orders of the fields the stores read and write."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clickback.domain import levels

# what a conversion rollup row sums, in the order of `Delta.contribute`
CONVERSION_SUMS: tuple[str, ...] = ("conversions", "sale", "commission", "missing_rate")
CONVERSION_SUMS += ("revenue", "with_revenue", "revenue_commission")

ClickKey = tuple[Any, ...]  # hour, link, sub1..5, country, device, os, browser, flags, offer, ...
ConversionKey = tuple[Any, ...]  # basis, hour, link, ..., browser, flags, status, offer, aff, adv


@dataclass(frozen=True, slots=True)
class Mark:
    clicks_after: str = ""
    conversions_after: int = 0
    events_after: int = 0
    # when the rollups were last applied (from the store; it grows with every apply): an
    # apply that moved no watermark (late values, gaps) still tells held passes apart
    applied: int = 0


@dataclass(slots=True)
class Fact:
    """What the rollups hold of one conversion (the columns of `report_facts`)."""

    conversion_id: int
    status: str
    valued: int
    sale: int
    commission: int
    click_hour: int
    conversion_hour: int
    link_id: int
    sub1: str
    sub2: str
    sub3: str
    sub4: str
    sub5: str
    country: str
    device: str
    os: str
    browser: str
    flags: str
    offer_id: int
    affiliate_id: int
    advertiser_id: int
    revenue: int = 0  # in the base currency's minor units, when valued
    has_revenue: int = 0  # the offer had revenue terms when the conversion was rolled up

    def key(self, basis: str, hour: int) -> ConversionKey:
        return (
            basis,
            hour,
            self.link_id,
            self.sub1,
            self.sub2,
            self.sub3,
            self.sub4,
            self.sub5,
            self.country,
            self.device,
            self.os,
            self.browser,
            self.flags,
            self.status,
            self.offer_id,
            self.affiliate_id,
            self.advertiser_id,
        )


FACT_COLUMNS = tuple(Fact.__dataclass_fields__)


@dataclass(slots=True)
class Delta:
    clicks: dict[ClickKey, list[int]] = field(default_factory=dict)  # clicks, unique, bots
    conversions: dict[ConversionKey, list[int]] = field(default_factory=dict)
    visitors: set[tuple[int, int, int]] = field(default_factory=set)  # new unique ones
    facts: dict[int, Fact] = field(default_factory=dict)  # to store
    gaps_add: list[tuple[str, int, int]] = field(default_factory=list)
    gaps_drop: list[tuple[str, int]] = field(default_factory=list)
    prune_before_day: int | None = None

    def contribute(self, fact: Fact, sign: int) -> None:
        """Adds (or with -1 takes away) a conversion's share under both time bases."""
        for basis, hour in (("conversion", fact.conversion_hour), ("click", fact.click_hour)):
            sums = self.conversions.setdefault(fact.key(basis, hour), [0] * len(CONVERSION_SUMS))
            sums[0] += sign
            sums[1] += sign * fact.sale
            sums[2] += sign * fact.commission
            sums[3] += sign * (1 - fact.valued)
            sums[4] += sign * fact.revenue
            sums[5] += sign * fact.has_revenue
            sums[6] += sign * fact.commission * fact.has_revenue

    def empty(self) -> bool:
        return not (
            self.clicks or self.conversions or self.facts or self.gaps_add or self.gaps_drop
        )

    def click_rows(self) -> list[tuple[Any, ...]]:
        """(level, *key, clicks, unique, bots) for every rollup level, hourly and daily:
        what the engines' spreading in SQL must leave (`tests/storage/test_spread_sql.py`)."""
        days = by_day(self.clicks, 0)
        return leveled(self.clicks, _CLICK_MASKS, 3) + leveled(days, _CLICK_DAILY, 3)

    def click_sums(self) -> list[tuple[Any, ...]]:
        """(*key, clicks, unique, bots) per click key, not spread over the levels: for an
        engine that spreads them itself (`storage.reports.spread_sql`)."""
        return [(*k, *v) for k, v in self.clicks.items()]

    def conversion_sums(self) -> list[tuple[Any, ...]]:
        """(*key, *CONVERSION_SUMS) per conversion key whose sums are not all 0, not
        spread over the levels."""
        return [(*k, *v) for k, v in self.conversions.items() if any(v)]

    def conversion_rows(self) -> list[tuple[Any, ...]]:
        """(level, *key, conversions, sale, commission, missing_rate, revenue, with_revenue,
        revenue_commission) for every level; keys whose sums cancel out (a status change
        and back in one batch) are left out."""
        n = len(CONVERSION_SUMS)
        rows = leveled(self.conversions, _CONVERSION_MASKS, n)
        rows += leveled(by_day(self.conversions, 1), _CONVERSION_DAILY, n)
        return [r for r in rows if any(r[-n:])]


SUMMED: tuple[str, ...] = ("link_id", "sub1", "sub2", "sub3", "sub4", "sub5", "country")
SUMMED += ("device", "os", "browser", "flags")
CLICK_FIELDS = ("hour", *SUMMED, "offer_id", "affiliate_id", "advertiser_id")
# what the rollup reads of a click, in this order: rows as tuples (a dict a row was a
# fifth of the job's event-loop time with a click a visitor)
CLICK_READ: tuple[str, ...] = ("refid", "link_id", "offer_id", "affiliate_id")
CLICK_READ += ("sub1", "sub2", "sub3", "sub4", "sub5", "ip", "user_agent", "created_at")
CLICK_READ += ("is_test", "flags")
CONVERSION_FIELDS: tuple[str, ...] = ("basis", "hour", *SUMMED, "status", "offer_id")
CONVERSION_FIELDS += ("affiliate_id", "advertiser_id")
_CLICK_MASKS = levels.masks(CLICK_FIELDS)
_CONVERSION_MASKS = levels.masks(CONVERSION_FIELDS)
_CLICK_DAILY = levels.masks(CLICK_FIELDS, daily=True)
_CONVERSION_DAILY = levels.masks(CONVERSION_FIELDS, daily=True)


def by_day(sums: dict[tuple[Any, ...], list[int]], at: int) -> dict[tuple[Any, ...], list[int]]:
    """The sums with the hour (at position `at` of each key) moved to its UTC day's first
    hour, as the daily levels keep them."""
    out: dict[tuple[Any, ...], list[int]] = {}
    for key, values in sums.items():
        day = (*key[:at], key[at] // 24 * 24, *key[at + 1 :])
        total = out.setdefault(day, [0] * len(values))
        for i, v in enumerate(values):
            total[i] += v
    return out


def leveled(
    sums: dict[tuple[Any, ...], list[int]], level_masks: levels.Masks, n: int
) -> list[tuple[Any, ...]]:
    """(level, *key, *sums) per level key: the sums of every key that maps to it."""
    out: dict[tuple[Any, ...], list[int]] = {}
    for key, values in sums.items():
        full, getters = levels.extended(key, level_masks)
        for get in getters:
            at_level = get(full)
            total = out.get(at_level)
            if total is None:
                out[at_level] = list(values[:n])
            else:
                for i in range(n):
                    total[i] += values[i]
    return [(*k, *v) for k, v in out.items()]
