"""Reports: clicks, conversions and money per group, read from the hourly rollups.

Conversions and their money count `pending` and `approved`; `payable` is the approved
commission alone; `rejected` and `reversed` are shown apart. Money is summed in the base
currency from the amounts each conversion stored in it; a conversion still waiting for
an exchange rate has no base amount: it is counted (`conversions`) but not summed, and
`missing_rate` says how many such there are. `revenue` (what the advertiser pays the
network) sums the conversions of offers with revenue terms, valued by the rollup job
from the offer's terms; `profit` is that revenue less those conversions' commission;
both are null for a group with no such conversion. Test traffic is
never rolled up. Bots are counted in `clicks` and apart in `bot_clicks`, never in
`unique_clicks` (the first click of an IP and User-Agent on a link in a UTC day). Clicks
and conversions that carry a fraud flag are counted as usual and apart in
`flagged_clicks` and `flagged_conversions` (of any status); the `flag` dimension groups
or filters by them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Protocol

from clickback.domain import money
from clickback.domain.csvtext import safe_cell
from clickback.domain.reportspec import DIMENSIONS, ENTITY_DIMS, HOUR_US, TIME_DIMS, ReportSpec
from clickback.domain.rollup_delta import CONVERSION_SUMS
from clickback.domain.timefmt import iso

METRICS = (
    "clicks",
    "unique_clicks",
    "bot_clicks",
    "flagged_clicks",
    "conversions",
    "flagged_conversions",
    "conversion_rate",
    "sale_amount",
    "commission",
    "payable",
    "epc",
    "revenue",
    "profit",
    "pending",
    "approved",
    "rejected",
    "reversed",
    "rejected_commission",
    "reversed_commission",
    "missing_rate",
)
YIELD_EVERY = 2048  # rows added up between two yields to the event loop
# the reports' freshness bound: what was stored longer ago than this and is not in them
# yet is pointed out (a running server's rollup keeps well inside it while it keeps up)
FRESH_US = 5_000_000
_ENTITY_TABLES = {"advertiser": "advertisers", "offer": "offers", "affiliate": "affiliates"}


async def _missing_ids(store: ReportStore, spec: ReportSpec) -> list[str]:
    """A note for each advertiser, offer, affiliate or link id filtered by that no row of
    its table has."""
    notes = []
    for dim, table in (*_ENTITY_TABLES.items(), ("link", "links")):
        wanted = spec.filters.get(ENTITY_DIMS[dim], ())
        known = await store.report_names(table, sorted(map(int, wanted))) if wanted else {}
        missing = [str(i) for i in wanted if int(i) not in known]
        if missing:
            notes.append(f"no {dim} has id {', '.join(missing)}: nothing matches it")
    return notes


class ReportStore(Protocol):
    async def report_sums(
        self, spec: ReportSpec
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Click rows and conversion rows, summed per bucket (when the spec groups by
        time) and per spec column, as tuples: the key (bucket first, then the spec's
        columns), then for clicks the four CLICK_SUMS, for conversions the status and
        the SUMMED values. Integers throughout."""
        ...

    async def report_names(self, table: str, ids: list[int]) -> dict[int, str]: ...

    async def rollup_pending(self) -> dict[str, int | None]:
        """When the oldest click, conversion and status change not yet in the rollups
        were stored (µs; None when none waits), and when the rollups were last applied
        (`applied_at`)."""
        ...


CLICK_SUMS = ("clicks", "unique_clicks", "bot_clicks", "flagged_clicks")
# per status, what the report reads of the conversion rollups (`flagged` is computed)
SUMMED = (*CONVERSION_SUMS, "flagged")
_AT = {name: i for i, name in enumerate(SUMMED)}
_CONVERSIONS = _AT["conversions"]


