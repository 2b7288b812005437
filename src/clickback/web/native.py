"""clickback's own HTTP/1.1 front (`clickback serve --server native`): uvloop and the
httptools parser, no server framework between the socket and the tracker.

The two hot paths are answered straight from the parsed request: a click on a link in
the cache waits for its write with a callback (no task), and its answer is written as
one buffer. Everything else (health checks, the admin API, the dashboard, the kit) goes
to the ASGI app through `native_asgi`, its body passed on as it arrives (`native_request`
holds the parsed request and the upload's body). The server
itself (the listening socket, timeouts, workers, stop) is in `native_serve`.

What a connection owes its client here:
- keep-alive (HTTP/1.1 by default, HTTP/1.0 when asked), `Connection: close` honoured;
- pipelining: requests on one connection answered one at a time, in order, reading
  paused while a few wait or while the client does not read its answers; a request
  refused (400, 408, 413, 414, 431) is answered after those before it, then the
  connection is closed;
- `Expect: 100-continue` answered before a body is read;
- a postback whose client left, or stalled, before its body ended is still handed to
  the tracker (kept in the ledger as incomplete, with what came), as on the other
  servers; so is one whose client half-closed, and its answer is written;
- limits: the request target (`MAX_TARGET`, 414), the request line and headers
  (`MAX_HEAD`, 431), a body (413: a postback's past `tracking.MAX_BODY` is refused by
  the tracker and kept in the ledger, cut; an upload to the rest past `MAX_OTHER_BODY`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from email.utils import formatdate
from functools import partial
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import httptools

from clickback.domain import security
from clickback.web import tracking
from clickback.web.native_request import (
    POSTBACK_LINE,
    POSTBACK_PATHS,
    Body,
    Request,
    escaped_first_line,
    refusal,
    spaced_postback_line,
)
from clickback.web.tracking import MAX_BODY, BodyError, body_cut_short, body_too_large

if TYPE_CHECKING:
    from clickback.web.native_serve import NativeServer

log = logging.getLogger("clickback")

MAX_TARGET = 32768  # the request target, bytes
MAX_HEAD = 65536  # request line and headers, bytes
MAX_HEADERS = 128
MAX_OTHER_BODY = 64 * 1024 * 1024  # the admin API's and dashboard's uploads
MAX_QUEUED = 8  # pipelined requests waiting on one connection before reading pauses
SERVER_ERROR: tracking.Answer = (500, [("content-type", "text/plain")], b"server error")

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_NO_LENGTH = frozenset({204, 304})


class _Stopped(Exception):
    """Raised in a parser callback to stop the reading of a refused request."""


class _Clock:
    """The `Date` header's line, renewed each second by the server's sweep."""

    date = b""

    def tick(self) -> None:
        self.date = b"date: %s\r\n" % formatdate(usegmt=True).encode()


clock = _Clock()
clock.tick()


def head(request: Request, status: int, headers: Any, length: int | None, close: bool) -> bytes:
    """An answer's status line and headers; `length` None: chunked (HTTP/1.1) or to the
    end of the connection (HTTP/1.0, `close` then)."""
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b""))]
    lines.extend(f"{k}: {v}\r\n".encode("latin-1") for k, v in headers)
    if length is None:
        if not close:
            lines.append(b"transfer-encoding: chunked\r\n")
    elif status not in _NO_LENGTH:
        lines.append(b"content-length: %d\r\n" % length)
    lines.append(clock.date)
    if close:
        lines.append(b"connection: close\r\n")
    elif request.http_version == "1.0":
        lines.append(b"connection: keep-alive\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


class Connection(asyncio.Protocol):
    """One client connection: parses requests, answers them in order."""

    def __init__(self, server: NativeServer):
        self.server = server
        self.app = server.app
        self.transport: Any = None
        self.peer = ""
        self.peer_port = 0
        self.parser = httptools.HttpRequestParser(self)
        self.request: Request | None = None  # the one being received
        self.in_line = False  # its request line is not whole yet
        self.head_size = 0
        self.headed = False  # its headers are whole
        self.queue: collections.deque[Request] = collections.deque()
        self.busy = False  # a request is being answered
        self.closing = False  # nothing more is read; closed once the queue is answered
        self.last = time.monotonic()  # when a byte last came, or an answer went
        self.started = 0.0  # when the request being received began
        self.writable: asyncio.Future[None] | None = None
        self.lost: asyncio.Future[None] | None = None
        self.paused = False  # reading paused by the server (not the client's doing)
        self.upgraded: Request | None = None  # an upgrade's request, its body unread
        self.continued = False  # the parser reads the body of `upgraded`
        self.expecting = False  # the request being received waits for its `100 Continue`
        self.stalled = 0.0  # since when the client has not read its answers

    # the transport's side
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer, self.peer_port = peer[0], peer[1]
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.closing = True
        # what came and is not answered yet: no one to answer now, so only postbacks
        # are still handed to the tracker (kept in the ledger), clicks not made
        kept = [r for r in self.queue if r.refusal is None and r.is_postback()]
        self.queue.clear()
        self.queue.extend(kept)
        self._cut_short()
        if self.lost is not None and not self.lost.done():
            self.lost.set_result(None)
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None
        if not self.busy and self.queue:
            self._next()

    def eof_received(self) -> bool:
        """The client sent all it will (a half-close): what came is answered, then the
        connection closed."""
        self.closing = True
        self._cut_short()
        if self.busy or self.queue:
            if not self.busy:
                self._next()
            return True
        return False

    def _cut_short(self) -> bool:
        """The request being received will not end: a postback is kept as it came (the
        tracker stores it as incomplete, and its answer is the last on the connection),
        an upload's app told; anything else dropped. True for a postback kept."""
        request, self.request = self.request, None
        if request is None or not self.headed:
            return False
        if request.stream is not None:
            request.stream.end(cut=True)
        elif request.is_postback():
            request.cut = True
            request.keep_alive = False
            self.queue.append(request)
            return True
        return False

    def pause_writing(self) -> None:
        """The client is not reading its answers: nor is its next request read, nor
        answered (`_next`); past CLICKBACK_HTTP_IDLE_SECONDS the connection is dropped."""
        self.writable = asyncio.get_running_loop().create_future()
        self.stalled = time.monotonic()
        self.pause()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None
        self.resume()
        if not self.busy and self.queue:
            self._next()

    def pause(self) -> None:
        """Stop reading: the time a request takes to come does not run meanwhile."""
        if not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        """Read again, unless something still holds the reading paused."""
        request = self.request
        if (
            not self.paused
            or self.closing
            or self.writable is not None
            or len(self.queue) >= MAX_QUEUED
            or (request is not None and request.stream is not None and request.stream.held)
        ):
            return
        self.paused = False
        self.last = time.monotonic()
        self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.last = time.monotonic()
        while data and not self.closing:  # again after each upgrade the parser stopped at
            if (self.request is None or self.in_line) and not data.isascii():
                data = escaped_first_line(data)
            if self.request is None and data.startswith(POSTBACK_LINE):
                data = spaced_postback_line(data)
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade as exc:
                data = self._not_upgraded(data[exc.args[0] if exc.args else len(data) :])
                continue
            except (httptools.HttpParserError, _Stopped) as exc:
                if not self.closing:
                    self.refuse(400, f"bad request: {exc}".encode())
            return

    def _not_upgraded(self, rest: bytes) -> bytes:
        """An upgrade asked for (h2c, as `curl --http2` asks; a websocket) is not made:
        the request is answered in HTTP/1.1. The parser stopped at it, its body unread:
        a new parser reads on (the bytes returned), the body first, framed as the
        request said, then the requests after it."""
        self.parser = httptools.HttpRequestParser(self)
        request, self.upgraded = self.upgraded, None
        if request is None:
            return rest
        self.request, self.continued = request, True
        codings = [v for k, v in request.headers if k == b"transfer-encoding"]
        if codings:
            if b",".join(codings).rsplit(b",", 1)[-1].strip().lower() != b"chunked":
                # as the parser refuses it without an upgrade: no length it can be read by
                self.continued = False
                self.refuse(400, b"bad request: Request has invalid Transfer-Encoding")
                return b""
            framing = b"transfer-encoding: chunked"
        else:
            framing = b"content-length: %d" % int(request.header(b"content-length") or "0")
        return b"POST / HTTP/1.1\r\n%s\r\n\r\n%s" % (framing, rest)

    # the parser's side
    def on_message_begin(self) -> None:
        if self.continued:  # the body of a request the parser stopped at (an upgrade)
            return
        self.request = Request()
        self.expecting = False
        self.in_line = True
        self.headed = False
        self.head_size = 0
        self.started = time.monotonic()

    def on_url(self, url: bytes) -> None:
        if self.continued:
            return
        request = self.request
        assert request is not None
        request.target += url
        self._count(len(url))
        if len(request.target) > MAX_TARGET:
            self._stop(414, b"request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.continued:
            return
        request = self.request
        assert request is not None
        self.in_line = False
        request.headers.append((name.lower(), value))
        self._count(len(name) + len(value))
        if len(request.headers) > MAX_HEADERS:
            self._stop(431, b"too many headers")

    def _count(self, size: int) -> None:
        self.head_size += size
        if self.head_size > MAX_HEAD:
            self._stop(431, b"request line and headers too large")

    def on_headers_complete(self) -> None:
        if self.continued:
            return
        request = self.request
        assert request is not None
        self.in_line = False
        self.headed = True
        parser = self.parser
        request.method = parser.get_method().decode("latin-1")
        request.http_version = parser.get_http_version()
        request.keep_alive = parser.should_keep_alive()
        length = request.header(b"content-length")
        # an upload past its limit is refused unsent (a postback's is kept, cut)
        if (
            length is not None
            and length.isdigit()
            and int(length) > MAX_OTHER_BODY
            and not request.is_postback()
        ):
            self._stop(413, b"body too large")
        expect = request.header(b"expect")
        expects = (
            expect is not None
            and expect.lower() == "100-continue"
            and request.http_version == "1.1"
        )
        if (
            length not in (None, "0") or request.header(b"transfer-encoding") is not None
        ) and not request.hot():
            # an upload: the app gets it as it comes, and may answer before it ends (told
            # to go on only once the app reads it: one refused is not sent)
            request.stream = Body(self)
            request.stream.expect = expects
            self._queue(request)
        elif expects and not self.busy and not self.queue:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        elif expects:  # behind answers still to be written: once they are (`_next`)
            self.expecting = True

    def on_body(self, chunk: bytes) -> None:
        request = self.request
        assert request is not None
        request.size += len(chunk)
        if request.stream is not None:
            if request.size > MAX_OTHER_BODY:
                self._stop(413, b"body too large")
            request.stream.feed(chunk)
            return
        kept = MAX_BODY + 1 - (request.size - len(chunk))  # past MAX_BODY: refused, so
        if kept > 0:  # the first part is enough for the ledger
            request.body.append(chunk[:kept])

    def on_message_complete(self) -> None:
        request = self.request
        assert request is not None
        if (
            not self.continued
            and self.parser.should_upgrade()
            and (
                request.header(b"transfer-encoding") is not None
                or request.header(b"content-length") not in (None, "0")
            )
        ):
            self.upgraded = request  # its body is still to come: `_not_upgraded`
            return
        self.continued = False
        self.expecting = False
        self.request = None
        if request.stream is not None:
            request.stream.end()
            return
        self._queue(request)

    def _queue(self, request: Request) -> None:
        self.queue.append(request)
        if len(self.queue) >= MAX_QUEUED:
            self.pause()
        if not self.busy:
            self._next()

    # answering
    def refuse(self, status: int, text: bytes) -> None:
        """A request that cannot be read further: answered after those before it, and
        the connection closed after that; a postback being received is handed to the
        tracker instead, cut short (a 400 that says so)."""
        if self.closing:
            return
        request = self.request
        if request is not None and request.stream is not None and self.headed:
            # an upload cut: its answer is this refusal, not what the app makes of the cut
            request.stream.refused = refusal(status, text).refusal
        if not self._cut_short() and (request is None or request.stream is None):
            self.queue.append(refusal(status, text))  # (a postback's own answer says why)
        self.closing = True
        if not self.busy:
            self._next()

    def _stop(self, status: int, text: bytes) -> None:
        """From within the parser: refuse, and stop the parser reading further."""
        self.refuse(status, text)
        raise _Stopped

    def _next(self) -> None:
        """Answer the requests queued, in order: those answered at once (a click not
        to wait for, a refusal), then the first that waits (its callback or task calls
        this again once it has answered)."""
        while self.queue:
            if self.writable is not None:  # answered once the client reads what it has
                self.busy = False
                return
            request = self.queue.popleft()
            if len(self.queue) < MAX_QUEUED // 2:
                self.resume()
            if not self._start(request):
                self.busy = True
                return
        self.busy = False
        if self.expecting and self.request is not None and not self.closing:
            # its turn: the client waiting to send its body is told to go on
            self.expecting = False
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if self.closing and self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _start(self, request: Request) -> bool:
        """Begin answering `request`; True if it was answered at once. A click on a
        serving link in the cache waits for its write with a callback; the rest in a
        task of its own. The hot paths are counted as the ASGI app counts its requests
        (it counts the rest itself), so its background jobs rest for them alike."""
        if request.refusal is not None:
            self.write(request, *request.refusal)
            return True
        path, query = request.path_query()
        if path[:3] == b"/c/":
            try:
                begun = tracking.click_begun(self.app, *self._click_args(request, path, query))
            except Exception:
                log.exception("request failed: %s %s", request.method, request.target[:200])
                self.write(request, *SERVER_ERROR)
                return True
            if begun is not None:
                location, written = begun
                self.app.begun += 1
                if written is None:
                    self.write(request, *tracking.redirect(location))
                    return True
                self.app.in_flight += 1
                written.add_done_callback(partial(self._clicked, request, location))
                return False
        task = self.server.loop.create_task(self._answer(request, path, query))
        self.server.tasks.add(task)
        task.add_done_callback(self.server.tasks.discard)
        return False

    def _clicked(self, request: Request, location: str, written: asyncio.Future[None]) -> None:
        self.app.in_flight -= 1
        exc = written.exception() if not written.cancelled() else asyncio.CancelledError()
        if exc is None:
            self.write(request, *tracking.redirect(location))
        else:
            answer = tracking.click_failed(exc)
            if answer is None:
                log.error("click failed: %s", request.target[:200], exc_info=exc)
                answer = SERVER_ERROR
            self.write(request, *answer)
        self._next()

    async def _answer(self, request: Request, path: bytes, query: bytes) -> None:
        """One request answered in a task; then the next on this connection."""
        from clickback.web.native_asgi import answer_asgi

        app = self.app
        try:
            if path[:3] == b"/c/" or path in POSTBACK_PATHS:
                app.begun += 1
                app.in_flight += 1
                try:
                    if path[:3] == b"/c/":
                        args = self._click_args(request, path, query)
                        answer = await tracking.click_answer(app, *args)
                    else:
                        answer = await self._postback(request, query)
                finally:
                    app.in_flight -= 1
                self.write(request, *answer)
            else:
                await answer_asgi(self, request, path, query)
        except Exception:
            log.exception("request failed: %s %s", request.method, request.target[:200])
            self.write(request, *SERVER_ERROR)
        finally:
            self._next()

    def closes_after(self, request: Request) -> bool:
        """Whether the connection is closed once `request` is answered: asked for, or
        the server is stopping and nothing more came on it."""
        return not request.keep_alive or (
            self.server.stopping and not self.queue and self.request is None
        )

    def write(self, request: Request, status: int, headers: Any, body: bytes) -> None:
        """A whole answer; the connection closed after it if `closes_after`."""
        self.last = time.monotonic()
        if self.transport is None or self.transport.is_closing():
            return
        close = self.closes_after(request)
        text = head(request, status, headers, len(body), close)
        self.transport.write(text if request.method == "HEAD" else text + body)
        if close:
            self.end()

    def end(self) -> None:
        """No more answers on this connection: what is queued is dropped, unless a
        postback, which is still handed to the tracker (its answer unsent)."""
        self.closing = True
        kept = [r for r in self.queue if r.refusal is None and r.is_postback()]
        self.queue.clear()
        for request in kept:
            request.keep_alive = False
            self.queue.append(request)
        self.transport.close()

    def _ip(self, request: Request) -> str:
        if not self.app.trusted_proxies:
            return self.peer
        lines = [v.decode("latin-1") for k, v in request.headers if k == b"x-forwarded-for"]
        if not lines:
            return self.peer
        return security.forwarded_ip(self.peer, ", ".join(lines), self.app.trusted_proxies)

    def _click_args(
        self, request: Request, path: bytes, query: bytes
    ) -> tuple[str, str, str, str, str, str]:
        """What `tracking.click_answer` takes after the app: method, code, query, the
        visitor's address, User-Agent and Referer (each header's first line)."""
        ua = referer = None
        for k, v in request.headers:
            if k == b"user-agent" and ua is None:
                ua = v.decode("latin-1")
            elif k == b"referer" and referer is None:
                referer = v.decode("latin-1")
        return (
            request.method,
            unquote(path[3:].decode("latin-1"), "utf-8", "backslashreplace"),
            tracking.query_text(query),
            self._ip(request),
            ua or "",
            referer or "",
        )

    async def _postback(self, request: Request, query: bytes) -> tracking.Answer:
        method = request.method
        length = request.header(b"content-length")
        chunked = request.header(b"transfer-encoding") is not None
        body: bytes | BodyError | None = None
        if method == "POST" or request.cut or tracking.has_body(method, length, chunked):
            raw = b"".join(request.body)
            if request.size > MAX_BODY:
                body = body_too_large(raw)
            elif request.cut:
                body = body_cut_short(raw)
            else:
                body = raw
        kind = encoding = ""
        if body is not None:
            kind = request.header(b"content-type") or ""
            encoding = request.header(b"content-encoding") or ""
        return await tracking.postback_answer(
            self.app, method, tracking.query_text(query), self._ip(request), body, kind, encoding
        )
