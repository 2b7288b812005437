"""One place that maps errors to HTTP: a handler per exception base class.

Every error answers `{"status": "rejected" | "error", "errors": [{field, code, message}]}`:
`rejected` for what the caller did wrong (4xx), `error` for what went wrong here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from clickback.errors import ClickbackError
from clickback.web.present import json_response

log = logging.getLogger("clickback")

Handler = Callable[[Request, Exception], Awaitable[Response]]


def problem(status: int, code: str, message: str, field: str | None = None) -> Response:
    return json_response(
        {
            "status": "rejected" if status < 500 else "error",
            "errors": [{"field": field, "code": code, "message": message}],
        },
        status,
    )


async def on_clickback_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ClickbackError)
    response = problem(exc.status, exc.code, exc.message, exc.field)
    if exc.status == 401:
        response.headers["www-authenticate"] = "Bearer"
    return response


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return problem(exc.status_code, code, str(exc.detail))


def on_unavailable(unavailable: Callable[[BaseException], bool]) -> Handler:
    """For the driver's errors that may say the database is out of reach: a 503 the
    caller may retry (with `retry-after`), and one warning line in the log instead of a
    traceback a request; any other is raised on, to `on_unexpected`."""

    async def handle(request: Request, exc: Exception) -> Response:
        if not unavailable(exc):
            raise exc
        log.warning(
            "the database is out of reach on %s %s: %s: %s",
            request.method,
            request.url.path,
            type(exc).__name__,
            exc,
        )
        response = problem(
            503, "unavailable", "the database cannot be reached now; retry in a few seconds"
        )
        response.headers["retry-after"] = "5"
        return response

    return handle


async def on_unexpected(request: Request, exc: Exception) -> Response:
    if isinstance(exc, ClientDisconnect):  # its client left before its body ended
        return problem(400, "request_incomplete", "the client left before the body ended")
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return problem(500, "internal", "an unexpected error happened; it is logged")


HANDLERS: dict[Any, Handler] = {
    ClickbackError: on_clickback_error,
    HTTPException: on_http_error,
    Exception: on_unexpected,
}