@dataclass(slots=True)
class Sums:
    """A group's sums: the click counts (clicks, unique, bots, flagged), and per status
    the conversion sums (as SUMMED)."""

    clicks: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    by_status: dict[str, list[int]] = field(default_factory=dict)

    def add_clicks(self, values: Sequence[int]) -> None:
        """Adds the CLICK_SUMS, in that order."""
        c = self.clicks
        for i, v in enumerate(values):
            c[i] += v

    def add_status(self, status: str, values: Sequence[int]) -> None:
        """Adds a status's SUMMED values, in that order."""
        sums = self.by_status.get(status)
        if sums is None:
            self.by_status[status] = list(values)
        else:
            for i, v in enumerate(values):
                sums[i] += v

    def of(self, status: str, name: str) -> int:
        sums = self.by_status.get(status)
        return sums[_AT[name]] if sums is not None else 0

    def counted(self, name: str) -> int:
        """A sum over the pending and approved conversions, which reports count."""
        return self.of("pending", name) + self.of("approved", name)

    def converted(self) -> int:
        """Pending and approved conversions (the `conversions` metric)."""
        pending, approved = self.by_status.get("pending"), self.by_status.get("approved")
        return (pending[_CONVERSIONS] if pending else 0) + (
            approved[_CONVERSIONS] if approved else 0
        )

    def metrics(self, base: str) -> dict[str, Any]:
        clicks, unique, bots, flagged_clicks = self.clicks
        of = self.of
        conversions = self.converted()
        commission = self.counted("commission")
        revenue = self.counted("revenue")
        exp = money.exponent(base)
        revenue_text: str | None = None
        profit: str | None = None
        if self.counted("with_revenue"):  # some conversions of offers with revenue
            revenue_text = money.format_minor(revenue, base)
            profit = money.format_minor(revenue - self.counted("revenue_commission"), base)
        return {
            "clicks": clicks,
            "unique_clicks": unique,
            "bot_clicks": bots,
            "flagged_clicks": flagged_clicks,
            "conversions": conversions,
            "flagged_conversions": sum(s[_AT["flagged"]] for s in self.by_status.values()),
            "conversion_rate": _ratio(conversions * 100, clicks, 2),
            "sale_amount": money.format_minor(self.counted("sale"), base),
            "commission": money.format_minor(commission, base),
            "payable": money.format_minor(of("approved", "commission"), base),
            "epc": _ratio(Decimal(commission).scaleb(-exp), clicks, exp + 2),
            "revenue": revenue_text,
            "profit": profit,
            "pending": of("pending", "conversions"),
            "approved": of("approved", "conversions"),
            "rejected": of("rejected", "conversions"),
            "reversed": of("reversed", "conversions"),
            "rejected_commission": money.format_minor(of("rejected", "commission"), base),
            "reversed_commission": money.format_minor(of("reversed", "commission"), base),
            "missing_rate": self.counted("missing_rate"),
        }


