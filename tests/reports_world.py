"""Random traffic through the real hot paths at chosen times, and reports recomputed from
the raw rows it left, to hold the rollups against."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from clickback.domain import admin, fraud, fx, lifecycle
from clickback.domain.enrich import Enricher
from clickback.domain.fraud import fraud_flags
from clickback.domain.ports import Store
from clickback.domain.reportspec import HOUR_US, ceil_hour, parse_moment
from clickback.domain.rollup import shared_enricher
from clickback.domain.screener import Screener
from clickback.domain.timefmt import from_datetime
from clickback.domain.tracker import Tracker, open_tracker

UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
    "like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
]
REVENUE = [{"revenue_type": "cpa", "revenue_amount": "7.25"}]
IPS = ["81.2.69.160", "8.8.8.8", "2a00:1450:4001:80b::200e", "203.0.113.7", "1.1.1.1", "5.9.0.1"]


class Clock:
    def __init__(self) -> None:
        self.now = 0

    def now_us(self) -> int:
        return self.now


@dataclass
class World:
    store: Store
    tracker: Tracker
    clock: Clock
    rng: random.Random
    links: list[dict[str, Any]] = field(default_factory=list)
    test_link: dict[str, Any] = field(default_factory=dict)
    refids: list[tuple[str, int]] = field(default_factory=list)  # (refid, click time)
    conversions: list[int] = field(default_factory=list)
    orders: int = 0
    screener: Screener | None = None

    async def clicks(self, n: int, start: datetime, hours: float) -> None:
        for _ in range(n):
            self.clock.now = from_datetime(start) + int(self.rng.random() * hours * HOUR_US)
            link = self.test_link if self.rng.random() < 0.05 else self.rng.choice(self.links)
            query = "&".join(
                f"sub{i}={self.rng.choice(['', 'a', 'b', 'c c'])}" for i in (1, 2) if i < 3
            )
            location = await self.tracker.click(
                link["code"], query, self.rng.choice(IPS), self.rng.choice(UAS), ""
            )
            assert location is not None
            refid = parse_qs(urlsplit(location).query)["refid"][0]
            self.refids.append((refid, self.clock.now))

    async def postbacks(self, share: float) -> None:
        for refid, clicked in self.rng.sample(self.refids, int(len(self.refids) * share)):
            self.clock.now = clicked + int(self.rng.random() * 3 * 24 * HOUR_US)
            self.orders += 1
            params = {
                "refid": refid,
                "orderamount": str(Decimal(self.rng.randint(0, 50_000)) / 100),
                "ordernumber": f"O-{self.orders if self.rng.random() > 0.05 else 1}",
                "currency": self.rng.choice(["USD", "EUR", "JPY", ""]),
                "geo": self.rng.choice(["", "DE", "fr"]),
            }
            if params["currency"] == "JPY":
                params["orderamount"] = str(self.rng.randint(0, 50_000))
            answer = await self.tracker.postback("GET", "127.0.0.1", params)
            if answer.body.get("status") == "accepted":
                self.conversions.append(answer.body["conversion_id"])

    async def screen(self) -> None:
        """The fraud screening job, as `clickback serve` runs it, until it has seen
        everything: 8.8.8.0/24 counts as a data centre, 3 clicks a minute as a flood."""
        if self.screener is None:  # one for the world: it holds the job's lease
            self.screener = self._screener()
        while await self.screener.run_once() != (0, 0):
            pass

    def _screener(self, is_bot: Callable[[str], bool] | None = None) -> Screener:
        enricher = shared_enricher()
        limits = fraud.Thresholds(min_seconds=3600, flood_clicks=3, ip_conversions=40)
        return Screener(
            self.store,
            fraud.ClickScreen(
                is_bot or (lambda ua: enricher.agent(ua).bot),
                fraud.Networks(["8.8.8.0/24"]),
                limits,
            ),
            fraud.ConversionScreen(enricher.country, limits),
            self.tracker.catalog.delivery_state,
            batch=97,
        )

    async def decide(self, share: float) -> None:
        for cid in self.rng.sample(self.conversions, int(len(self.conversions) * share)):
            row = await self.store.get_row("conversions", cid)
            assert row is not None
            to = {"pending": ["approved", "rejected"], "approved": ["reversed"]}.get(row["status"])
            if to:
                await lifecycle.change_status(self.store, cid, self.rng.choice(to), "test", "t")


async def build_world(store: Store, seed: int) -> World:
    clock = Clock()
    tracker = await open_tracker(store, ("test-secret",))
    tracker.clock = clock
    world = World(store, tracker, clock, random.Random(seed))
    await fx.import_rates(store, [("EUR", "2020-01-01", "1.0825")], "USD")
    offers = []
    for i, (currency, values) in enumerate(
        [
            # revenue: a fixed 7.25 (in the base currency), 12.5 % of the sale, none
            ("USD", {"payout_type": "cpa", "payout_amount": "5.00", **REVENUE[0]}),
            ("EUR", {"payout_type": "cps", "payout_percent": "8", "approval": "review"}),
            ("JPY", {"payout_type": "cpl", "payout_amount": "120", "approval": "review"}),
        ]
    ):
        adv = await admin.create_advertiser(store, {"name": f"Adv {i % 2}"})
        offer_id = await admin.create_offer(
            store,
            {
                "advertiser_id": adv,
                "name": f"Offer {i}",
                "destination_url": "https://shop.example/land",
                "currency": currency,
                **values,
            },
        )
        offers.append(offer_id)
    # terms changed after the offer was made
    await admin.update_offer(store, offers[1], {"revenue_type": "cps", "revenue_percent": "12.5"})
    affiliates = [await admin.create_affiliate(store, {"name": f"Aff {i}"}) for i in range(3)]
    for offer in offers:
        for aff in world.rng.sample(affiliates, 2):
            link_id = await admin.create_link(store, {"offer_id": offer, "affiliate_id": aff})
            row = await store.get_row("links", link_id)
            assert row is not None
            world.links.append(row)
    test_id = await store.create_link("testlink", offers[0], affiliates[0], is_test=True)
    world.test_link = dict(await store.get_row("links", test_id) or {})
    await tracker.catalog.reload()
    return world


async def value_yen(store: Store) -> None:
    await fx.import_rates(store, [("JPY", "2020-01-01", "0.0067")], "USD")


async def raw(store: Store, table: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await store.list_rows(table, {}, None, None, 1000, cursor, ascending=True)
        rows += page.items
        cursor = page.next_cursor
        if cursor is None:
            return rows


def local_bucket(kind: str, us: int, tz: ZoneInfo, whole_hours: bool) -> str:
    """The local period a moment falls in; outside whole-hour zones, that of its UTC hour."""
    if not whole_hours:
        us = us // HOUR_US * HOUR_US
    local = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)).astimezone(tz)
    if kind == "hour":
        return local.replace(minute=local.minute if not whole_hours else 0).isoformat(
            timespec="minutes"
        )
    if kind == "day":
        return local.date().isoformat()
    if kind == "week":
        return (local.date() - timedelta(days=local.weekday())).isoformat()
    return f"{local.year:04d}-{local.month:02d}"


def terms_of(conversion: dict[str, Any], offer: dict[str, Any]) -> tuple[str, str]:
    """The revenue terms a conversion is valued under: those it kept when it was recorded,
    (type, amount or percent); its offer's of now if it kept none (recorded before)."""
    kept = conversion.get("revenue_terms")
    if kept is not None:
        kind, _, value = kept.partition(":")
        return kind, value
    kind = offer["revenue_type"]
    return kind, offer["revenue_amount"] if kind == "cpa" else offer["revenue_percent"]


