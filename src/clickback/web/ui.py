"""The dashboard under `/ui`: server-rendered pages (Jinja2) behind a login with an API
token, over the same domain calls as the admin API.

This module holds what every page shares (sessions, rendering, static files, the
login) and the two report pages: the overview and the report builder. Conversions,
postbacks and offers are in `ui_pages`. Reports read the hourly rollups only and lists
are pages of at most 50 rows, so every page stays fast on any amount of traffic.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Match, Route

from clickback.domain.reports import METRICS, run_report, to_csv
from clickback.domain.reportspec import (
    DEFAULT_DAYS,
    DIMENSIONS,
    MAX_LIMIT,
    TIME_DIMS,
    build_spec,
    time_plan,
    zone,
)
from clickback.domain.timefmt import EPOCH, iso
from clickback.domain.tokens import AFFILIATE
from clickback.errors import ClickbackError, InputError
from clickback.web.http import refuse_nul_query
from clickback.web.session import COOKIE, LOGIN_COOKIE, Session, Sessions, new_csrf, same

if TYPE_CHECKING:
    from clickback.web.app import ClickbackApp

Page = Callable[[Request, Session], Awaitable[Response]]
STATIC = {
    "ui.css": "text/css",
    "ui.js": "application/javascript",
    "uplot-1.6.32.iife.min.js": "application/javascript",
    "uplot-1.6.32.min.css": "text/css",
}
HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
STALE_FORM = (
    "this form is stale (opened before the session it was sent in began): reload the page"
    " and send it again"
)
LOG_IN_FIRST = "the session has ended: log in again, then send the form again"
FORM_ONLY = "this address takes a form sent from the dashboard's pages, not a link"
# the report table shows every metric but the commission of rejected and reversed ones
TABLE_METRICS = [m for m in METRICS if m not in ("rejected_commission", "reversed_commission")]
MAX_FORM = 65_536
PAGE_ROWS = 200
REPORT_PARAMS = ("from", "to", "tz", "by", "sort", "limit", *DIMENSIONS)


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("clickback.web", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["short"] = lambda s, n=12: s if len(s or "") <= n else f"{s[:n]}…"
    env.filters["iso"] = iso
    return env


@cache
def zones() -> list[str]:
    from zoneinfo import available_timezones

    return sorted(available_timezones() | {"UTC"})


class Ui:
    def __init__(self, app: ClickbackApp):
        self.app = app
        self.sessions = Sessions(app)
        self.routes: list[Route] = []  # the pages (`routes`), to tell a 405 from a 404

    def render(self, request: Request, name: str, session: Session | None, **ctx: Any) -> Response:
        html = (
            environment()
            .get_template(name)
            .render(
                session=session,
                path=request.url.path,
                query=request.query_params,
                done=request.query_params.get("done", ""),
                error=request.query_params.get("error", ""),
                base_currency=self.app.settings.base_currency,
                **ctx,
            )
        )
        return HTMLResponse(html, headers=HEADERS)

    def page(
        self, handler: Page, *, form: bool = False, admin: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        """A page behind the login. A `form` is POSTed with the session's CSRF value; an
        `admin` form changes something, which a read token may not."""

        async def endpoint(request: Request) -> Response:
            session = await self.sessions.current(request)
            if session is None:
                if request.method != "GET":
                    return self._error(request, None, 401, LOG_IN_FIRST)
                asked = request.url.path  # with its filters, for a bookmarked list
                if request.url.query:
                    asked += "?" + request.url.query
                return RedirectResponse("/ui/login?" + urlencode({"next": asked}), 303)
            if form:
                posted = await read_form(request)
                if not same(str(posted.get("csrf", "")), session.csrf):
                    return self._error(request, session, 403, STALE_FORM)
                if any("\x00" in v for v in posted.values()):  # PostgreSQL cannot hold it
                    return back(request, error="text may not hold the character U+0000")
                if admin and not session.admin:
                    return back(request, error="this token may only read")
            try:
                refuse_nul_query(request)
                return await handler(request, session)
            except ClickbackError as exc:
                if request.method == "GET" and not isinstance(exc, InputError):
                    if request.url.path.endswith(".csv"):  # a download: its error, alone
                        raise
                    return self._error(request, session, exc.status, exc.message)
                if request.method == "GET":
                    return self._refused_filter(request, session, exc)
                return back(request, error=exc.message)

        return endpoint

    def _error(
        self, request: Request, session: Session | None, status: int, message: str
    ) -> Response:
        """A page of the error alone, in the dashboard's frame (not the API's JSON, nor a
        bare text), with its status."""
        page = self.render(request, "error.html", session, message=message)
        page.status_code = status
        return page

    async def not_found(self, request: Request, session: Session) -> Response:
        """A path under /ui that is no page (a URL mistyped, a bookmark of another
        version): said in the dashboard's frame; one that takes a form only, 405."""
        if any(r.matches(request.scope)[0] is Match.PARTIAL for r in self.routes):
            return self._error(request, session, 405, FORM_ONLY)
        return self._error(request, session, 404, f"there is no page {request.url.path}")

    def _refused_filter(self, request: Request, session: Session, exc: ClickbackError) -> Response:
        """A page asked with a filter it refuses (a typo in a box, `country=XX`): the same
        page again without that filter, the others kept, the error said above its form,
        rather than a page of the error alone, whose Back loses the form. A refusal that
        names no parameter of the query is shown on a page of its own."""
        field = exc.field
        kept = [(k, v) for k, v in request.query_params.multi_items() if k != field]
        html = not request.url.path.endswith(".csv")  # a download: its error, alone
        if html and field and len(kept) < len(request.query_params.multi_items()):
            kept = [(k, v) for k, v in kept if k not in ("error", "done")]
            query = urlencode([*kept, ("error", exc.message)])
            return RedirectResponse(f"{request.url.path}?{query}", 303)
        return self._error(request, session, exc.status, exc.message)

    # -- login ----------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        csrf = new_csrf()
        response = self.render(
            request, "login.html", None, csrf=csrf, next=request.query_params.get("next", "")
        )
        self.sessions.set_cookie(response, request, LOGIN_COOKIE, csrf, 600)
        return response

    async def login(self, request: Request) -> Response:
        form = await read_form(request)
        if not same(str(form.get("csrf", "")), request.cookies.get(LOGIN_COOKIE, "")):
            return RedirectResponse("/ui/login?failed=expired", 303)
        found = await self.sessions.check_token(str(form.get("token", "")).strip())
        if found is None:
            return RedirectResponse("/ui/login?failed=token", 303)
        if found[1] == AFFILIATE:  # the dashboard shows every affiliate's traffic
            return RedirectResponse("/ui/login?failed=affiliate", 303)
        target = str(form.get("next", ""))
        if not target.startswith("/ui/") or target.startswith("//"):
            target = "/ui/"
        response = RedirectResponse(target, 303)
        await self.sessions.start(response, request, found[0])
        response.delete_cookie(LOGIN_COOKIE, path="/ui")
        return response

    async def logout(self, request: Request, session: Session) -> Response:
        await self.sessions.end(session)
        response = RedirectResponse("/ui/login", 303)
        response.delete_cookie(COOKIE, path="/ui")
        return response

    # -- reports --------------------------------------------------------------------

    async def report(self, params: dict[str, list[str]]) -> dict[str, Any]:
        now = time.time_ns() // 1000
        if "from" not in params and "to" not in params:
            params = {**params, "from": [week_start(params, now)]}
        spec = build_spec(params, now, METRICS)
        result = await run_report(self.app.store, spec, self.app.settings.base_currency)
        result["spec"] = spec
        return result

    async def overview(self, request: Request, session: Session) -> Response:
        params = picked(request, ("from", "to", "tz"))
        totals = await self.report({**params, "group_by": [""]})
        spec = totals["spec"]
        kind = "hour" if spec.end_hour - spec.start_hour <= 48 else "day"
        plan = time_plan(kind, zone(spec.tz), spec.start_hour, spec.end_hour)
        labels = [plan.label(b) for b in plan.buckets(spec.start_hour, spec.end_hour)]
        # a row for every bucket drawn (the default limit left the latest days out as 0
        # past 1000 of them); 5 years of days is well within MAX_LIMIT
        shown = str(min(len(labels), MAX_LIMIT))
        series = await self.report({**params, "group_by": [kind], "limit": [shown]})
        by_label = {r[kind]: r for r in series["rows"]}
        chart = {
            "labels": labels,
            "clicks": [by_label.get(x, {}).get("clicks", 0) for x in labels],
            "conversions": [by_label.get(x, {}).get("conversions", 0) for x in labels],
            "commission": [float(by_label.get(x, {}).get("commission", 0)) for x in labels],
        }
        tops = {}
        for dim in ("offer", "affiliate", "country"):
            tops[dim] = await self.report({**params, "group_by": [dim], "sort": ["-commission"]})
        return self.render(
            request,
            "overview.html",
            session,
            totals=totals,
            chart=orjson.dumps(chart).decode(),
            tops=tops,
            zones=zones(),
            params=params,
        )

    async def reports(self, request: Request, session: Session) -> Response:
        params = picked(request, REPORT_PARAMS)
        time_dim = request.query_params.get("time", "day")
        groups = [g for g in request.query_params.getlist("group") if g in DIMENSIONS]
        group_by = ([time_dim] if time_dim in TIME_DIMS else []) + groups
        # a page shows the first 200 rows unless asked for more; its CSV up to 10,000
        shown = {"limit": params.get("limit") or [str(PAGE_ROWS)]}
        result = await self.report({**params, **shown, "group_by": [",".join(group_by)]})
        return self.render(
            request,
            "reports.html",
            session,
            result=result,
            dimensions=list(DIMENSIONS),
            groups=groups,
            time_dim=time_dim,
            metrics=TABLE_METRICS,
            zones=zones(),
            params=params,
            csv_query=urlencode(
                [(k, v) for k, vs in params.items() for v in vs]
                + [("group_by", ",".join(group_by))]
            ),
        )

    async def reports_csv(self, request: Request, session: Session) -> Response:
        params = picked(request, REPORT_PARAMS)
        # `group_by=` (the page's time "(none)" and no dimension) is the totals, as on the
        # page: kept, not dropped as an empty box is (which meant the default, by day)
        group_by = request.query_params.getlist("group_by")
        if group_by:
            params["group_by"] = group_by
        result = await self.report({"limit": [str(MAX_LIMIT)], **params})
        return Response(
            to_csv(result),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": 'attachment; filename="report.csv"'},
        )

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return Response("not found", 404)
        return Response(
            static_bytes(name),
            media_type=STATIC[name],
            headers={"cache-control": "public, max-age=3600", "x-content-type-options": "nosniff"},
        )


