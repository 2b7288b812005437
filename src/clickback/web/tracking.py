"""The two hot paths, `GET /c/{code}` and `GET|POST /postback`, for both server
interfaces.

`click_answer` and `postback_answer` take what they need off the request as plain
strings and give back the answer as `(status, headers, body)`; `click` and `postback`
adapt them to ASGI (the app the tests drive, any ASGI server), `web/rsgi.py` to
granian's RSGI, which `clickback serve` runs: there an answer is one call into the
server instead of two ASGI messages. Each reads only what it needs, makes one domain
call and answers; no framework, no per-request objects beyond what the answer needs.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import json
from collections.abc import Iterable
from email.message import Message
from email.parser import BytesParser
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote_plus

import orjson

from clickback.domain import security
from clickback.domain.models import FieldError
from clickback.domain.postback import (
    GET_BODY,
    OPTIONAL,
    PARAMETERS,
    UNSUPPORTED_ENCODING,
    half_a_character,
    json_order_number,
    not_a_value,
    nul_in,
)
from clickback.errors import UnavailableError

if TYPE_CHECKING:
    from clickback.web.app import ClickbackApp

MAX_QUERY = 8192
MAX_BODY = 16384
MAX_FIELDS = 64

Headers = list[tuple[str, str]]
Answer = tuple[int, Headers, bytes]

JSON_TYPE = "application/json"
MULTIPART_TYPE = "multipart/form-data"
# a postback URL pasted with a slash after it is a postback all the same (kept in the
# ledger, counted), as a tracking link is (`/c/CODE/`)
POSTBACK_PATHS = frozenset({"/postback", "/postback/"})
_JSON = ("content-type", JSON_TYPE)


_NO_STORE = ("cache-control", "no-store")
_NOT_FOUND: Answer = (
    404,
    [("content-type", "text/html; charset=utf-8")],
    b"<!doctype html><title>Not found</title><h1>Not found</h1>"
    b"<p>This tracking link does not exist or is not active.</p>",
)
_CLICK_NOT_ALLOWED: Answer = (405, [("allow", "GET, HEAD")], b"method not allowed")
_POSTBACK_ALLOW = ("allow", "GET, POST")
# requests to /postback that carry no postback (a monitor's HEAD, a browser's preflight)
PROBES = frozenset({"HEAD", "OPTIONS"})
_CLICK_UNAVAILABLE: Answer = (503, [("retry-after", "1")], b"temporarily unavailable, retry")


def declared_json(content_type: str) -> bool:
    """Whether a (lower-cased) Content-Type declares JSON: `application/json`, a JSON
    media type by its `+json` suffix (RFC 6839, `application/vnd.api+json`), or the
    `text/json` some senders use; parameters such as `charset` aside."""
    media = content_type.split(";", 1)[0].strip()
    return media in (JSON_TYPE, "text/json") or (
        media.startswith("application/") and media.endswith("+json")
    )


def click_begun(
    app: ClickbackApp, method: str, code: str, query: str, ip: str, ua: str, referer: str
) -> tuple[str, asyncio.Future[None] | None] | None:
    """`click_answer` begun without a coroutine, for a GET or HEAD of a serving link in
    the cache: the Location (`redirect` makes the answer) and the write to wait for
    first (None: none); None when `click_answer` is to answer the request."""
    if method not in ("GET", "HEAD"):
        return None
    return app.tracker.click_cached(
        code.rstrip("/"),
        query if len(query) <= MAX_QUERY else "",
        ip,
        ua.replace("\x00", ""),
        referer.replace("\x00", ""),
        store=method == "GET",
    )


def redirect(location: str) -> Answer:
    return 302, [("location", location), _NO_STORE], b""


def click_failed(exc: BaseException) -> Answer | None:
    """The answer to a click whose write failed with `exc`: a 503 for a database out of
    reach; None for anything else (a defect: a 500)."""
    return _CLICK_UNAVAILABLE if isinstance(exc, UnavailableError) else None


async def click_answer(
    app: ClickbackApp, method: str, code: str, query: str, ip: str, ua: str, referer: str
) -> Answer:
    if method not in ("GET", "HEAD"):
        return _CLICK_NOT_ALLOWED
    try:
        location = await app.tracker.click(
            code.rstrip("/"),  # `/c/CODE/`, as links get pasted: the same link
            query if len(query) <= MAX_QUERY else "",
            ip,
            ua.replace("\x00", ""),
            referer.replace("\x00", ""),
            store=method == "GET",  # a HEAD is a link checker's, not a visit
        )
    except UnavailableError:
        return _CLICK_UNAVAILABLE
    if location is None:
        return _NOT_FOUND
    return redirect(location)


class BodyError(Exception):
    """The body was too large, or the client went away before sending all of it."""

    def __init__(self, code: str, message: str, status: int, partial: bytes):
        super().__init__(message)
        self.error = FieldError("*", code, message)
        self.status = status
        self.partial = partial  # what arrived, kept in the ledger for inspection


def body_too_large(partial: bytes) -> BodyError:
    return BodyError("request_too_large", f"body over {MAX_BODY} bytes", 413, partial[:MAX_QUERY])


def body_cut_short(partial: bytes) -> BodyError:
    return BodyError("request_incomplete", "the client left before the body ended", 400, partial)


def fields_of(text: str) -> list[str]:
    """A query's fields, `&&` and a trailing `&` being none."""
    return [field for field in text.split("&") if field]


