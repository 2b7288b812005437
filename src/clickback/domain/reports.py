"""Reports: clicks, conversions and money per group, read from the hourly rollups.

Conversions and their money count `pending` and `approved`; `payable` is the approved
commission alone; `rejected` and `reversed` are shown apart. Money is summed in the base
currency from the amounts each conversion stored in it; a conversion still waiting for
an exchange rate has no base amount: it is counted (`conversions`) but not summed, and
`missing_rate` says how many such there are. Offers carry no revenue (what the
advertiser pays the network) yet, so `revenue` and `profit` are null. Test traffic is
never rolled up. Bots are counted in `clicks` and apart in `bot_clicks`, never in
`unique_clicks` (the first click of an IP and User-Agent on a link in a UTC day). Clicks
and conversions that carry a fraud flag are counted as usual and apart in
`flagged_clicks` and `flagged_conversions` (of any status); the `flag` dimension groups
or filters by them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Protocol

from clickback.domain import money
from clickback.domain.reportspec import DIMENSIONS, ENTITY_DIMS, TIME_DIMS, ReportSpec

STATUSES = ("pending", "approved", "rejected", "reversed")
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
_ENTITY_TABLES = {"advertiser": "advertisers", "offer": "offers", "affiliate": "affiliates"}


class ReportStore(Protocol):
    async def report_sums(
        self, spec: ReportSpec
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Click rows and conversion rows (with `status`), summed per `bucket` (when the
        spec groups by time) and per spec column."""
        ...

    async def report_names(self, table: str, ids: list[int]) -> dict[int, str]: ...


@dataclass(slots=True)
class Sums:
    clicks: int = 0
    unique_clicks: int = 0
    bot_clicks: int = 0
    flagged_clicks: int = 0
    count: dict[str, int] | None = None
    sale: dict[str, int] | None = None
    commission: dict[str, int] | None = None
    missing: dict[str, int] | None = None
    flagged: dict[str, int] | None = None

    def add_clicks(self, r: Mapping[str, Any]) -> None:
        self.clicks += int(r["clicks"])
        self.unique_clicks += int(r["unique_clicks"])
        self.bot_clicks += int(r["bot_clicks"])
        self.flagged_clicks += int(r["flagged_clicks"])

    def add_conversions(self, status: str, r: Mapping[str, Any]) -> None:
        for name, column in (
            ("count", "conversions"),
            ("sale", "sale"),
            ("commission", "commission"),
            ("missing", "missing_rate"),
            ("flagged", "flagged"),
        ):
            table = getattr(self, name)
            if table is None:
                table = dict.fromkeys(STATUSES, 0)
                setattr(self, name, table)
            table[status] = table.get(status, 0) + int(r[column])

    def merge(self, other: Sums) -> None:
        self.add_clicks(_clicks_of(other))
        for status in STATUSES:
            self.add_conversions(status, _conversions_of(other, status))

    def metrics(self, base: str) -> dict[str, Any]:
        count = self.count or dict.fromkeys(STATUSES, 0)
        sale = self.sale or dict.fromkeys(STATUSES, 0)
        paid = self.commission or dict.fromkeys(STATUSES, 0)
        missing = self.missing or dict.fromkeys(STATUSES, 0)
        conversions = count["pending"] + count["approved"]
        commission = paid["pending"] + paid["approved"]
        exp = money.exponent(base)
        return {
            "clicks": self.clicks,
            "unique_clicks": self.unique_clicks,
            "bot_clicks": self.bot_clicks,
            "flagged_clicks": self.flagged_clicks,
            "conversions": conversions,
            "flagged_conversions": sum((self.flagged or {}).values()),
            "conversion_rate": _ratio(conversions * 100, self.clicks, 2),
            "sale_amount": money.format_minor(sale["pending"] + sale["approved"], base),
            "commission": money.format_minor(commission, base),
            "payable": money.format_minor(paid["approved"], base),
            "epc": _ratio(Decimal(commission).scaleb(-exp), self.clicks, exp + 2),
            "revenue": None,
            "profit": None,
            "pending": count["pending"],
            "approved": count["approved"],
            "rejected": count["rejected"],
            "reversed": count["reversed"],
            "rejected_commission": money.format_minor(paid["rejected"], base),
            "reversed_commission": money.format_minor(paid["reversed"], base),
            "missing_rate": missing["pending"] + missing["approved"],
        }


