"""clickback's own HTTP/1.1 front (`clickback serve --server native`): uvloop and the
httptools parser, no server framework between the socket and the tracker.

The two hot paths are answered straight from the parsed request: a click's or a
postback's answer is written as one buffer. Everything else (health checks, the admin
API, the dashboard, the kit) goes to the ASGI app (`ClickbackApp`) through a small
bridge: the request's body read whole first (up to `MAX_OTHER_BODY`), the answer
written as the app sends it.

What a server owes its clients here:
- keep-alive (HTTP/1.1 by default, HTTP/1.0 when asked), `Connection: close` honoured;
- pipelining: requests on one connection answered one at a time, in order, reading
  paused while a few wait;
- `Expect: 100-continue` answered before a body is read;
- limits: the request line and headers (`MAX_HEAD`, 431), a body (413: a postback's
  past `tracking.MAX_BODY` is refused by the tracker and kept in the ledger, cut);
- timeouts: a request not received whole within CLICKBACK_HTTP_REQUEST_SECONDS (408), a
  connection idle past CLICKBACK_HTTP_IDLE_SECONDS (closed);
- a postback whose client left before its body ended is still handed to the tracker
  (kept in the ledger as incomplete), as on the other servers;
- a graceful stop on SIGTERM or SIGINT: no new connections, the requests begun are
  answered (up to `STOP_GRACE`), then the app's shutdown (the writer's last batch).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import signal
import socket
import time
from collections.abc import Callable
from email.utils import formatdate
from functools import partial
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import httptools

from clickback.domain import security
from clickback.web import tracking
from clickback.web.app import ClickbackApp
from clickback.web.tracking import MAX_BODY, BodyError, body_cut_short, body_too_large

log = logging.getLogger("clickback")

MAX_HEAD = 65536  # request line and headers, bytes
MAX_HEADERS = 128
MAX_OTHER_BODY = 64 * 1024 * 1024  # the admin API's and dashboard's uploads
STOP_GRACE = 10.0
MAX_QUEUED = 8  # pipelined requests waiting on one connection before reading pauses


class _Stopped(Exception):
    """Raised in a parser callback to stop the reading of a refused request."""


_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


def _head(status: int, headers: list[tuple[str, str]], length: int, close: bool) -> bytes:
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b""))]
    lines.extend(f"{k}: {v}\r\n".encode("latin-1") for k, v in headers)
    lines.append(b"content-length: %d\r\n" % length)
    lines.append(_clock.date)
    if close:
        lines.append(b"connection: close\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


class _Clock:
    """The `Date` header's line, renewed each second by the server's sweep."""

    date = b""

    def tick(self) -> None:
        self.date = b"date: %s\r\n" % formatdate(usegmt=True).encode()


_clock = _Clock()
_clock.tick()


_NOT_ASCII = re.compile(rb"[\x80-\xff]")


def _escaped_request_line(data: bytes) -> bytes:
    """`data` with the bytes past ASCII in its first line (a request line) escaped as
    `%XX`: a client that sends `?coupon=Müller` unescaped (a server-side script's
    postback, say) is read as if it had sent `M%C3%BCller`, which the tracker reads
    alike, where the parser would refuse the request. The rest (headers, a body) is
    left as it came."""
    end = data.find(b"\n")
    line, rest = (data, b"") if end < 0 else (data[:end], data[end:])
    return _NOT_ASCII.sub(lambda m: b"%%%02X" % m.group()[0], line) + rest


class _Request:
    __slots__ = ("body", "headers", "http_version", "keep_alive", "method", "size", "target")

    def __init__(self) -> None:
        self.method = ""
        self.target = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.size = 0
        self.keep_alive = True
        self.http_version = "1.1"

    def header(self, name: bytes) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v.decode("latin-1")
        return None

    def path_query(self) -> tuple[bytes, bytes]:
        path, _, query = self.target.partition(b"?")
        return path, query.partition(b"#")[0]


class Connection(asyncio.Protocol):
    """One client connection: parses requests, answers them in order."""

    def __init__(self, server: NativeServer):
        self.server = server
        self.app = server.app
        self.transport: Any = None
        self.peer = ""
        self.peer_port = 0
        self.parser = httptools.HttpRequestParser(self)
        self.request: _Request | None = None  # the one being received
        self.head_size = 0
        self.queue: collections.deque[_Request] = collections.deque()
        self.busy = False  # a request is being answered
        self.closing = False
        self.last = time.monotonic()  # last activity
        self.started = 0.0  # when the request being received began
        self.too_large = False
        self.writable: asyncio.Future[None] | None = None
        self.lost: asyncio.Future[None] | None = None

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
        request = self.request
        if request is not None and request.method and self._is_postback(request):
            # the client left in the middle of a postback's body: what came is kept
            self.request = None
            request.size = -1  # marks the cut
            self.queue.append(request)
            if not self.busy:
                self._next()
        if self.lost is not None and not self.lost.done():
            self.lost.set_result(None)
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def pause_writing(self) -> None:
        """The client is not reading its answers: nor is its next request read."""
        self.writable = asyncio.get_running_loop().create_future()
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None
        if len(self.queue) < MAX_QUEUED and not self.closing:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.last = time.monotonic()
        if self.request is None and not data.isascii():
            data = _escaped_request_line(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # asked to switch protocols (h2c, a websocket): answered in HTTP/1.1, as
            # if not asked, and closed after, since what follows is not HTTP/1.1
            self.closing = True
            if self.queue:
                self.queue[-1].keep_alive = False
            elif not self.busy:
                self.transport.close()
        except (httptools.HttpParserError, _Stopped) as exc:
            if not self.closing:
                self._refuse(400, f"bad request: {exc}".encode())

    def eof_received(self) -> bool | None:
        return None  # close once the requests that came are answered

    # the parser's side
    def on_message_begin(self) -> None:
        self.request = _Request()
        self.head_size = 0
        self.too_large = False
        self.started = time.monotonic()

    def on_url(self, url: bytes) -> None:
        request = self.request
        assert request is not None
        request.target += url
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self.request
        assert request is not None
        request.headers.append((name.lower(), value))
        self._count(len(name) + len(value))
        if len(request.headers) > MAX_HEADERS:
            self._stop(431, b"too many headers")

    def _count(self, size: int) -> None:
        self.head_size += size
        if self.head_size > MAX_HEAD:
            self._stop(431, b"request line and headers too large")

    def on_headers_complete(self) -> None:
        request = self.request
        assert request is not None
        parser = self.parser
        request.method = parser.get_method().decode("latin-1")
        request.http_version = parser.get_http_version()
        request.keep_alive = parser.should_keep_alive()
        if request.header(b"expect") == "100-continue" and not self.closing and not self.busy:
            # a postback's body past its limit is still read (the tracker refuses it and
            # keeps its first part); an upload to the rest past its own is refused unsent
            length = request.header(b"content-length")
            if (
                length is not None
                and length.isdigit()
                and int(length) > MAX_OTHER_BODY
                and not self._is_postback(request)
            ):
                self._stop(413, b"body too large")
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, chunk: bytes) -> None:
        request = self.request
        assert request is not None
        request.size += len(chunk)
        limit = MAX_BODY if self._is_postback(request) else MAX_OTHER_BODY
        if request.size > limit:
            if not self._is_postback(request):
                self._stop(413, b"body too large")
            self.too_large = True  # the tracker refuses it; the first part is kept
            return
        request.body.append(chunk)

    def on_message_complete(self) -> None:
        request = self.request
        assert request is not None
        self.request = None
        if self.too_large:
            request.size = MAX_BODY + 1
        self.queue.append(request)
        if len(self.queue) >= MAX_QUEUED:
            self.transport.pause_reading()
        if not self.busy:
            self._next()

    # answering
    @staticmethod
    def _is_postback(request: _Request) -> bool:
        return request.target.partition(b"?")[0] in _POSTBACK_PATHS

    def _refuse(self, status: int, text: bytes) -> None:
        """A request that cannot be read further: answered (unless one is being
        answered; then it is only closed) and the connection closed."""
        if self.closing:
            return
        self.closing = True
        self.request = None
        if not self.busy and not self.queue:
            head = _head(status, [("content-type", "text/plain")], len(text), True)
            self.transport.write(head + text)
        self.transport.close()

    def _stop(self, status: int, text: bytes) -> None:
        """From within the parser: refuse, and stop the parser reading further."""
        self._refuse(status, text)
        raise _Stopped

    def _next(self) -> None:
        """Answer the requests queued, in order: those answered at once (a click not
        to wait for), then the first that waits (its callback or task calls this again
        once it has answered)."""
        while self.queue:
            request = self.queue.popleft()
            if len(self.queue) < MAX_QUEUED // 2 and not self.closing and self.writable is None:
                self.transport.resume_reading()
            if not self._start(request):
                self.busy = True
                return
        self.busy = False
        if self.closing and self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _start(self, request: _Request) -> bool:
        """Begin answering `request`; True if it was answered at once. A click on a
        serving link in the cache waits for its write with a callback; the rest in a
        task of its own. The hot paths are counted as the ASGI app counts its requests
        (it counts the rest itself), so its background jobs rest for them alike."""
        path, query = request.path_query()
        if path[:3] == b"/c/":
            try:
                begun = tracking.click_begun(self.app, *self._click_args(request, path, query))
            except Exception:
                log.exception("request failed: %s %s", request.method, request.target[:200])
                self._write(request, 500, [("content-type", "text/plain")], b"server error")
                return True
            if begun is not None:
                location, written = begun
                self.app.begun += 1
                if written is None:
                    self._write(request, *tracking.redirect(location))
                    return True
                self.app.in_flight += 1
                written.add_done_callback(partial(self._clicked, request, location))
                return False
        self.server.loop.create_task(self._answer(request, path, query))
        return False

    def _clicked(self, request: _Request, location: str, written: asyncio.Future[None]) -> None:
        self.app.in_flight -= 1
        exc = written.exception() if not written.cancelled() else asyncio.CancelledError()
        if exc is None:
            self._write(request, *tracking.redirect(location))
        else:
            answer = tracking.click_failed(exc)
            if answer is None:
                log.error("click failed: %s", request.target[:200], exc_info=exc)
                answer = (500, [("content-type", "text/plain")], b"server error")
            self._write(request, *answer)
        self.last = time.monotonic()
        self._next()

    async def _answer(self, request: _Request, path: bytes, query: bytes) -> None:
        """One request answered in a task; then the next on this connection."""
        app = self.app
        try:
            if path[:3] == b"/c/" or path in _POSTBACK_PATHS:
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
                self._write(request, *answer)
            else:
                await self._asgi(request, path, query)
        except Exception:
            log.exception("request failed: %s %s", request.method, request.target[:200])
            self._write(request, 500, [("content-type", "text/plain")], b"server error")
        finally:
            self.last = time.monotonic()
            self._next()

    def _write(self, request: _Request, status: int, headers: Any, body: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        close = not request.keep_alive or self.server.stopping
        head = _head(status, headers, len(body), close)
        self.transport.write(head if request.method == "HEAD" else head + body)
        if close:
            self.closing = True
            self.queue.clear()
            self.transport.close()

    def _ip(self, request: _Request) -> str:
        if not self.app.trusted_proxies:
            return self.peer
        lines = [v.decode("latin-1") for k, v in request.headers if k == b"x-forwarded-for"]
        if not lines:
            return self.peer
        return security.forwarded_ip(self.peer, ", ".join(lines), self.app.trusted_proxies)

    def _click_args(
        self, request: _Request, path: bytes, query: bytes
    ) -> tuple[str, str, str, str, str, str]:
        """What `tracking.click_answer` takes after the app: method, code, query, the
        visitor's address, User-Agent and Referer."""
        ua = referer = ""
        for k, v in request.headers:
            if k == b"user-agent":
                ua = v.decode("latin-1")
            elif k == b"referer":
                referer = v.decode("latin-1")
        return (
            request.method,
            unquote(path[3:].decode("latin-1"), "utf-8", "backslashreplace"),
            tracking.query_text(query),
            self._ip(request),
            ua,
            referer,
        )

    async def _postback(self, request: _Request, query: bytes) -> tracking.Answer:
        method = request.method
        length = request.header(b"content-length")
        chunked = request.header(b"transfer-encoding") is not None
        body: bytes | BodyError | None = None
        if method == "POST" or tracking.has_body(method, length, chunked):
            raw = b"".join(request.body)
            if request.size > MAX_BODY:
                body = body_too_large(raw)
            elif request.size < 0:
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

    async def _asgi(self, request: _Request, path: bytes, query: bytes) -> None:
        """One request through the ASGI app: the body whole on the first `receive`, the
        answer written as the app sends it (streamed when it comes in parts)."""
        server = self.server
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": request.http_version,
            "method": request.method,
            "scheme": "http",
            "path": unquote(path.decode("latin-1"), "utf-8", "backslashreplace"),
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": request.headers,
            "client": (self.peer, self.peer_port),
            "server": server.address,
            "state": {},
        }
        read = False
        status = 0
        headers: list[tuple[str, str]] = []
        streaming = False
        close = not request.keep_alive or server.stopping
        head_only = request.method == "HEAD"

        async def receive() -> dict[str, Any]:
            nonlocal read
            if not read:
                read = True
                return {"type": "http.request", "body": b"".join(request.body), "more_body": False}
            if self.lost is None:
                self.lost = server.loop.create_future()
            await self.lost
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, headers, streaming
            transport = self.transport
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
                headers = [
                    (k.decode("latin-1"), v.decode("latin-1"))
                    for k, v in message.get("headers", [])
                    if k.lower() not in (b"content-length", b"transfer-encoding", b"connection")
                ]
                return
            body = message.get("body", b"")
            more = message.get("more_body", False)
            if transport.is_closing():
                return
            if not streaming:
                if not more:  # the whole answer at once
                    self._write(request, status, headers, body)
                    status = -1
                    return
                streaming = True
                lines = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b""))]
                lines.extend(f"{k}: {v}\r\n".encode("latin-1") for k, v in headers)
                lines.append(b"transfer-encoding: chunked\r\n")
                lines.append(_clock.date)
                if close:
                    lines.append(b"connection: close\r\n")
                lines.append(b"\r\n")
                transport.write(b"".join(lines))
            if body and not head_only:
                transport.write(b"%x\r\n%s\r\n" % (len(body), body))
            if not more:
                if not head_only:
                    transport.write(b"0\r\n\r\n")
                status = -1
                if close:
                    self.closing = True
                    transport.close()
            elif self.writable is not None:
                await self.writable

        try:
            await self.app(scope, receive, send)
        except Exception:  # answered (the app's own 500) or not: logged, as granian does
            log.exception("request failed: %s %s", request.method, request.target[:200])
        if status == 0:  # the app ended or failed before it answered
            self._write(request, 500, [("content-type", "text/plain")], b"server error")
        elif status > 0 and streaming:  # it stopped in the middle: the answer is cut
            self.closing = True
            self.transport.close()