def revenue_of(terms: tuple[str, str], base_amount: int) -> int:
    """A conversion's revenue under its terms, in cents of the base currency (USD)."""
    kind, value = terms
    if kind == "cpa":
        return int(Decimal(value) * 100)
    share = Decimal(base_amount) * Decimal(value) / 100
    return int(share.quantize(Decimal(1), ROUND_HALF_UP))


def expected(
    clicks: list[dict[str, Any]],
    conversions: list[dict[str, Any]],
    offer_rows: dict[int, dict[str, Any]],
    params: dict[str, str],
    enricher: Enricher | None = None,
) -> tuple[dict[tuple[Any, ...], dict[str, Any]], dict[str, Any]]:
    """The report recomputed from raw rows: per group, and totals."""
    enricher = enricher or shared_enricher()
    offers = {i: o["advertiser_id"] for i, o in offer_rows.items()}
    tz = ZoneInfo(params.get("tz", "UTC"))
    whole = params.get("whole", "1") == "1"
    asked = parse_moment(params["from"], tz, "from")  # back to its hour in a whole-hour zone
    start = (asked // HOUR_US if whole else ceil_hour(asked)) * HOUR_US
    end = ceil_hour(parse_moment(params["to"], tz, "to", end=True)) * HOUR_US
    group = [g for g in params.get("group_by", "day").split(",") if g]
    by = params.get("by", "conversion")
    filters = {
        k: v for k, v in params.items() if k in ("offer", "country", "device", "sub1", "flag")
    }
    click_dims: dict[str, dict[str, Any]] = {}
    seen: set[tuple[int, int, str, str]] = set()
    out: dict[tuple[Any, ...], dict[str, Any]] = defaultdict(lambda: defaultdict(int))
    for c in sorted(clicks, key=lambda c: c["refid"]):
        agent = enricher.agent(c["user_agent"])
        dims = {
            "offer": c["offer_id"],
            "affiliate": c["affiliate_id"],
            "advertiser": offers[c["offer_id"]],
            "link": c["link_id"],
            **{f"sub{i}": c[f"sub{i}"] for i in range(1, 6)},
            "country": enricher.country(c["ip"]),
            "device": agent.device,
            "os": agent.os,
            "browser": agent.browser,
        }
        click_dims[c["refid"]] = dims
        dims = {**dims, "flag": fraud_flags(c["flags"])}
        if c["is_test"]:
            continue
        unique = False
        if not agent.bot:
            key = (c["created_at"] // (24 * HOUR_US), c["link_id"], c["ip"], c["user_agent"])
            unique = key not in seen
            seen.add(key)
        if not start <= c["created_at"] // HOUR_US * HOUR_US < end:
            continue
        if not matches(dims, filters):
            continue
        g = out[_key(group, dims, c["created_at"], tz, whole)]
        g["clicks"] += 1
        g["flagged_clicks"] += dims["flag"] != ""
        g["unique_clicks"] += unique
        g["bot_clicks"] += agent.bot
    for v in conversions:
        if v["is_test"]:
            continue
        at = v["clicked_at"] if by == "click" else v["created_at"]
        if not start <= at // HOUR_US * HOUR_US < end:
            continue
        dims = dict(click_dims.get(v["refid"]) or {})
        if not dims:
            geo = v["geo"].upper()
            dims = {
                "offer": v["offer_id"],
                "affiliate": v["affiliate_id"],
                "advertiser": v["advertiser_id"],
                "link": v["link_id"],
                **{f"sub{i}": v[f"sub{i}"] for i in range(1, 6)},
                "country": geo if len(geo) == 2 else "",
                "device": "",
                "os": "",
                "browser": "",
            }
        dims["flag"] = fraud_flags(v["flags"])
        if not matches(dims, filters):
            continue
        g = out[_key(group, dims, at, tz, whole)]
        status, valued = v["status"], v["base_amount"] is not None
        g["flagged_conversions"] += dims["flag"] != ""
        g[status] += 1
        g[f"{status}_commission"] += v["base_commission"] or 0
        if status in ("pending", "approved"):
            g["conversions"] += 1
            g["sale"] += v["base_amount"] or 0
            g["commission"] += v["base_commission"] or 0
            g["missing_rate"] += not valued
            terms = terms_of(v, offer_rows[v["offer_id"]])
            if terms[0]:
                g["with_revenue"] += 1
                if valued:
                    g["revenue"] += revenue_of(terms, v["base_amount"])
                    g["revenue_commission"] += v["base_commission"]
    total: dict[str, Any] = defaultdict(int)
    for g in out.values():
        for k, n in g.items():
            total[k] += n
    return {k: finish(g) for k, g in out.items()}, finish(total)


def matches(dims: dict[str, Any], filters: dict[str, str]) -> bool:
    for name, wanted in filters.items():
        if name != "flag":
            if str(dims[name]) != wanted:
                return False
        elif wanted == "none" or wanted == "any":
            if (dims["flag"] != "") != (wanted == "any"):
                return False
        elif wanted not in dims["flag"].split(","):
            return False
    return True


def _key(group: list[str], dims: dict[str, Any], at: int, tz: ZoneInfo, whole: bool) -> tuple:
    return tuple(
        local_bucket(g, at, tz, whole) if g in ("hour", "day", "week", "month") else dims[g]
        for g in group
    )


def cents(n: int) -> str:
    return f"{Decimal(n) / 100:.2f}"


def finish(g: dict[str, Any]) -> dict[str, Any]:
    clicks = g["clicks"]
    rate = None
    epc = None
    if clicks:
        q2, q4 = Decimal("0.01"), Decimal("0.0001")
        rate = str((Decimal(g["conversions"] * 100) / clicks).quantize(q2, ROUND_HALF_UP))
        epc = str((Decimal(g["commission"]) / 100 / clicks).quantize(q4, ROUND_HALF_UP))
    return {
        "clicks": clicks,
        "unique_clicks": g["unique_clicks"],
        "bot_clicks": g["bot_clicks"],
        "flagged_clicks": g["flagged_clicks"],
        "conversions": g["conversions"],
        "flagged_conversions": g["flagged_conversions"],
        "conversion_rate": rate,
        "sale_amount": cents(g["sale"]),
        "commission": cents(g["commission"]),
        "payable": cents(g["approved_commission"]),
        "epc": epc,
        "revenue": cents(g["revenue"]) if g["with_revenue"] else None,
        "profit": cents(g["revenue"] - g["revenue_commission"]) if g["with_revenue"] else None,
        "pending": g["pending"],
        "approved": g["approved"],
        "rejected": g["rejected"],
        "reversed": g["reversed"],
        "rejected_commission": cents(g["rejected_commission"]),
        "reversed_commission": cents(g["reversed_commission"]),
        "missing_rate": g["missing_rate"],
    }


def got(report: dict[str, Any]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """A report's rows keyed like `expected`'s, without names."""
    group = report["group_by"]
    out = {}
    for row in report["rows"]:
        key = tuple(row[g] for g in group)
        assert key not in out, key
        out[key] = {k: v for k, v in row.items() if k not in group and not k.endswith("_name")}
    return out