def split_query(text: str) -> list[tuple[str, str]]:
    """`parse_qsl(text, keep_blank_values=True, errors="backslashreplace")`, with the
    common case (nothing to decode: no `%`, no `+`) split directly, a quarter of the time;
    raises ValueError past MAX_FIELDS fields, as `parse_qsl` does, but counting only the
    fields that are there (`a=1&&b=2` has two, as it has two pairs). Escapes that are not
    UTF-8 stay apart (`M%FCller` is `M\\xfcller`, `M%E9ller` `M\\xe9ller`): replaced by
    one character, two order numbers would be one, the second a false duplicate."""
    if text.count("&") >= MAX_FIELDS and len(fields_of(text)) > MAX_FIELDS:
        raise ValueError("too many fields")
    if "%" in text or "+" in text:
        return parse_qsl(text, keep_blank_values=True, errors="backslashreplace")
    pairs = []
    for field in text.split("&"):
        if field:
            name, _, value = field.partition("=")
            pairs.append((name, value))
    return pairs


class Kept(dict[str, str]):
    """A postback's parameters as it is read and kept: each one's first value; and, in
    `repeats`, the later values of a parameter sent more than once (`sku=A&sku=B`,
    `item[]=…`), which nothing reads but the ledger keeps (one the postback is decided
    on, sent again with another value, refuses it: `repeated`)."""

    __slots__ = ("repeats",)

    def __init__(self) -> None:
        super().__init__()
        self.repeats: dict[str, list[str]] = {}


def _params(
    text: str, into: Kept, errors: list[FieldError], sent: dict[str, str], whole: bool = True
) -> None:
    try:
        pairs = split_query(text)
    except ValueError:
        # refused, but the first MAX_FIELDS are kept: whose order it was stays known
        errors.append(
            FieldError(
                "*",
                "too_many_fields",
                f"more than {MAX_FIELDS} parameters (the first {MAX_FIELDS} are kept)",
            )
        )
        pairs = split_query("&".join(fields_of(text)[:MAX_FIELDS]))
    _merge(pairs, into, errors, sent)
    if whole:  # (a body cut short is refused for that, and may end anywhere)
        _cut_at_ampersand(text, errors)