async def read_form(request: Request) -> dict[str, str]:
    """A urlencoded form body (the dashboard posts nothing else), first value per name;
    none from a body larger than MAX_FORM, read no further than that (the login form is
    posted before any session: a body of 64 MB, read whole, was held whole). Read once a
    request (its CSRF check and its page both ask)."""
    kept = getattr(request.state, "form", None)
    if kept is None:
        kept = request.state.form = await _read_form(request)
    return dict(kept)


async def _read_form(request: Request) -> dict[str, str]:
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM:
        return {}
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_FORM:
            return {}
        chunks.append(chunk)
    fields: dict[str, str] = {}
    for name, value in parse_qsl(
        b"".join(chunks).decode("utf-8", "replace"), keep_blank_values=True
    ):
        fields.setdefault(name, value)
    return fields


@cache
def static_bytes(name: str) -> bytes:
    return files("clickback.web").joinpath("static").joinpath(name).read_bytes()


def week_start(params: dict[str, list[str]], now_us: int) -> str:
    """The dashboard's default range: the last 7 calendar days in the chosen zone, today
    included (whole days, which the daily rollups serve)."""
    try:
        tz = zone((params.get("tz") or ["UTC"])[0] or "UTC")
    except InputError:
        tz = zone("UTC")  # the report answers the bad zone itself
    today = (EPOCH + timedelta(microseconds=now_us)).astimezone(tz).date()
    return (today - timedelta(days=DEFAULT_DAYS - 1)).isoformat()


