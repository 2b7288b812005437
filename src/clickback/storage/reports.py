"""SQL for reports, shared by both engines: the rollup job's reads and its one-transaction
apply, and the report queries over the hourly rollup tables.

`SqlStore` inherits this mixin. Reads go through the store's `_fetch`; the apply runs a
guard statement and batches of rows (`executemany`) in one transaction
(`_reports_tx`, the part that differs per engine). On SQLite the report tables are in a
database file of their own, written from a thread on a connection of its own, so that
an apply never holds back the group-commit writer's clicks and postbacks. Both engines
spread a rollup's keys over the levels in SQL (`spread_sql`, `pg_spread_sql`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import orjson

from clickback.domain import levels
from clickback.domain.reportspec import ReportSpec, TimePlan
from clickback.domain.rollup import NO_CAP
from clickback.domain.rollup_delta import (
    CLICK_FIELDS,
    CLICK_READ,
    CONVERSION_SUMS,
    FACT_COLUMNS,
    Delta,
    Mark,
)
from clickback.domain.rollup_delta import CONVERSION_FIELDS as CONVERSION_KEY
from clickback.storage.primitives import SqlPrimitives, Steps, padded_chunks

KEY = "link_id, sub1, sub2, sub3, sub4, sub5, country, device, os, browser, flags"
REST = "offer_id, affiliate_id, advertiser_id"
UPSERT_CLICKS = (
    "INSERT INTO {t} "
    f"(hour, {KEY}, {REST}, clicks, unique_clicks, bot_clicks) "
    f"VALUES ({', '.join('?' * 18)}) ON CONFLICT (hour, {KEY}) DO UPDATE SET "
    "clicks = {t}.clicks + excluded.clicks, "
    "unique_clicks = {t}.unique_clicks + excluded.unique_clicks, "
    "bot_clicks = {t}.bot_clicks + excluded.bot_clicks"
)
UPSERT_CONVERSIONS = (
    "INSERT INTO {t} "
    f"(basis, hour, {KEY}, status, {REST}, {', '.join(CONVERSION_SUMS)}) "
    f"VALUES ({', '.join('?' * 24)}) ON CONFLICT (basis, hour, {KEY}, status) DO UPDATE SET "
    + ", ".join(f"{m} = {{t}}.{m} + excluded.{m}" for m in CONVERSION_SUMS)
)
UPSERT_FACT = (
    f"INSERT INTO report_facts ({', '.join(FACT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(FACT_COLUMNS))}) ON CONFLICT (conversion_id) DO UPDATE SET "
    "status = excluded.status, flags = excluded.flags, valued = excluded.valued, "
    "sale = excluded.sale, commission = excluded.commission, revenue = excluded.revenue, "
    "has_revenue = excluded.has_revenue"
)
CLICK_SUMS = ("clicks", "unique_clicks", "bot_clicks")


_BLANK_TEXT = "''"  # a text column a level leaves out, in SQL


def spread_sql(kind: str, fields: tuple[str, ...], sums: tuple[str, ...], upsert: str) -> list[str]:
    """SQLite's way to spread a rollup's keys over the levels (`domain.levels`): the keys
    and their sums are put in a staging table once (`STAGE`), then one `INSERT … SELECT`
    per level table blanks the columns the level leaves out and upserts the sums, in C,
    instead of a Python tuple and a bound parameter per value for every level (a click's
    rollup 45 -> 35 µs of CPU, `bench/deferred_cost.py`).

    The levels without sub-IDs read a second staging table instead: the keys added up
    once without their sub-IDs (`GROUP BY`). A key is about one a click when sub-IDs
    and visitors vary, and every staged key cost an upsert at every level; the levels
    by country, device or links alone are then a few rows, so seven levels of fourteen
    upsert those few. The sub-ID levels add up keys that meet by the upsert itself, row
    after row (a `GROUP BY` first, measured when the spreading moved from Python to
    SQL with one visitor, cost more than the Python spreading). The levels hold the
    same sums as with `Delta.click_rows` / `conversion_rows`; unlike those, a level row
    whose sums cancel out is still written, which leaves it as it was, since a negative
    sum only ever takes back what an earlier apply added to that row."""
    conflict = upsert[upsert.index(" ON CONFLICT") :]
    stage, coarse = f"temp.rollup_stage_{kind}", f"temp.rollup_coarse_{kind}"
    kept = [name for name in fields if name not in levels.SUBS]
    statements = [
        f"INSERT INTO {coarse} "
        f"SELECT {', '.join(_BLANK_TEXT if n in levels.SUBS else n for n in fields)}, "
        f"{', '.join(f'sum({n})' for n in sums)} FROM {stage} GROUP BY {', '.join(kept)}"
    ]
    for table, exprs in _level_exprs(kind, fields):
        subs = {e for n, e in zip(fields, exprs, strict=True) if n in levels.SUBS}
        statements.append(
            f"INSERT INTO {table} ({', '.join((*fields, *sums))}) "
            f"SELECT {', '.join(exprs)}, {', '.join(sums)} "
            f"FROM {coarse if subs == {_BLANK_TEXT} else stage} WHERE true"
            + conflict.format(t=table)
        )
    return [*statements, f"DELETE FROM {coarse}"]


def _level_exprs(kind: str, fields: tuple[str, ...]) -> list[tuple[str, list[str]]]:
    """Per level table, the expression of each key field: the field, or the blank the
    level puts in its place (and the day's first hour for `hour` at a daily level)."""
    out = []
    for daily in (False, True):
        for number, blanks in levels.masks(fields, daily):
            exprs = [
                ("hour / 24 * 24" if daily and name == "hour" else name)
                if blank is None
                else (_BLANK_TEXT if blank == "" else str(int(blank)))
                for name, blank in zip(fields, blanks, strict=True)
            ]
            out.append((f"report_{kind}_{number}", exprs))
    return out


TEXT_FIELDS = frozenset({"basis", "status", "flags", "country", "device", "os", "browser"})
TEXT_FIELDS |= levels.SUBS


def pg_param(rows: Sequence[Sequence[Any]]) -> str:
    """Rows as the one parameter `pg_rows` and `pg_spread_sql` read: a JSON array of
    arrays."""
    return orjson.dumps(list(rows)).decode()


def pg_rows(names: Sequence[str]) -> str:
    """PostgreSQL: a query of the rows sent as one parameter, a JSON array of arrays (each
    row's values in the order of `names`), typed by name (`TEXT_FIELDS` text, the rest
    bigint). One statement then takes every row: `executemany` sends a statement a row,
    which PostgreSQL runs each on its own (the visitor lookup 20.6 -> 8.3 us a click, the
    facts 32.5 -> 20.4 us a conversion, `bench/deferred_cost.py --pg URL --statements`)."""
    columns = ", ".join(
        f"(r->>{i})::{'text' if name in TEXT_FIELDS else 'bigint'} AS {name}"
        for i, name in enumerate(names)
    )
    return f"SELECT {columns} FROM jsonb_array_elements(?::jsonb) AS r"


PG_UPSERT_FACT = (
    f"INSERT INTO report_facts ({', '.join(FACT_COLUMNS)}) {pg_rows(FACT_COLUMNS)}"
    + UPSERT_FACT[UPSERT_FACT.index(" ON CONFLICT") :]
)


def pg_spread_sql(kind: str, fields: tuple[str, ...], sums: tuple[str, ...], upsert: str) -> str:
    """PostgreSQL's way to spread a rollup's keys over the levels: one statement whose
    parameter is the keys and their sums as a JSON array of arrays (one row a key, not
    one a key and level: the Python spreading sent 28 rows a conversion, each executed
    on its own), read once and upserted into every level table by a data-modifying CTE
    each, grouped first, since one statement may not update a row twice.

    The array is read as `jsonb`, parsed once: `->>` on `json` parses the element's text
    again for every field. The levels without sub-IDs group the keys added up once
    without their sub-IDs (`c`), as on SQLite (`spread_sql`), not every key again. With
    keys of varied sub-IDs, a click's rollup 234 -> 189 us of CPU together, PostgreSQL's
    part 183 -> 134 (`bench/deferred_cost.py --pg URL`, docs/performance-log.md)."""
    conflict = upsert[upsert.index(" ON CONFLICT") :]
    kept = [name for name in fields if name not in levels.SUBS]
    coarse = ", ".join(f"{_BLANK_TEXT} AS {n}" if n in levels.SUBS else n for n in fields)
    parts = [
        f"k AS ({pg_rows((*fields, *sums))})",
        f"c AS (SELECT {coarse}, {', '.join(f'sum({n}) AS {n}' for n in sums)} "
        f"FROM k GROUP BY {', '.join(kept)})",
    ]
    grouped = ", ".join(str(i + 1) for i in range(len(fields)))
    totals = ", ".join(f"sum({name})::bigint" for name in sums)
    for n, (table, exprs) in enumerate(_level_exprs(kind, fields)):
        subs = {e for name, e in zip(fields, exprs, strict=True) if name in levels.SUBS}
        parts.append(
            f"l{n} AS (INSERT INTO {table} ({', '.join((*fields, *sums))}) "
            f"SELECT {', '.join(exprs)}, {totals} FROM {'c' if subs == {_BLANK_TEXT} else 'k'} "
            f"GROUP BY {grouped}" + conflict.format(t=table) + ")"
        )
    return f"WITH {', '.join(parts)} SELECT 1"


STAGE = [  # SQLite's staging tables for `spread_sql`, two a kind per rollup connection
    f"CREATE TEMP TABLE IF NOT EXISTS rollup_{table}_{kind} ({', '.join((*fields, *sums))})"
    for kind, fields, sums in (
        ("clicks", CLICK_FIELDS, CLICK_SUMS),
        ("conversions", CONVERSION_KEY, CONVERSION_SUMS),
    )
    for table in ("stage", "coarse")
]
STAGE.append("CREATE TEMP TABLE IF NOT EXISTS rollup_stage_visitors (day, link_id, visitor)")
_NEW_VISITORS = (
    "INSERT INTO report_visitors (day, link_id, visitor) {select} "
    "ON CONFLICT (day, link_id, visitor) DO NOTHING"
)
# `updated_at` is when the rollups were last applied, and grows with every apply whatever
# the clocks of the processes that apply (`Mark.applied`)
CLAIM = (
    "UPDATE report_state SET owner = ?, lease_until = ? WHERE name = 'rollup' "
    "AND (owner = ? OR lease_until < ?) "
    "RETURNING clicks_after, conversions_after, events_after, updated_at"
)
ADVANCE = (
    "UPDATE report_state SET clicks_after = ?, conversions_after = ?, events_after = ?, "
    "updated_at = CASE WHEN ? > updated_at THEN ? ELSE updated_at + 1 END "
    "WHERE name = 'rollup' AND owner = ? AND clicks_after = ? "
    "AND conversions_after = ? AND events_after = ? RETURNING name"
)
# a conversion whose click row is stored takes every dimension from it, its sub-IDs too:
# a click that committed after its conversion (another node's batch) left the
# conversion's own blank
# the ids skipped over that a tick looks for: of each kind the `limit` oldest (the next to
# expire, looked for a last time) and the `limit` newest (the likeliest to commit now);
# PostgreSQL skips an id for every duplicate postback of another batch, so more may wait
GAPS = (
    "SELECT * FROM ("
    + " UNION ".join(
        f"SELECT * FROM (SELECT kind, id, noted_at FROM report_gaps WHERE kind = '{kind}' "
        f"ORDER BY id {order} LIMIT ?) AS g{n}"
        for n, (kind, order) in enumerate(
            (k, o) for k in ("conversion", "event") for o in ("ASC", "DESC")
        )
    )
    + ") AS gaps ORDER BY kind, id"
)
CONVERSION_FIELDS = (
    "c.id, c.refid, c.offer_id, c.affiliate_id, c.advertiser_id, c.link_id, "
    + ", ".join(f"coalesce(k.sub{i}, c.sub{i}) AS sub{i}" for i in range(1, 6))
    + ", c.status, c.is_test, c.base_amount, c.base_commission, "
    "c.created_at, c.clicked_at, c.geo, c.flags, c.revenue_terms, k.ip, k.user_agent "
    "FROM conversions AS c LEFT JOIN clicks AS k ON k.refid = c.refid"
)
SPREAD = {
    "clicks": spread_sql("clicks", CLICK_FIELDS, CLICK_SUMS, UPSERT_CLICKS),
    "conversions": spread_sql("conversions", CONVERSION_KEY, CONVERSION_SUMS, UPSERT_CONVERSIONS),
}
PG_SPREAD = {
    "clicks": pg_spread_sql("clicks", CLICK_FIELDS, CLICK_SUMS, UPSERT_CLICKS),
    "conversions": pg_spread_sql(
        "conversions", CONVERSION_KEY, CONVERSION_SUMS, UPSERT_CONVERSIONS
    ),
}


def staged(kind: str, rows: list[tuple[Any, ...]]) -> Steps:
    """Steps that stage the keys of one kind and spread them over the levels in SQL."""
    if not rows:
        return []
    stage = f"temp.rollup_stage_{kind}"
    return [
        (f"INSERT INTO {stage} VALUES ({_marks(len(rows[0]))})", rows),
        *((sql, [()]) for sql in SPREAD[kind]),
        (f"DELETE FROM {stage}", [()]),
    ]


def pg_staged(kind: str, rows: list[tuple[Any, ...]]) -> Steps:
    """The step that spreads the keys of one kind over the levels on PostgreSQL."""
    return [(PG_SPREAD[kind], [(pg_param(rows),)])] if rows else []


def new_visitors(engine: str, visitors: set[tuple[int, int, int]]) -> Steps:
    """Steps that add a rollup's new unique visitors, not sorted in Python: `sorted()` of
    a backlog's visitors (tens of thousands of tuples, 43-62 ms for 50,000) never lets go
    of the GIL, so every other thread waited for it, the event loop's included. SQLite
    stages them and inserts them in key order; PostgreSQL takes them all in one
    statement (`pg_rows`)."""
    if not visitors:
        return []
    if engine == "sqlite":
        stage = "temp.rollup_stage_visitors"
        return [
            (f"INSERT INTO {stage} VALUES (?, ?, ?)", list(visitors)),
            (
                _NEW_VISITORS.format(select=f"SELECT * FROM {stage} WHERE true ORDER BY 1, 2, 3"),
                [()],
            ),
            (f"DELETE FROM {stage}", [()]),
        ]
    select = pg_rows(("day", "link_id", "visitor"))
    return [(_NEW_VISITORS.format(select=select), [(pg_param(list(visitors)),)])]


PG_KNOWN_VISITORS = (
    f"WITH k AS ({pg_rows(('day', 'link_id', 'visitor'))}) "
    "SELECT v.day, v.link_id, v.visitor FROM k JOIN report_visitors AS v "
    "ON v.day = k.day AND v.link_id = k.link_id AND v.visitor = k.visitor"
)


def known_visitors_sql(n: int) -> str:
    """Which of n (day, link_id, visitor) keys are in `report_visitors`: the keys joined
    to the table, so that each is looked up by the primary key (SQLite scans the whole
    table for a row-value `IN (VALUES …)`, a day's visitors on every rollup pass)."""
    values = ", ".join(["(CAST(? AS INTEGER), CAST(? AS BIGINT), CAST(? AS BIGINT))"] * n)
    return (
        f"WITH k (day, link_id, visitor) AS (VALUES {values}) "
        "SELECT v.day, v.link_id, v.visitor FROM k JOIN report_visitors AS v "
        "ON v.day = k.day AND v.link_id = k.link_id AND v.visitor = k.visitor"
    )


def _marks(n: int) -> str:
    return ", ".join("?" * n)


class ReportSql(SqlPrimitives):
    # -- the rollup job -------------------------------------------------------------

    async def rollup_claim(self, owner: str, now_us: int, lease_us: int) -> Mark | None:
        row = await self._reports_tx((CLAIM, (owner, now_us + lease_us, owner, now_us)), [])
        if row is None:
            return None
        return Mark(
            row["clicks_after"],
            int(row["conversions_after"]),
            int(row["events_after"]),
            int(row["updated_at"]),
        )

    async def rollup_release(self, owner: str) -> None:
        await self._write(
            "UPDATE report_state SET lease_until = 0 WHERE name = 'rollup' AND owner = ?", owner
        )

    async def rollup_clicks(
        self, after: str, before: str, limit: int, through: str = NO_CAP
    ) -> list[tuple[Any, ...]]:
        return await self._fetch_tuples(
            f"SELECT {', '.join(CLICK_READ)} FROM clicks "
            "WHERE refid > ? AND refid < ? AND refid <= ? ORDER BY refid LIMIT ?",
            after,
            before,
            through,
            limit,
        )

    async def rollup_conversions(
        self, after: int, limit: int, ids: Sequence[int] = ()
    ) -> list[dict[str, Any]]:
        if not ids:
            return (
                []
                if limit == 0
                else await self._fetch(
                    f"SELECT {CONVERSION_FIELDS} WHERE c.id > ? ORDER BY c.id LIMIT ?", after, limit
                )
            )
        out: list[dict[str, Any]] = []
        for part in padded_chunks(ids):
            out += await self._fetch(
                f"SELECT {CONVERSION_FIELDS} WHERE c.id IN ({_marks(len(part))}) ORDER BY c.id",
                *part,
            )
        return out

    async def rollup_events(
        self, after: int, limit: int, ids: Sequence[int] = ()
    ) -> list[dict[str, Any]]:
        sql = (
            "SELECT e.id, e.conversion_id, c.status, c.flags "
            "FROM conversion_events AS e JOIN conversions AS c ON c.id = e.conversion_id"
        )
        if not ids:
            return (
                []
                if limit == 0
                else await self._fetch(f"{sql} WHERE e.id > ? ORDER BY e.id LIMIT ?", after, limit)
            )
        out: list[dict[str, Any]] = []
        for part in padded_chunks(ids):
            out += await self._fetch(f"{sql} WHERE e.id IN ({_marks(len(part))})", *part)
        return out

    async def rollup_pending(self) -> dict[str, int | None]:
        """When the oldest click, conversion and status change not yet in the rollups
        were stored (µs; None when none waits), and when the rollups were last applied."""
        [state] = await self._fetch(
            "SELECT clicks_after, conversions_after, events_after, updated_at FROM report_state "
            "WHERE name = 'rollup'"
        )
        out: dict[str, int | None] = {"applied_at": int(state["updated_at"]) or None}
        for kind, sql, after in (
            (
                "click",
                "SELECT created_at FROM clicks WHERE refid > ? ORDER BY refid",
                "clicks_after",
            ),
            (
                "conversion",
                "SELECT created_at FROM conversions WHERE id > ? ORDER BY id",
                "conversions_after",
            ),
            (
                "event",
                "SELECT created_at FROM conversion_events WHERE id > ? ORDER BY id",
                "events_after",
            ),
        ):
            rows = await self._fetch(f"{sql} LIMIT 1", state[after])
            out[kind] = int(rows[0]["created_at"]) if rows else None
        return out

    async def rollup_gaps(self, limit: int) -> list[dict[str, Any]]:
        return await self._fetch(GAPS, *[limit] * 4)

    async def rollup_facts(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for part in padded_chunks(ids):
            out += await self._fetch(
                f"SELECT * FROM report_facts WHERE conversion_id IN ({_marks(len(part))})", *part
            )
        return out

    async def rollup_unvalued(self, limit: int) -> list[dict[str, Any]]:
        return await self._fetch(
            "SELECT f.*, c.base_amount, c.base_commission, c.revenue_terms FROM report_facts AS f "
            "JOIN conversions AS c ON c.id = f.conversion_id WHERE f.valued = 0 "
            "AND c.base_amount IS NOT NULL AND c.base_commission IS NOT NULL "
            "ORDER BY f.conversion_id LIMIT ?",
            limit,
        )

    async def rollup_known_visitors(
        self, keys: Sequence[tuple[int, int, int]]
    ) -> set[tuple[int, int, int]]:
        known: set[tuple[int, int, int]] = set()
        if self.engine == "postgres":  # all keys in one parameter (`pg_rows`)
            found = await self._fetch_tuples(PG_KNOWN_VISITORS, pg_param(keys))
            return {(int(d), int(link), int(v)) for d, link, v in found}
        for part in padded_chunks(keys):
            rows = await self._fetch(known_visitors_sql(len(part)), *[x for k in part for x in k])
            known.update((int(r["day"]), int(r["link_id"]), int(r["visitor"])) for r in rows)
        return known

    async def rollup_offers(self) -> dict[int, dict[str, Any]]:
        rows = await self._fetch(
            "SELECT id, advertiser_id, revenue_type, revenue_amount, revenue_percent FROM offers"
        )
        return {int(r["id"]): r for r in rows}

    async def rollup_apply(self, owner: str, old: Mark, new: Mark, delta: Delta) -> bool:
        """Applies a tick's sums and moves the watermarks, if they are still `old`."""
        stamp = time.time_ns() // 1000
        guard = (
            ADVANCE,
            (
                new.clicks_after,
                new.conversions_after,
                new.events_after,
                stamp,
                stamp,
                owner,
                old.clicks_after,
                old.conversions_after,
                old.events_after,
            ),
        )
        # the rows are made in a worker thread: with a backlog held (tens of thousands of
        # keys under clicks from many visitors) making them on the event loop stopped it
        # for 50-150 ms; a thread is made to let go of the GIL every switch interval
        # (5 ms), so requests go on being answered meanwhile
        steps = await asyncio.to_thread(self._apply_steps, delta)
        return await self._reports_tx(guard, steps) is not None

    def _apply_steps(self, delta: Delta) -> Steps:
        """What `rollup_apply` writes of a delta (in a worker thread)."""
        facts = [tuple(getattr(f, c) for c in FACT_COLUMNS) for f in delta.facts.values()]
        if self.engine == "sqlite":  # spread over the levels in SQL, off the event loop
            spread = staged("clicks", delta.click_sums())
            spread += staged("conversions", delta.conversion_sums())
            spread.append((UPSERT_FACT, facts))
        else:  # the facts in one statement (`pg_rows`)
            spread = pg_staged("clicks", delta.click_sums())
            spread += pg_staged("conversions", delta.conversion_sums())
            spread.append((PG_UPSERT_FACT, [(pg_param(facts),)] if facts else []))
        steps: Steps = [
            *spread,
            *new_visitors(self.engine, delta.visitors),
            (
                "INSERT INTO report_gaps (kind, id, noted_at) VALUES (?, ?, ?) "
                "ON CONFLICT (kind, id) DO NOTHING",
                delta.gaps_add,
            ),
            ("DELETE FROM report_gaps WHERE kind = ? AND id = ?", delta.gaps_drop),
        ]
        if delta.prune_before_day is not None:
            steps.append(("DELETE FROM report_visitors WHERE day < ?", [(delta.prune_before_day,)]))
        return steps

    # -- reports --------------------------------------------------------------------

    async def report_sums(
        self, spec: ReportSpec
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        columns = spec.columns
        select = ([f"{bucket_sql(spec.time)} AS bucket"] if spec.time else []) + columns
        where = ["hour >= ?", "hour < ?"]
        args: list[Any] = []
        for column, values in spec.filters.items():
            if column == "flags":
                where.append(_flag_filter(values, args))
                continue
            where.append(f"{column} IN ({_marks(len(values))})")
            args += values

        filters = " AND ".join(where)
        click_sums = [_sum(m) for m in ("clicks", "unique_clicks", "bot_clicks")]
        click_sums.append(_sum(FLAGGED.format("clicks")))
        clicks_sql = (
            f"SELECT {', '.join([*select, *click_sums])} FROM report_clicks_{{level}} "
            f"WHERE {filters}{_group(len(select))}"
        )
        conv_cols = [*select, "status"]
        conv_sums = [_sum(m) for m in (*CONVERSION_SUMS, FLAGGED.format("conversions"))]
        conv_sql = (
            f"SELECT {', '.join([*conv_cols, *conv_sums])} "
            f"FROM report_conversions_{{level}} WHERE basis = ? AND {filters}"
            f"{_group(len(conv_cols))}"
        )
        # a report on a sub-ID reads whole UTC days from a daily level, the rest hourly;
        # every read runs at once, and the caller adds up the rows of each group
        queries: list[tuple[str, tuple[Any, ...]]] = []
        for level, start, end in spec.segments:
            queries.append((clicks_sql.format(level=level), (start, end, *args)))
            queries.append((conv_sql.format(level=level), (spec.by, start, end, *args)))
        found = await self._fetch_at_once(queries)
        at = len(select)  # a click row's first sum (None when no row matched, ungrouped)
        clicks = [r for rows in found[0::2] for r in rows if r[at] is not None]
        conversions = [r for rows in found[1::2] for r in rows]
        return clicks, conversions

    async def report_names(self, table: str, ids: list[int]) -> dict[int, str]:
        name = "code" if table == "links" else "name"
        out: dict[int, str] = {}
        for part in padded_chunks(ids):
            rows = await self._fetch(
                f"SELECT id, {name} AS name FROM {table} WHERE id IN ({_marks(len(part))})", *part
            )
            out.update((int(r["id"]), str(r["name"])) for r in rows)
        return out


FLAGGED = "CASE WHEN flags <> '' THEN {} ELSE 0 END"


def _sum(expression: str) -> str:
    """An integer sum on both engines (PostgreSQL sums BIGINT as NUMERIC)."""
    return f"CAST(sum({expression}) AS BIGINT)"


def _flag_filter(values: Sequence[int | str], args: list[Any]) -> str:
    """Rows carrying any of the flags named (`none`: no flag; `any`: at least one)."""
    terms = []
    for value in values:
        if value == "none":
            terms.append("flags = ''")
        elif value == "any":
            terms.append("flags <> ''")
        else:
            terms.append("(',' || flags || ',') LIKE ?")
            args.append(f"%,{value},%")
    return f"({' OR '.join(terms)})"


def _group(n: int) -> str:
    return f" GROUP BY {', '.join(str(i + 1) for i in range(n))}" if n else ""


def bucket_sql(plan: TimePlan | None) -> str:
    """The bucket of each rollup `hour` in the plan's timezone, as integer SQL (the
    plan's numbers are computed integers, written into the statement as literals)."""
    assert plan is not None
    if plan.kind == "hour":
        return "hour"
    if plan.kind == "month":
        if not plan.month_starts:
            return "0"
        whens = " ".join(f"WHEN hour < {int(h)} THEN {i}" for i, h in enumerate(plan.month_starts))
        return f"(CASE {whens} ELSE {len(plan.month_starts)} END)"
    *changes, last = plan.offsets
    if changes:
        whens = " ".join(
            f"WHEN hour < {int(plan.offsets[i + 1][0])} THEN {int(o)}"
            for i, (_, o) in enumerate(changes)
        )
        offset = f"(CASE {whens} ELSE {int(last[1])} END)"
    else:
        offset = str(int(last[1]))
    day = f"((hour + {offset}) / 24)"
    return day if plan.kind == "day" else f"(({day} + 3) / 7)"
