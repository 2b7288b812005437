"""Report latency on large data, SQLite and PostgreSQL.

Loads N clicks and M conversions (with their ledger rows) straight into the raw tables
and into the hourly rollups, the way the rollup job would have left them (bulk inserts:
executemany on SQLite, COPY on PostgreSQL), then times each report read from the
rollups against the cheapest query over the raw rows that gives the same numbers (the
RefID key range for clicks, a scan of conversions), and the dashboard pages rendered
through the real ASGI app.

    python bench/reports.py --clicks 10000000 --conversions 200000 --engine both

Traffic is skewed as real traffic is (a few links, sub-IDs, countries and browsers take
most of it) over `--days` days up to now; countries are drawn, not looked up from IPs.
Results are printed as a Markdown table and saved under bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import sqlite3
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from clickback.domain import admin, levels  # noqa: E402
from clickback.domain.ports import CLICK_COLUMNS  # noqa: E402
from clickback.domain.refid import floor  # noqa: E402
from clickback.domain.reports import METRICS, run_report  # noqa: E402
from clickback.domain.reportspec import build_spec  # noqa: E402
from clickback.domain.rollup import shared_enricher  # noqa: E402
from clickback.domain.rollup_delta import (  # noqa: E402
    CLICK_FIELDS,
    CONVERSION_FIELDS,
    CONVERSION_SUMS,
    FACT_COLUMNS,
    by_day,
    leveled,
)
from clickback.storage import reports as sql  # noqa: E402

HOUR = 3_600_000_000
UAS = [
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/{v}.0.0.0 Safari/537.36",
        30,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{v} like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
        "like Gecko) Version/17.{v} Mobile/15E148 Safari/604.1",
        25,
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; SM-S9{v}8B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Mobile Safari/537.36",
        20,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_{v}) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/17.1 Safari/605.1.15",
        10,
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 17_{v} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.1 Mobile/15E148 Safari/604.1",
        5,
    ),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:12{v}.0) Gecko/20100101 Firefox/12{v}.0", 5),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", 2),
    ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", 2),
    ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", 1),
]
COUNTRIES = [
    "US",
    "DE",
    "GB",
    "FR",
    "IN",
    "BR",
    "CA",
    "AU",
    "ES",
    "IT",
    "NL",
    "PL",
    "SE",
    "MX",
    "JP",
    "TR",
    "ID",
    "PH",
    "VN",
    "ZA",
    "AR",
    "CH",
    "AT",
    "BE",
    "NO",
]


def zipf(n: int, s: float = 1.1) -> list[float]:
    return [1 / (i + 1) ** s for i in range(n)]


class World:
    """Entities (made through the domain) and the skewed draws of traffic."""

    def __init__(self, links: list[tuple[int, int, int, int]], seed: int):
        self.rng = random.Random(seed)
        self.links = links  # (link, offer, affiliate, advertiser)
        self.link_w = zipf(len(links), 1.0)
        self.subs1 = [f"s{i}" for i in range(30)]
        self.subs1_w = zipf(30)
        self.subs2 = ["", "push", "native", "search", "email", "social", "video", "retarget"]
        self.subs2_w = [8, 3, 2, 2, 1, 1, 1, 1]
        self.uas = [(t.replace("{v}", str(v)), w / 4) for t, w in UAS for v in range(4)]
        self.ua_w = [w for _, w in self.uas]
        self.country_w = zipf(len(COUNTRIES), 1.3)
        enricher = shared_enricher()
        self.agents = {ua: enricher.agent(ua) for ua, _ in self.uas}


async def make_entities(store: Any) -> list[tuple[int, int, int, int]]:
    advertisers = [await admin.create_advertiser(store, {"name": f"Adv {i}"}) for i in range(8)]
    offers = []
    for i in range(24):
        values = {"advertiser_id": advertisers[i % 8], "name": f"Offer {i}", "payout_type": "cps"}
        values |= {"payout_percent": "10", "destination_url": "https://shop.example/"}
        offers.append((await admin.create_offer(store, values), advertisers[i % 8]))
    affiliates = [await admin.create_affiliate(store, {"name": f"Aff {i}"}) for i in range(60)]
    rng = random.Random(1)
    links = []
    for i in range(400):
        offer, adv = offers[i % 24]
        aff = rng.choice(affiliates)
        link = await admin.create_link(store, {"offer_id": offer, "affiliate_id": aff})
        links.append((link, offer, aff, adv))
    return links


class Sink:
    """Where generated rows go: one SQLite file and/or one PostgreSQL schema."""

    def __init__(self, engine: str, target: Any):
        self.engine, self.target = engine, target

    async def copy(self, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        if self.engine == "sqlite":
            marks = ", ".join("?" * len(columns))
            conn: sqlite3.Connection = self.target
            conn.execute("BEGIN")
            conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
            conn.execute("COMMIT")
        else:
            conn2, schema = self.target
            await conn2.copy_records_to_table(
                table, records=rows, columns=list(columns), schema_name=schema
            )


async def copy_levels(sink: Sink, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    by_level: dict[int, list[tuple]] = defaultdict(list)
    for row in rows:
        by_level[row[0]].append(row[1:])
    for level, part in by_level.items():
        await sink.copy(f"{table}_{level}", columns, part)


ROLLUP_CLICKS = ("hour", *sql.KEY.split(", "), *sql.REST.split(", "))
ROLLUP_CLICKS += ("clicks", "unique_clicks", "bot_clicks")
ROLLUP_CONV = ("basis", "hour", *sql.KEY.split(", "), "status", *sql.REST.split(", "))
ROLLUP_CONV += CONVERSION_SUMS
CLICK_MASKS = levels.masks(CLICK_FIELDS)
CLICK_DAILY = levels.masks(CLICK_FIELDS, daily=True)
CONVERSION_DAILY = levels.masks(CONVERSION_FIELDS, daily=True)
CONVERSION_MASKS = levels.masks(CONVERSION_FIELDS)
CONV_COLUMNS = [
    "id",
    "refid",
    "offer_id",
    "affiliate_id",
    "advertiser_id",
    "link_id",
    "sub1",
    "sub2",
    "sub3",
    "sub4",
    "sub5",
    "ordernumber",
    "orderamount",
    "currency",
    "commission",
    "commission_currency",
    "coupon",
    "geo",
    "commissionid",
    "status",
    "is_test",
    "click_missing",
    "created_at",
    "clicked_at",
    "rule",
    "flags",
    "base_currency",
    "rate",
    "base_amount",
    "base_commission",
]
LEDGER_COLUMNS = [
    "id",
    "received_at",
    "method",
    "ip",
    "params",
    "refid",
    "ordernumber",
    "advertiser_id",
    "outcome",
    "http_status",
    "errors",
    "conversion_id",
    "code",
    "link_id",
    "is_test",
]


async def load(world: World, sinks: list[Sink], clicks: int, conversions: int, days: int) -> dict:
    rng = world.rng
    end_hour = time.time_ns() // 1000 // HOUR
    start_hour = end_hour - days * 24
    hours = list(range(start_hour, end_hour))
    shape = [1 + 0.6 * math.sin((h % 24 - 8) / 24 * 6.283) for h in hours]
    per_hour = [round(clicks * w / sum(shape)) for w in shape]
    p_convert = conversions / clicks
    conv_rollup: dict[tuple, list[int]] = defaultdict(lambda: [0] * 7)  # no revenue terms
    facts, conv_rows, ledger = [], [], []
    statuses = ["approved", "pending", "rejected", "reversed"]
    seen: set[tuple[int, int, int]] = set()
    day = None
    n = 0
    pending_clicks: list[tuple] = []
    pending_rollups: list[tuple] = []
    last_refid = ""
    day_rollup: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
    for hour, count in zip(hours, per_hour, strict=True):
        if hour // 24 != day:
            day, seen = hour // 24, set()
            pending_rollups += leveled(day_rollup, CLICK_DAILY, 3)
            day_rollup = defaultdict(lambda: [0, 0, 0])
        links = rng.choices(world.links, world.link_w, k=count)
        sub1 = rng.choices(world.subs1, world.subs1_w, k=count)
        sub2 = rng.choices(world.subs2, world.subs2_w, k=count)
        uas = rng.choices(world.uas, world.ua_w, k=count)
        countries = rng.choices(COUNTRIES, world.country_w, k=count)
        offsets = sorted(rng.randrange(HOUR) for _ in range(count))
        rollup: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
        for i in range(count):
            n += 1
            at = hour * HOUR + offsets[i]
            link, offer, aff, adv = links[i]
            ua = uas[i][0]
            agent = world.agents[ua]
            ip_n = rng.randrange(4_000_000)
            ip = f"{11 + ip_n % 200}.{ip_n >> 16 & 255}.{ip_n >> 8 & 255}.{ip_n & 255}"
            refid = f"{floor(at // 1000)[:8]}{n:028d}"
            last_refid = refid
            pending_clicks.append(
                (refid, link, offer, aff, sub1[i], sub2[i], "", "", "", ip, ua, "", at, 0)
            )
            unique = 0
            if not agent.bot and (link, ip_n, hash(ua)) not in seen:
                seen.add((link, ip_n, hash(ua)))
                unique = 1
            dims = (link, sub1[i], sub2[i], "", "", "", countries[i], agent.device, agent.os)
            dims += (agent.browser, "")  # no fraud flags
            sums = rollup[(*dims, offer, aff, adv)]
            sums[0] += 1
            sums[1] += unique
            sums[2] += agent.bot
            if rng.random() < p_convert:
                cid = len(conv_rows) + 1
                conv_at = min(at + int(rng.expovariate(1 / (6 * HOUR))), end_hour * HOUR - 1)
                status = rng.choices(statuses, [60, 25, 10, 5])[0]
                amount = rng.randrange(1000, 30000)
                paid = amount // 10
                conv_rows.append(
                    (
                        cid,
                        refid,
                        offer,
                        aff,
                        adv,
                        link,
                        sub1[i],
                        sub2[i],
                        "",
                        "",
                        "",
                        f"O{cid}",
                        amount,
                        "USD",
                        paid,
                        "USD",
                        "",
                        "",
                        "",
                        status,
                        0,
                        0,
                        conv_at,
                        at,
                        "default",
                        "",
                        "USD",
                        "1",
                        amount,
                        paid,
                    )
                )
                ledger.append(
                    (
                        cid,
                        conv_at,
                        "GET",
                        "198.51.100.1",
                        "{}",
                        refid,
                        f"O{cid}",
                        adv,
                        "accepted",
                        200,
                        "[]",
                        cid,
                        "",
                        link,
                        0,
                    )
                )
                for basis, h in (("conversion", conv_at // HOUR), ("click", hour)):
                    c = conv_rollup[(basis, h, *dims, status, offer, aff, adv)]
                    c[0] += 1
                    c[1] += amount
                    c[2] += paid
                facts.append(
                    # ..., revenue, has_revenue: no offer here has revenue terms
                    (
                        cid,
                        status,
                        1,
                        amount,
                        paid,
                        hour,
                        conv_at // HOUR,
                        *dims,
                        offer,
                        aff,
                        adv,
                        0,
                        0,
                    )
                )
        pending_rollups += leveled({(hour, *k): v for k, v in rollup.items()}, CLICK_MASKS, 3)
        for k, v in rollup.items():
            total = day_rollup[(hour // 24 * 24, *k)]
            for j in range(3):
                total[j] += v[j]
        if hour == hours[-1]:
            pending_rollups += leveled(day_rollup, CLICK_DAILY, 3)
        if len(pending_clicks) >= 200_000 or hour == hours[-1]:
            for sink in sinks:
                await sink.copy("clicks", CLICK_COLUMNS, pending_clicks)
                await copy_levels(sink, "report_clicks", ROLLUP_CLICKS, pending_rollups)
            print(f"  {n:>11,} clicks loaded", end="\r", flush=True)
            pending_clicks, pending_rollups = [], []
    conv_rollup_rows = leveled(conv_rollup, CONVERSION_MASKS, 7)
    conv_rollup_rows += leveled(by_day(conv_rollup, 1), CONVERSION_DAILY, 7)
    for sink in sinks:
        await sink.copy("conversions", tuple(CONV_COLUMNS), conv_rows)
        await sink.copy("postbacks", tuple(LEDGER_COLUMNS), ledger)
        await copy_levels(sink, "report_conversions", ROLLUP_CONV, conv_rollup_rows)
        await sink.copy("report_facts", FACT_COLUMNS, facts)
    print()
    return {
        "clicks": n,
        "conversions": len(conv_rows),
        "click_rollup_rows": None,
        "conversion_rollup_rows": len(conv_rollup_rows),
        "last_refid": last_refid,
    }


# (name, report parameters, raw-row baseline or None when raw rows cannot answer it)
CASES: list[tuple[str, dict[str, str], str | None]] = [
    ("totals, last 7 days", {"group_by": "", "days": "7"}, "totals"),
    ("by day, 30 days", {"group_by": "day"}, "day"),
    ("by day, 30 days, Europe/Berlin", {"group_by": "day", "tz": "Europe/Berlin"}, "day"),
    ("by hour, last 48 h", {"group_by": "hour", "days": "2"}, "hour"),
    ("top offers by commission", {"group_by": "offer", "sort": "-commission"}, "offer"),
    ("by offer and sub1", {"group_by": "offer,sub1"}, "offer,sub1"),
    ("one offer by day and sub1", {"group_by": "day,sub1", "offer": "1"}, "offer1"),
    ("by country, device, browser", {"group_by": "country,device,browser"}, None),
    ("by affiliate, by click time", {"group_by": "affiliate", "by": "click"}, None),
]


def baseline_sql(kind: str) -> tuple[str, str]:
    """The raw-row queries (clicks, conversions) for the same numbers."""
    key = {
        "totals": "",
        "day": "created_at / 86400000000",
        "hour": "created_at / 3600000000",
        "offer": "offer_id",
        "offer,sub1": "offer_id, sub1",
        "offer1": "created_at / 86400000000, sub1",
    }[kind]
    where = " AND offer_id = 1" if kind == "offer1" else ""
    select = f"{key}, " if key else ""
    group = f" GROUP BY {key}" if key else ""
    clicks = (
        f"SELECT {select}count(*) AS clicks FROM clicks WHERE refid >= ? AND refid < ? "
        f"AND is_test = 0{where}{group}"
    )
    conversions = (
        f"SELECT {select}status, count(*), sum(base_amount), sum(base_commission) "
        f"FROM conversions WHERE created_at >= ? AND created_at < ? AND is_test = 0{where}"
        f"{group}{', status' if key else ' GROUP BY status'}"
    )
    return clicks, conversions


async def timed(fn: Any, repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = await fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), out


async def measure(store: Any, repeat: int, days: int) -> list[dict[str, Any]]:
    now = time.time_ns() // 1000
    results = []
    for name, case, base in CASES:
        params = {k: [v] for k, v in case.items() if k != "days"}
        span = int(case.get("days", days))
        params["from"] = [time.strftime("%Y-%m-%dT%H:00Z", time.gmtime(now / 1e6 - span * 86400))]
        spec = build_spec(params, now, METRICS)
        ms, report = await timed(lambda spec=spec: run_report(store, spec, "USD"), repeat)
        row = {"report": name, "rows": report["total_rows"], "rollup_ms": round(ms, 1)}
        if base:
            lo, hi = spec.start_hour * HOUR, spec.end_hour * HOUR
            clicks_sql, conv_sql = baseline_sql(base)

            async def raw(
                lo: int = lo, hi: int = hi, c: str = clicks_sql, v: str = conv_sql
            ) -> Any:
                await store._fetch(c, floor(lo // 1000), floor(hi // 1000))
                return await store._fetch(v, lo, hi)

            raw_ms, _ = await timed(raw, max(1, repeat // 2))
            row["raw_ms"] = round(raw_ms, 1)
            row["clicks"] = report["totals"]["clicks"]
        results.append(row)
        print(f"    {name:<34} {row['rollup_ms']:>8} ms  raw {row.get('raw_ms', '–'):>9} ms")
    return results


async def pages(store: Any, repeat: int) -> list[dict[str, Any]]:
    """Server-side time of each dashboard page, through the real app (logged in)."""
    import re

    import httpx

    from clickback.config import Settings
    from clickback.web.app import ClickbackApp

    app = ClickbackApp(Settings(database_url="-", admin_token="bench", rollup_interval=0), store)
    await app.startup()
    transport = httpx.ASGITransport(app=app)
    out = []
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as c:
        form = (await c.get("/ui/login")).text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form)
        assert csrf
        await c.post("/ui/login", data={"token": "bench", "csrf": csrf.group(1)})
        for path in (
            "/ui/",
            "/ui/reports?time=day&group=offer&group=sub1",
            "/ui/reports?time=&group=country&group=device&group=browser",
            "/ui/conversions",
            "/ui/conversions?status=pending&offer_id=3",
            "/ui/conversions/1",
            "/ui/postbacks",
            "/ui/offers/1",
        ):

            async def get(path: str = path) -> httpx.Response:
                r = await c.get(path)
                assert r.status_code == 200, (path, r.status_code, r.text[:300])
                return r

            ms, _ = await timed(get, repeat)
            out.append({"page": path, "ms": round(ms, 1)})
            print(f"    {path:<58} {ms:>8.1f} ms")
    await app.shutdown()
    return out


async def open_engine(engine: str, args: argparse.Namespace) -> tuple[Any, Sink]:
    if engine == "sqlite":
        from clickback.storage.sqlite import SqliteStore

        path = Path(args.sqlite)
        for suffix in ("", "-wal", "-shm") if not args.reuse else ():
            for file in ("", "-reports"):
                Path(f"{path}{file}{suffix}").unlink(missing_ok=True)
        store = SqliteStore(str(path))
        await store.migrate()
        bulk = sqlite3.connect(str(path), isolation_level=None)
        bulk.execute("ATTACH DATABASE ? AS reports", (f"{path}-reports",))
        bulk.execute("PRAGMA synchronous = OFF")
        bulk.execute("PRAGMA reports.synchronous = OFF")
        return store, Sink("sqlite", bulk)
    import asyncpg

    from clickback.storage.postgres import PostgresStore

    admin_conn = await asyncpg.connect(args.pg)
    if not args.reuse:
        await admin_conn.execute(f"DROP SCHEMA IF EXISTS {args.schema} CASCADE")
        await admin_conn.execute(f"CREATE SCHEMA {args.schema}")
    store = PostgresStore(f"{args.pg}?schema={args.schema}")
    await store.open()
    await store.migrate()
    await admin_conn.execute(f"SET search_path = {args.schema}")
    return store, Sink("postgres", (admin_conn, args.schema))


async def already_loaded(store: Any) -> dict[str, Any]:
    """What an earlier run loaded, as `load` reports it."""
    clicks = await store._fetch("SELECT count(*) AS n, max(refid) AS last FROM clicks")
    conversions = await store._fetch("SELECT count(*) AS n FROM conversions")
    print(f"reusing {clicks[0]['n']:,} clicks and {conversions[0]['n']:,} conversions")
    return {
        "clicks": int(clicks[0]["n"]),
        "conversions": int(conversions[0]["n"]),
        "click_rollup_rows": None,
        "conversion_rollup_rows": None,
        "last_refid": clicks[0]["last"],
    }


async def finish(store: Any, sink: Sink, loaded: dict[str, Any]) -> dict[Any, int]:
    """Watermarks past the loaded rows, sequences past their ids, statistics fresh."""
    await store._write(
        "UPDATE report_state SET clicks_after = ?, conversions_after = ? WHERE name = 'rollup'",
        loaded["last_refid"],
        loaded["conversions"],
    )
    # as if the fraud screening had seen every loaded row (and flagged none)
    await store._write(
        "INSERT INTO jobs (name, watermark, lease_until, owner) VALUES ('screening', ?, 0, '') "
        "ON CONFLICT (name) DO UPDATE SET watermark = excluded.watermark",
        loaded["last_refid"],
    )
    await store._write("UPDATE conversions SET screened = 1")
    if sink.engine == "postgres":
        conn = sink.target[0]
        for table in ("conversions", "postbacks"):
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )
        await conn.execute("ANALYZE")
    else:
        sink.target.execute("ANALYZE")
    counts = {}
    for level in [*range(len(levels.LEVELS)), *levels.DAILY]:
        rows = await store._fetch(f"SELECT count(*) AS n FROM report_clicks_{level}")
        counts[level] = int(rows[0]["n"])
    return counts


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clicks", type=int, default=10_000_000)
    parser.add_argument("--conversions", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--engine", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--sqlite", default=str(ROOT / "bench" / "results" / "reports.db"))
    parser.add_argument(
        "--pg",
        default=os.environ.get(
            "CLICKBACK_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--schema", default="bench_reports")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="time the data a previous run loaded (migrated to this revision) instead of loading",
    )
    args = parser.parse_args()
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    engines = ["sqlite", "postgres"] if args.engine == "both" else [args.engine]
    opened = [await open_engine(e, args) for e in engines]
    if args.reuse:
        loaded = await already_loaded(opened[0][0])
    else:
        links: list[tuple[int, int, int, int]] = []
        for store, _ in opened:
            links = await make_entities(store)  # the same ids on every (fresh) engine
        print(f"loading {args.clicks:,} clicks and {args.conversions:,} conversions into {engines}")
        t = time.perf_counter()
        loaded = await load(
            World(links, args.seed),
            [s for _, s in opened],
            args.clicks,
            args.conversions,
            args.days,
        )
        print(f"  loaded in {time.perf_counter() - t:.0f} s")
    out: dict[str, Any] = {"args": vars(args), "loaded": loaded, "engines": {}}
    for engine, (store, sink) in zip(engines, opened, strict=True):
        rollup_rows = await finish(store, sink, loaded)
        print(f"{engine}: click rollup rows per level {rollup_rows}")
        out["engines"][engine] = {
            "click_rollup_rows": rollup_rows,
            "reports": await measure(store, args.repeat, args.days),
            "pages": await pages(store, args.repeat),
        }
        await store.close()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = ROOT / "bench" / "results" / f"reports-{stamp}.json"
    path.write_text(json.dumps(out, indent=2))
    print(table(out))
    print(f"saved {path}")


def table(out: dict[str, Any]) -> str:
    engines = list(out["engines"])
    head = (
        "| report | rows | "
        + " | ".join(f"{e} rollups ms | {e} raw ms | ×" for e in engines)
        + " |"
    )
    lines = [head, "|" + "---|" * (2 + 3 * len(engines))]
    first = out["engines"][engines[0]]["reports"]
    for i, r in enumerate(first):
        cells = [r["report"], str(r["rows"])]
        for e in engines:
            x = out["engines"][e]["reports"][i]
            raw = x.get("raw_ms")
            ratio = f"{raw / x['rollup_ms']:.0f}" if raw and x["rollup_ms"] else "–"
            cells += [f"{x['rollup_ms']}", f"{raw}" if raw else "n/a", ratio]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| page | " + " | ".join(f"{e} ms" for e in engines) + " |"]
    lines.append("|---|" + "---|" * len(engines))
    for i, p in enumerate(out["engines"][engines[0]]["pages"]):
        cells = [f"`{p['page']}`"] + [str(out["engines"][e]["pages"][i]["ms"]) for e in engines]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    asyncio.run(main())