def _cut_at_ampersand(text: str, errors: list[FieldError]) -> None:
    """`ordernumber` followed by a field with no `=`: an `&` sent as it is inside the
    order number (`ordernumber=Smith&Sons-1` is the order `Smith`, and `Smith&Sons-2`
    would be its duplicate, a sale lost), or a flag of the advertiser's own right after
    it (`&test`, a cache-buster `&1701234567`), which cannot be told apart. Refused,
    saying so, and again by a replay: to be sent again, fixed."""
    fields = fields_of(text)
    for before, field in itertools.pairwise(fields):
        if "=" in field or "=" not in before:
            continue
        name, _, value = before.partition("=")
        if not value or unquote_plus(name, errors="backslashreplace") != "ordernumber":
            continue
        arrived = unquote_plus(f"{before}&{field}", errors="backslashreplace")
        errors.append(
            FieldError(
                "ordernumber",
                "unencoded_ampersand",
                f"`ordernumber` looks cut at an `&` sent as it is: `{arrived[:80]}` arrived,"
                " read as `ordernumber` and a parameter with no value. An `&` inside the"
                " order number must be sent as %26, and a flag of your own must not follow"
                " it (give it a value, or put it first)",
            )
        )
        return


def _merge(
    pairs: Iterable[tuple[str, str]],
    into: Kept,
    errors: list[FieldError],
    sent: dict[str, str],
) -> None:
    """The pairs into `into` as the postback is read and kept, and into `sent` as they
    arrived: a signature covers what was sent, not what was kept of it."""
    for k, v in pairs:
        sent.setdefault(k, v)
        # long values kept as a bounded excerpt; NUL is not text anywhere (PostgreSQL's
        # cannot hold it): kept as its escape, as bytes that are not UTF-8 are, and
        # refused in a parameter the postback is decided on (dropped, `A\x001` was `A1`)
        k, v = k.replace("\x00", ""), v[:1024]
        if "\x00" in v:
            v = v.replace("\x00", "\\x00")
            if k in PARAMETERS:
                errors.append(nul_in(k))
        if k in into:  # sent again: the ledger keeps each value
            into.repeats.setdefault(k, []).append(v)
            if k not in PARAMETERS:  # the advertiser's own: nothing reads it
                continue
        was = into.setdefault(k, v)
        if was != v and k in PARAMETERS and _differ(k, was, v):  # the error says both
            # but not the advertiser's token's, which only admin tokens may read
            both = "" if k == "token" else f" ({was[:64]!r}, {v[:64]!r})"
            errors.append(
                FieldError(
                    k,
                    "repeated",
                    f"`{k}` was sent more than once, with different values{both}: send it once",
                )
            )


def _differ(name: str, first: str, then: str) -> bool:
    """Whether two values of one parameter mean two things: as they are read, trimmed,
    and a currency or country code in any case (`USD`, `usd`)."""
    first, then = first.strip(), then.strip()
    return first.upper() != then.upper() if name in ("currency", "geo") else first != then


class _Members(list[tuple[str, Any]]):
    """A JSON object's members in order, a repeated name kept (`json.loads` keeps only
    its last value)."""


class _Number(str):
    """A JSON number as it was written (`49.90`, `2`), never a float."""


class _Text(str):
    """JSON text to write out as it is (`_json_text`)."""


def _json_text(value: Any) -> str:
    """A JSON value read with `_Members` and `_Number` as JSON text again, as it was sent
    but for its spacing: an object as an object, a number as written. Without recursion:
    a value nested as deep as `json.loads` reads is written out too."""
    out: list[str] = []
    todo = [value]
    while todo:
        v = todo.pop()
        if type(v) is _Text or isinstance(v, _Number):
            out.append(str(v))
        elif isinstance(v, _Members):
            parts: list[Any] = [_Text("{")]
            for i, (k, x) in enumerate(v):
                parts += [_Text(("," if i else "") + json.dumps(k, ensure_ascii=False) + ":"), x]
            todo += reversed([*parts, _Text("}")])
        elif isinstance(v, list):
            parts = [_Text("[")]
            for i, x in enumerate(v):
                parts += [_Text(","), x] if i else [x]
            todo += reversed([*parts, _Text("]")])
        else:  # a string (a lone surrogate too), a boolean, null
            out.append(json.dumps(v, ensure_ascii=False))
    return "".join(out)


