"""The report endpoints: `GET /api/v1/reports` (JSON) and `/api/v1/reports/export` (CSV).

Both read the hourly rollups only (`domain.reports`), never raw clicks, so they answer
fast on any amount of traffic; see docs/reports.md for what each number means.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from clickback.domain.reports import METRICS, run_report, to_csv
from clickback.domain.reportspec import DIMENSIONS, build_spec
from clickback.domain.tokens import NETWORK_METRICS, scoped_report
from clickback.web.http import Caller, Endpoint
from clickback.web.present import json_response

if TYPE_CHECKING:
    from clickback.web.app import ClickbackApp

QUERY = ("group_by", "from", "to", "tz", "by", "sort", "limit", *DIMENSIONS)


def query_lists(request: Request) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        out.setdefault(name, []).append(value)
    return out


AFFILIATE_METRICS = tuple(m for m in METRICS if m not in NETWORK_METRICS)


async def build(
    app: ClickbackApp, params: dict[str, list[str]], caller: Caller
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The report and the metrics it shows: an affiliate token's is of its own affiliate,
    without what the network earns (`domain.tokens`)."""
    metrics: tuple[str, ...] = METRICS
    if caller.affiliate_id is not None:
        params, metrics = scoped_report(params, caller.affiliate_id), AFFILIATE_METRICS
    spec = build_spec(params, time.time_ns() // 1000, metrics)
    report = await run_report(
        app.store, spec, app.settings.base_currency, name_missing=caller.affiliate_id is None
    )
    if metrics is not METRICS:
        for shown in (*report["rows"], report["totals"]):
            for name in NETWORK_METRICS:
                shown.pop(name, None)
    return report, metrics


def endpoints(app: ClickbackApp) -> list[Endpoint]:
    async def report(request: Request, caller: Caller) -> Response:
        return json_response((await build(app, query_lists(request), caller))[0])

    async def export(request: Request, caller: Caller) -> Response:
        body = to_csv(*await build(app, query_lists(request), caller))
        return Response(
            body,
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": 'attachment; filename="report.csv"'},
        )

    tags = ("reports",)
    return [
        Endpoint(
            "GET",
            "/api/v1/reports",
            report,
            "Clicks, conversions and money per group (hourly rollups; any timezone)",
            response="Report",
            query=QUERY,
            affiliate=True,
            tags=tags,
        ),
        Endpoint(
            "GET",
            "/api/v1/reports/export",
            export,
            "The same report as CSV",
            query=QUERY,
            produces="text/csv",
            affiliate=True,
            tags=tags,
        ),
    ]
