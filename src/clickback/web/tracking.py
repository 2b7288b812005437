"""The two hot paths as bare ASGI handlers: `GET /c/{code}` and `GET|POST /postback`.

Each reads only what it needs off the request, makes one domain call and answers;
no framework, no per-request objects beyond what the answer needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson

from clickback.domain.models import FieldError
from clickback.domain.security import in_networks, is_ip
from clickback.errors import UnavailableError

if TYPE_CHECKING:
    from clickback.web.app import ClickbackApp

MAX_QUERY = 8192
MAX_BODY = 16384
MAX_FIELDS = 64

_NOT_FOUND = (
    b"<!doctype html><title>Not found</title><h1>Not found</h1>"
    b"<p>This tracking link does not exist or is not active.</p>"
)
_JSON = [(b"content-type", b"application/json")]
_NO_STORE = (b"cache-control", b"no-store")


async def _answer(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _json(send: Any, status: int, data: Any) -> None:
    await _answer(send, status, orjson.dumps(data), _JSON)


def client_ip(app: ClickbackApp, scope: dict[str, Any]) -> str:
    """The direct peer, or, when that is a trusted proxy, the nearest address in
    `X-Forwarded-For` that is not itself a trusted proxy."""
    client = scope.get("client")
    peer: str = client[0] if client else ""
    trusted = app.trusted_proxies
    if not trusted or not in_networks(peer, trusted):
        return peer
    for name, value in scope["headers"]:
        if name == b"x-forwarded-for":
            hops = [h.strip() for h in value.decode("latin-1").split(",") if h.strip()]
            for hop in reversed(hops):
                if not is_ip(hop):
                    return str(peer)  # a garbled header: believe only the peer
                if not in_networks(hop, trusted):
                    return str(hop)
            return str(hops[0]) if hops else str(peer)
    return peer


async def click(app: ClickbackApp, scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["method"] not in ("GET", "HEAD"):
        await _answer(send, 405, b"method not allowed", [(b"allow", b"GET, HEAD")])
        return
    ua = referer = ""
    for name, value in scope["headers"]:
        if name == b"user-agent":
            ua = value.decode("latin-1").replace("\x00", "")
        elif name == b"referer":
            referer = value.decode("latin-1").replace("\x00", "")
    query = scope["query_string"]
    try:
        location = await app.tracker.click(
            scope["path"][3:],
            query.decode("latin-1") if len(query) <= MAX_QUERY else "",
            client_ip(app, scope),
            ua,
            referer,
        )
    except UnavailableError:
        await _answer(send, 503, b"temporarily unavailable, retry", [(b"retry-after", b"1")])
        return
    if location is None:
        await _answer(send, 404, _NOT_FOUND, [(b"content-type", b"text/html; charset=utf-8")])
        return
    await send(
        {
            "type": "http.response.start",
            "status": 302,
            "headers": [
                (b"location", location.encode("latin-1")),
                _NO_STORE,
                (b"content-length", b"0"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})


class BodyError(Exception):
    """The body was too large, or the client went away before sending all of it."""

    def __init__(self, code: str, message: str, status: int, partial: bytes):
        super().__init__(message)
        self.error = FieldError("*", code, message)
        self.status = status
        self.partial = partial  # what arrived, kept in the ledger for inspection


async def _read_body(receive: Any, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # a part is not the order: never record it
            raise BodyError(
                "request_incomplete", "the client left before the body ended", 400, b"".join(chunks)
            )
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyError(
                "request_too_large", f"body over {limit} bytes", 413, b"".join(chunks)[:MAX_QUERY]
            )
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def split_query(text: str) -> list[tuple[str, str]]:
    """`parse_qsl(text, keep_blank_values=True, errors="replace")`, with the common case
    (nothing to decode: no `%`, no `+`) split directly, a quarter of the time; raises
    ValueError past MAX_FIELDS fields, as `parse_qsl` does."""
    if "%" in text or "+" in text:
        return parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS, errors="replace")
    if text.count("&") >= MAX_FIELDS:
        raise ValueError("too many fields")
    pairs = []
    for field in text.split("&"):
        if field:
            name, _, value = field.partition("=")
            pairs.append((name, value))
    return pairs


def _params(text: str, into: dict[str, str], errors: list[FieldError]) -> None:
    try:
        pairs = split_query(text)
    except ValueError:
        errors.append(FieldError("*", "too_many_fields", f"more than {MAX_FIELDS} parameters"))
        return
    for k, v in pairs:
        # first value wins; long ones kept as a bounded excerpt; NUL is not text anywhere
        into.setdefault(k.replace("\x00", ""), v[:1024].replace("\x00", ""))


async def postback(app: ClickbackApp, scope: dict[str, Any], receive: Any, send: Any) -> None:
    method = scope["method"]
    if method not in ("GET", "POST"):
        await _json(
            send,
            405,
            {
                "status": "rejected",
                "errors": [
                    {"field": "*", "code": "method_not_allowed", "message": "use GET or POST"}
                ],
            },
        )
        return
    params: dict[str, str] = {}
    errors: list[FieldError] = []
    status_override = None
    query = scope["query_string"]
    if len(query) > MAX_QUERY:
        errors.append(FieldError("*", "request_too_large", f"query longer than {MAX_QUERY} bytes"))
        status_override = 414
        query = query[:MAX_QUERY]
    _params(query.decode("latin-1"), params, errors)
    if method == "POST":
        try:
            body = await _read_body(receive, MAX_BODY)
        except BodyError as exc:
            errors.append(exc.error)
            status_override = exc.status
            _params(exc.partial.decode("utf-8", "replace"), params, errors)
        else:
            _params(body.decode("utf-8", "replace"), params, errors)
    try:
        answer = await app.tracker.postback(method, client_ip(app, scope), params, errors or None)
    except UnavailableError as exc:
        await _json(
            send,
            503,
            {
                "status": "error",
                "errors": [{"field": "*", "code": exc.code, "message": exc.message}],
            },
        )
        return
    if answer.status == 429:
        retry = str(app.tracker.limiter.retry_after()).encode()
        await _answer(send, 429, orjson.dumps(answer.body), [*_JSON, (b"retry-after", retry)])
        return
    await _json(send, status_override or answer.status, answer.body)