def _json_params(body: bytes, into: Kept, errors: list[FieldError], sent: dict[str, str]) -> None:
    """A JSON object's members as parameters: strings, and numbers as written (`49.90`
    stays `49.90`, never a float); another value is kept as its JSON text, and refused
    for a parameter the postback is decided on. An empty body is no fields; one that is
    no JSON object is refused, an excerpt of it kept in the ledger as `(body)`."""
    if not body.strip():
        return
    try:
        data = json.loads(
            body,
            parse_float=_Number,
            parse_int=_Number,
            parse_constant=_no_constant,
            object_pairs_hook=_Members,
        )
    except (ValueError, RecursionError) as exc:
        # what stopped it, and where, for a body that is no JSON (`{bad`, a cut-off one)
        said = (
            f"{exc.msg} at character {exc.pos}"
            if isinstance(exc, json.JSONDecodeError)
            else "nested too deeply"
            if isinstance(exc, RecursionError)
            else str(exc)
        )
        why = f"the body is not valid JSON ({said}): "
        data = None
    else:
        why = ""
    if not isinstance(data, _Members):
        message = f"{why}a JSON body must be one object of fields"
        errors.append(FieldError("*", "invalid_json", message))
        into.setdefault("(body)", body[:1024].decode("utf-8", "backslashreplace"))
        return
    # a lone surrogate (`"\ud83d"`, half of a character) comes only from an escape or
    # from its UTF-8 bytes, which `json.loads` lets through: looked for only then
    halves = b"\\u" in body or b"\xed" in body
    pairs = []
    for k, v in data:
        if halves:
            k = _whole(k)
        if isinstance(v, str):
            if halves and (text := _whole(v)) is not v:
                if k in PARAMETERS:
                    errors.append(half_a_character(k, v))
                v = text
            wrong = json_order_number(v) if k == "ordernumber" and type(v) is _Number else None
            if wrong is not None:
                errors.append(wrong)
            pairs.append((k, str(v)))
            continue
        if v is None and k in OPTIONAL:
            pairs.append((k, ""))
            continue
        text = _whole(_json_text(v))  # a surrogate in a list or an object, as its escape
        pairs.append((k, text))
        if k in PARAMETERS:
            errors.append(not_a_value(k, text))
    _merge(pairs, into, errors, sent)


def _multipart_params(
    body: bytes,
    content_type: str,
    into: Kept,
    errors: list[FieldError],
    sent: dict[str, str],
) -> None:
    """A `multipart/form-data` body's fields as parameters (what PHP's cURL sends for an
    array of fields, `curl -F`, a browser's form with files): each part's text, a file
    part's content as its value too. `content_type` as sent: its boundary is
    case-sensitive. A body that is no such form is refused, an excerpt of it kept in
    the ledger as `(body)`."""
    head = b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n"
    message = BytesParser().parsebytes(head + body)
    parts = message.get_payload() if message.is_multipart() else None
    if not parts or message.defects:
        errors.append(
            FieldError(
                "*",
                "invalid_form",
                "a multipart/form-data body must hold its fields between the boundary of"
                " its Content-Type; or send them in the query, as a form"
                " (application/x-www-form-urlencoded) or as a JSON object",
            )
        )
        into.setdefault("(body)", body[:1024].decode("utf-8", "backslashreplace"))
        return
    pairs = []
    for part in parts:
        if not isinstance(part, Message):
            continue
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, tuple):  # RFC 2231 `name*=utf-8''…`
            name = email.utils.collapse_rfc2231_value(name)
        raw = part.get_payload(decode=True)
        if name is not None:
            text = raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else ""
            pairs.append((str(name), text))
    _merge(pairs, into, errors, sent)