_POSTBACK_PATHS = frozenset(p.encode() for p in tracking.POSTBACK_PATHS)


class NativeServer:
    """Listens on one socket and serves `app` on this process's event loop."""

    def __init__(self, app: ClickbackApp, sock: socket.socket):
        self.app = app
        self.sock = sock
        name = sock.getsockname()
        self.address = (name[0], name[1])
        self.connections: set[Connection] = set()
        self.stopping = False
        self.loop = asyncio.get_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._sweep: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.app.startup()
        self._server = await self.loop.create_server(
            lambda: Connection(self), sock=self.sock, backlog=2048
        )
        self._tick()

    def _tick(self) -> None:
        """Each second: the Date line, and the connections past their timeouts."""
        _clock.tick()
        now = time.monotonic()
        settings = self.app.settings
        for conn in list(self.connections):
            if conn.busy or conn.queue or conn.closing:
                continue
            if conn.request is not None and now - conn.started > settings.http_request_seconds:
                conn._refuse(408, b"request not received in time")
            elif conn.request is None and now - conn.last > settings.http_idle_seconds:
                conn.closing = True
                conn.transport.close()
        self._sweep = self.loop.call_later(1.0, self._tick)

    async def stop(self) -> None:
        """No new connections; the requests begun are answered (up to STOP_GRACE), the
        idle connections closed, then the app's own shutdown."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        deadline = time.monotonic() + STOP_GRACE
        while time.monotonic() < deadline:
            for conn in list(self.connections):
                if not conn.busy and not conn.queue and conn.request is None:
                    conn.closing = True
                    conn.transport.close()
            if not self.connections:
                break
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.transport.close()
        if self._sweep is not None:
            self._sweep.cancel()
        await self.app.shutdown()


def listening_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def serve(app_factory: Callable[[], ClickbackApp], sock: socket.socket) -> None:
    """Run the server on `sock` until SIGTERM or SIGINT; exits 1 if start-up fails."""
    import uvloop

    async def main() -> None:
        server = NativeServer(app_factory(), sock)
        try:
            await server.start()
        except Exception:
            log.exception("start-up failed")
            raise SystemExit(1) from None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop()

    uvloop.run(main())


def _worker(host: str, port: int) -> None:
    """One worker process of `serve_workers`: its own socket on the shared port."""
    from clickback.web.app import app_from_env

    serve(app_from_env, listening_socket(host, port, reuse_port=True))


# a worker that exits 1 this soon after it started failed to start: the others would too
START_FAILURE_SECONDS = 5.0


def serve_workers(host: str, port: int, workers: int) -> int:
    """`workers` processes serving one port (SO_REUSEPORT: the kernel spreads the
    connections), until SIGTERM or SIGINT, passed on to each. A worker that dies is
    started again; one that fails as it starts (exit 1) stops them all. Returns the exit code."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no state forked
    procs: dict[int, Any] = {}
    started: dict[int, float] = {}
    stopping = False

    def start(slot: int) -> None:
        proc = ctx.Process(target=_worker, args=(host, port), name=f"clickback-worker-{slot}")
        proc.start()
        procs[slot], started[slot] = proc, time.monotonic()

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    for slot in range(workers):
        start(slot)
    code = 0
    while not stopping:
        time.sleep(0.2)
        for slot, proc in list(procs.items()):
            if proc.is_alive() or stopping:
                continue
            if proc.exitcode == 1 and time.monotonic() - started[slot] < START_FAILURE_SECONDS:
                log.error("worker %d failed as it started (exit %s): stopping", slot, proc.exitcode)
                stopping, code = True, 1
                break
            log.error("worker %d ended (exit %s): starting another", slot, proc.exitcode)
            start(slot)
    for proc in procs.values():
        if proc.is_alive():
            proc.terminate()  # SIGTERM: answers what began, then its shutdown
    deadline = time.monotonic() + STOP_GRACE + 30
    for proc in procs.values():
        proc.join(max(0.1, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join()
    return code