def picked(request: Request, names: tuple[str, ...]) -> dict[str, list[str]]:
    """The query's non-empty values of these parameters, as the report parser takes them."""
    out: dict[str, list[str]] = {}
    for name in names:
        values = [v for v in request.query_params.getlist(name) if v.strip()]
        if values:
            out[name] = values
    return out


def back(request: Request, **message: str) -> Response:
    """Back to the page a form was posted from (Post/Redirect/Get), with a message."""
    # only the page's path is taken, never its host: behind a proxy (a public https URL,
    # a Host it rewrites) the Referer's origin is not the one the request came in on
    path = urlsplit(request.headers.get("referer", "")).path
    target = path if path.startswith("/ui/") and not path.startswith("//") else "/ui/"
    return RedirectResponse(f"{target}?{urlencode(message)}", 303)


def routes(app: ClickbackApp) -> list[Route]:
    from clickback.web import ui_pages

    ui = Ui(app)
    ui.routes = [
        Route("/ui", lambda r: RedirectResponse("/ui/", 307)),
        Route("/ui/", ui.page(ui.overview)),
        Route("/ui/login", ui.login_form, methods=["GET"]),
        Route("/ui/login", ui.login, methods=["POST"]),
        Route("/ui/logout", ui.page(ui.logout, form=True), methods=["POST"]),
        Route("/ui/reports", ui.page(ui.reports)),
        Route("/ui/reports.csv", ui.page(ui.reports_csv)),
        Route("/ui/static/{name}", ui.static),
        *ui_pages.routes(ui),
    ]
    # last: what no route above took (and, for another method, what one did)
    return [*ui.routes, Route("/ui/{rest:path}", ui.page(ui.not_found))]
