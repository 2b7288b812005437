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


async def build(app: ClickbackApp, params: dict[str, list[str]]) -> dict[str, Any]:
    spec = build_spec(params, time.time_ns() // 1000, METRICS)
    return await run_report(app.store, spec, app.settings.base_currency)


def endpoints(app: ClickbackApp) -> list[Endpoint]:
    async def report(request: Request, caller: Caller) -> Response:
        return json_response(await build(app, query_lists(request)))

    async def export(request: Request, caller: Caller) -> Response:
        body = to_csv(await build(app, query_lists(request)))
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
            tags=tags,
        ),
        Endpoint(
            "GET",
            "/api/v1/reports/export",
            export,
            "The same report as CSV",
            query=QUERY,
            produces="text/csv",
            tags=tags,
        ),
    ]