def _whole(text: str) -> str:
    """`text` itself, or, when it holds a lone surrogate (which is no text: it can be
    neither encoded nor stored), a copy with each as its escape, `\\ud83d`, as bytes
    that are not UTF-8 are kept (`\\xff`)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text


def _no_constant(name: str) -> Any:
    raise ValueError(name)  # NaN, Infinity: not JSON numbers


def _json(status: int, data: Any, *headers: tuple[str, str]) -> Answer:
    return status, [_JSON, *headers], orjson.dumps(data)


# a body so encoded (by any of the header's codings) is not read; another value, `utf-8`
# mislabelled, say, is read as is
COMPRESSIONS = frozenset(
    (
        "gzip",
        "x-gzip",
        "deflate",
        "br",
        "compress",
        "x-compress",
        "zstd",
        "aes128gcm",
        "dcb",
        "dcz",
        "exi",
        "pack200-gzip",
    )
)


def compressed(content_encoding: str) -> bool:
    """Whether a Content-Encoding (one coding, or a list: `gzip, identity`) compresses."""
    return any(c.strip().lower() in COMPRESSIONS for c in content_encoding.split(","))


async def postback_answer(
    app: ClickbackApp,
    method: str,
    query: str,
    ip: str,
    body: bytes | BodyError | None,
    content_type: str = "",
    content_encoding: str = "",
) -> Answer:
    """`body` is what a POST sent (or why it could not be read), a form or (by its
    `content_type`) a JSON object; None for a GET. A body of a `content_encoding`
    (gzip, say) is not read: refused as such, kept in the ledger as it came."""
    params = Kept()
    sent: dict[str, str] = {}
    errors: list[FieldError] = []
    status_override = None
    if method not in ("GET", "POST"):
        if method in PROBES:  # no postback: nothing to keep
            error = {"field": "*", "code": "method_not_allowed", "message": "use GET or POST"}
            return _json(405, {"status": "rejected", "errors": [error]}, _POSTBACK_ALLOW)
        # a postback fired with the wrong method (PUT, say) is kept with its query, so
        # that the operator sees it in the ledger (and can replay it)
        errors.append(FieldError("*", "method_not_allowed", "use GET or POST"))
        status_override = 405
    if len(query) > MAX_QUERY:
        errors.append(FieldError("*", "request_too_large", f"query longer than {MAX_QUERY} bytes"))
        status_override = 414
        query = query[:MAX_QUERY]
    _params(query, params, errors, sent)
    if method == "GET" and body is not None:
        # a GET is decided on its query alone, as it always was (a body a client sent
        # with it neither fills nor refuses it), but what the body held is kept, and a
        # refusal says it was not read (`Tracker.postback`)
        raw = body.partial if isinstance(body, BodyError) else body
        if raw.strip():
            params.setdefault(GET_BODY, raw[:1024].decode("utf-8", "backslashreplace"))
    elif body is not None and content_encoding and compressed(content_encoding):
        said = f"a body sent with Content-Encoding {content_encoding.strip()!r} is not read"
        errors.append(FieldError("*", UNSUPPORTED_ENCODING, f"{said}: send it uncompressed"))
        raw = body.partial if isinstance(body, BodyError) else body
        params.setdefault("(body)", raw[:1024].decode("utf-8", "backslashreplace"))
        status_override = 415
    elif isinstance(body, BodyError):
        errors.append(body.error)
        status_override = body.status
        _params(body.partial.decode("utf-8", "backslashreplace"), params, errors, sent, False)
    elif body is not None and declared_json(kind := content_type.lower()):
        _json_params(body, params, errors, sent)
    elif body is not None and kind.startswith(MULTIPART_TYPE):
        _multipart_params(body, content_type, params, errors, sent)
    elif body is not None:
        _params(body.decode("utf-8", "backslashreplace"), params, errors, sent)
    try:
        answer = await app.tracker.postback(
            method,
            ip,
            params,
            errors or None,
            sent=sent,
            arrived_status=status_override,
            more_values=params.repeats,
        )
    except UnavailableError as exc:
        error = {"field": "*", "code": exc.code, "message": exc.message}
        return _json(503, {"status": "error", "errors": [error]})
    if answer.status == 429:
        retry = str(app.tracker.limiter.retry_after())
        return _json(429, answer.body, ("retry-after", retry))
    if answer.status == 405:
        return _json(405, answer.body, _POSTBACK_ALLOW)
    return _json(answer.status, answer.body)


# -- ASGI -------------------------------------------------------------------------------


async def _send(send: Any, answer: Answer) -> None:
    status, headers, body = answer
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def client_ip(app: ClickbackApp, scope: dict[str, Any]) -> str:
    client = scope.get("client")
    peer: str = client[0] if client else ""
    if not app.trusted_proxies:
        return peer
    # every line of the header, in order: a proxy that adds a line of its own after the
    # client's keeps the client's first, and the hops are read from the right
    lines = [v.decode("latin-1") for n, v in scope["headers"] if n == b"x-forwarded-for"]
    if not lines:
        return peer
    return security.forwarded_ip(peer, ", ".join(lines), app.trusted_proxies)


def query_text(raw: bytes) -> str:
    """An ASGI query string as text, as `clickback serve` (RSGI) gets it: UTF-8 (a value
    sent unescaped, `Müller`, is the same as `M%C3%BCller`), and bytes that are not UTF-8
    kept apart from each other as escapes (`\\xfc`), never merged into one character."""
    return raw.decode("utf-8", "backslashreplace")


async def click(app: ClickbackApp, scope: dict[str, Any], receive: Any, send: Any) -> None:
    ua = referer = ""
    for name, value in scope["headers"]:
        if name == b"user-agent":
            ua = value.decode("latin-1")
        elif name == b"referer":
            referer = value.decode("latin-1")
    query = scope["query_string"]
    ip = client_ip(app, scope)
    answer = await click_answer(
        app, scope["method"], scope["path"][3:], query_text(query), ip, ua, referer
    )
    await _send(send, answer)


async def _read_body(receive: Any) -> bytes | BodyError:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # a part is not the order: never record it
            return body_cut_short(b"".join(chunks))
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return body_too_large(b"".join(chunks))
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def has_body(method: str, length: str | None, chunked: bool) -> bool:
    """Whether a postback's body is read: a POST's, and one of another method (but a
    HEAD's or an OPTIONS', `PROBES`) that has one (a Content-Length above 0, or
    chunked). A GET's, which some HTTP clients send, is not read as fields, but kept in
    the ledger (`GET_BODY`); a PUT's (a wrong method, refused 405) is read as a POST's,
    so that the ledger keeps the order it sent, to replay."""
    if method == "POST":
        return True
    return method not in PROBES and (chunked or (length is not None and length.strip("0 ") != ""))


async def postback(app: ClickbackApp, scope: dict[str, Any], receive: Any, send: Any) -> None:
    method = scope["method"]
    kind = length = encoding = b""
    chunked = False
    for n, v in scope["headers"]:
        if n == b"content-type":
            kind = v
        elif n == b"content-length":
            length = v
        elif n == b"transfer-encoding":
            chunked = True
        elif n == b"content-encoding":
            encoding = v
    read = has_body(method, length.decode("latin-1") or None, chunked)
    body = await _read_body(receive) if read else None
    # decoded whole, then measured as RSGI's is, in characters: bytes cut before decoding
    # could make a query that was too long look complete
    query = query_text(scope["query_string"])
    answer = await postback_answer(
        app,
        method,
        query,
        client_ip(app, scope),
        body,
        kind.decode("latin-1"),
        encoding.decode("latin-1"),
    )
    await _send(send, answer)