def _clicks_of(s: Sums) -> dict[str, int]:
    return {
        "clicks": s.clicks,
        "unique_clicks": s.unique_clicks,
        "bot_clicks": s.bot_clicks,
        "flagged_clicks": s.flagged_clicks,
    }


def _conversions_of(s: Sums, status: str) -> dict[str, int]:
    return {
        "conversions": (s.count or {}).get(status, 0),
        "sale": (s.sale or {}).get(status, 0),
        "commission": (s.commission or {}).get(status, 0),
        "missing_rate": (s.missing or {}).get(status, 0),
        "flagged": (s.flagged or {}).get(status, 0),
    }


def _ratio(numerator: Decimal | int, denominator: int, places: int) -> str | None:
    if not denominator:
        return None
    value = Decimal(numerator) / denominator
    return str(value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


async def run_report(store: ReportStore, spec: ReportSpec, base: str) -> dict[str, Any]:
    """`{"rows": [{<group keys>, <metrics>}], "totals": {<metrics>}}` and what was asked."""
    clicks, conversions = await store.report_sums(spec)
    columns = spec.columns
    keyed = ["bucket", *columns] if spec.time else columns
    groups: dict[tuple[Any, ...], Sums] = {}
    for r in clicks:
        groups.setdefault(tuple(r[c] for c in keyed), Sums()).add_clicks(r)
    for r in conversions:
        groups.setdefault(tuple(r[c] for c in keyed), Sums()).add_conversions(r["status"], r)
    names: dict[str, dict[int, str]] = {}
    for dim, table in _ENTITY_TABLES.items():
        if dim in spec.group_by:
            column = ENTITY_DIMS[dim]
            ids = sorted({int(k[keyed.index(column)]) for k in groups})
            names[dim] = await store.report_names(table, ids) if ids else {}
    if "link" in spec.group_by:
        ids = sorted({int(k[keyed.index("link_id")]) for k in groups})
        names["link"] = await store.report_names("links", ids) if ids else {}
    total = Sums()
    rows = []
    for key, sums in groups.items():
        total.merge(sums)
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
    _sort(rows, spec)
    return {
        "group_by": list(spec.group_by),
        "from": _hour(spec.start_hour),
        "to": _hour(spec.end_hour),
        "tz": spec.tz,
        "by": spec.by,
        "base_currency": base,
        "notes": list(spec.notes),
        "rows": rows[: spec.limit],
        "total_rows": len(rows),
        "totals": total.metrics(base),
    }


def _sort(rows: list[dict[str, Any]], spec: ReportSpec) -> None:
    """Time first, then by `sort` (a name, or `-name` for descending); by default the
    most clicked and converting groups first."""
    if spec.sort:
        name = spec.sort.lstrip("-")

        def value(r: dict[str, Any]) -> tuple[bool, Any]:
            v = r.get(name)
            if isinstance(v, str) and name in METRICS:
                v = Decimal(v)
            return (v is not None, v if v is not None else 0)

        rows.sort(key=value, reverse=spec.sort.startswith("-"))
    else:
        rows.sort(key=lambda r: (-r["clicks"], -r["conversions"]))
    if spec.time:
        rows.sort(key=lambda r: r["_bucket"])
        for r in rows:
            del r["_bucket"]


def _hour(hour: int) -> str:
    from clickback.domain.timefmt import iso

    value = iso(hour * 3_600_000_000)
    assert value is not None
    return value


def csv_columns(report: dict[str, Any]) -> list[str]:
    keys: list[str] = []
    for dim in report["group_by"]:
        keys += [dim, f"{dim}_name"] if dim in ENTITY_DIMS else [dim]
    return [*keys, *METRICS]


def to_csv(report: dict[str, Any]) -> str:
    """The report's rows as CSV: group keys (with names), then every metric."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf)
    columns = csv_columns(report)
    writer.writerow(columns)
    for row in report["rows"]:
        writer.writerow("" if row.get(c) is None else row[c] for c in columns)
    return buf.getvalue()