def _ratio(numerator: Decimal | int, denominator: int, places: int) -> str | None:
    if not denominator:
        return None
    value = Decimal(numerator) / denominator
    return str(value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


async def run_report(
    store: ReportStore,
    spec: ReportSpec,
    base: str,
    now_us: int | None = None,
    *,
    name_missing: bool = True,
) -> dict[str, Any]:
    """`{"rows": [{<group keys>, <metrics>}], "totals": {<metrics>}}` and what was asked;
    `complete_until`: everything stored before it is in the report. With `name_missing`
    (not for an affiliate's token: it would tell which ids exist), a note names each id
    filtered by that does not exist, which matches nothing (a typo, most often)."""
    now = time.time_ns() // 1000 if now_us is None else now_us
    # read first: what is stored meanwhile can only be newer than what it names
    pending = await store.rollup_pending()
    clicks, conversions = await store.report_sums(spec)
    columns = spec.columns
    keyed = ["bucket", *columns] if spec.time else columns
    k = len(keyed)
    groups: dict[tuple[Any, ...], Sums] = {}
    for i, r in enumerate(clicks):
        if i % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)  # a large report adds up in steps: requests in between
        key = r[:k]
        sums = groups.get(key)
        if sums is None:
            sums = groups[key] = Sums()
        sums.add_clicks(r[k:])
    by_status: dict[str, list[tuple[Any, ...]]] = {}
    for i, r in enumerate(conversions):
        if i % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)
        values = r[k + 1 :]
        if not any(values):
            continue  # what a conversion left when it moved (a flag, a status): no row
        key = r[:k]
        sums = groups.get(key)
        if sums is None:
            sums = groups[key] = Sums()
        sums.add_status(r[k], values)
        by_status.setdefault(r[k], []).append(values)
    # the totals add up the same rows, column by column
    total = Sums(_column_sums([r[k:] for r in clicks], len(CLICK_SUMS)))
    for status, values_of_status in by_status.items():
        total.add_status(status, _column_sums(values_of_status, len(SUMMED)))
    names: dict[str, dict[int, str]] = {}
    for dim, table in _ENTITY_TABLES.items():
        if dim in spec.group_by:
            column = ENTITY_DIMS[dim]
            ids = sorted({int(k[keyed.index(column)]) for k in groups})
            names[dim] = await store.report_names(table, ids) if ids else {}
    if "link" in spec.group_by:
        ids = sorted({int(k[keyed.index("link_id")]) for k in groups})
        names["link"] = await store.report_names("links", ids) if ids else {}
    ordered = list(groups.items())
    if not spec.sort:  # the usual order needs no metrics: only the rows shown get them
        ordered.sort(key=lambda kv: (-kv[1].clicks[0], -kv[1].converted()))
        if spec.time:
            ordered.sort(key=lambda kv: int(kv[0][0]))
        ordered = ordered[: spec.limit]
    rows = []
    for key, sums in ordered:
        row: dict[str, Any] = {}
        for dim in spec.group_by:
            if dim in TIME_DIMS:
                assert spec.time is not None
                row[dim] = spec.time.label(int(key[0]))
                row["_bucket"] = int(key[0])  # labels of a DST fall-back hour sort wrongly
                continue
            value = key[keyed.index(DIMENSIONS[dim])]
            if dim in ENTITY_DIMS:
                row[dim] = int(value)
                row[f"{dim}_name"] = names[dim].get(int(value), "")
            else:
                row[dim] = value
        row.update(sums.metrics(base))
        rows.append(row)
    if spec.sort:
        _sort(rows, spec)
    for shown in rows:
        shown.pop("_bucket", None)
    totals = total.metrics(base)
    notes = list(spec.notes)
    waiting = [at for kind in ("click", "conversion", "event") if (at := pending[kind]) is not None]
    complete = min([*waiting, now])
    if now - complete > FRESH_US and complete < spec.end_hour * HOUR_US:
        applied = pending["applied_at"]
        notes.append(
            f"what was stored since {iso(complete)} ({(now - complete) // 1_000_000} s ago) is not"
            " in this report yet: a running `clickback serve` folds it in (rollups last applied "
            f"{iso(applied) if applied else 'never'}), or `clickback rollup` does without one"
        )
    if totals["missing_rate"]:
        notes.append(
            f"{totals['missing_rate']} conversion(s) wait for an exchange rate into {base}: "
            "counted in conversions, left out of the money until a rate dated on or before"
            " their UTC day is imported"
        )
    if name_missing:
        notes.extend(await _missing_ids(store, spec))
    if len(groups) > spec.limit:
        notes.append(
            f"the first {spec.limit} of {len(groups)} groups are shown (`limit`); the totals"
            " are of them all"
        )
    return {
        "group_by": list(spec.group_by),
        "from": _hour(spec.start_hour),
        "to": _hour(spec.end_hour),
        "tz": spec.tz,
        "by": spec.by,
        "base_currency": base,
        "notes": notes,
        "complete_until": iso(complete),
        "rows": rows[: spec.limit],
        "total_rows": len(groups),
        "totals": totals,
    }


def _column_sums(rows: list[tuple[Any, ...]], width: int) -> list[int]:
    return [sum(column) for column in zip(*rows, strict=True)] if rows else [0] * width


def _sort(rows: list[dict[str, Any]], spec: ReportSpec) -> None:
    """Time first (oldest first, unless `sort` is `-` and the time dimension), then by
    `sort` (a name, or `-name` for descending). Without `sort`,
    `run_report` orders the groups before their metrics are computed: the most clicked,
    then the most converting (pending and approved) first."""
    assert spec.sort
    name = spec.sort.lstrip("-")

    def value(r: dict[str, Any]) -> tuple[bool, Any]:
        v = r.get(name)
        if isinstance(v, str) and name in METRICS:
            v = Decimal(v)
        return (v is not None, v if v is not None else 0)

    descending = spec.sort.startswith("-")
    rows.sort(key=value, reverse=descending)
    if spec.time:  # newest first when the sort names the time dimension so
        rows.sort(key=lambda r: r["_bucket"], reverse=descending and name == spec.time.kind)


def _hour(hour: int) -> str:
    value = iso(hour * 3_600_000_000)
    assert value is not None
    return value


def csv_columns(report: dict[str, Any], metrics: Sequence[str] = METRICS) -> list[str]:
    keys: list[str] = []
    for dim in report["group_by"]:
        keys += [dim, f"{dim}_name"] if dim in ENTITY_DIMS else [dim]
    return [*keys, *metrics]


def to_csv(report: dict[str, Any], metrics: Sequence[str] = METRICS) -> str:
    """The report's rows as CSV: group keys (with names), then the metrics (every one
    unless told); text cells made safe for spreadsheets (`csvtext.safe_cell`)."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf)
    columns = csv_columns(report, metrics)
    writer.writerow(columns)
    for row in report["rows"]:
        writer.writerow("" if row.get(c) is None else safe_cell(row[c]) for c in columns)
    return buf.getvalue()
