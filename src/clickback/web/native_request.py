"""The native front's requests as a connection receives them: the parsed request, an
upload's body passed to the app as it arrives, and the request line's bytes past ASCII
read as escapes (`native.Connection` uses them)."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

from clickback.web import tracking

if TYPE_CHECKING:
    from clickback.web.native import Connection

BODY_BUFFER = 1024 * 1024  # an upload's bytes held for the app before reading pauses
POSTBACK_PATHS = frozenset(p.encode() for p in tracking.POSTBACK_PATHS)


_NOT_ASCII = re.compile(rb"[\x80-\xff]")


def escaped_first_line(data: bytes) -> bytes:
    """`data` with the bytes past ASCII in its first line (a request line, or the rest
    of one) escaped as `%XX`: a client that sends `?coupon=Müller` unescaped (a
    server-side script's postback, say) is read as if it had sent `M%C3%BCller`, which
    the tracker reads alike, where the parser would refuse the request. The rest
    (headers, a body) is left as it came."""
    end = data.find(b"\n")
    line, rest = (data, b"") if end < 0 else (data[:end], data[end:])
    return _NOT_ASCII.sub(lambda m: b"%%%02X" % m.group()[0], line) + rest


# how a postback's request line begins (a tracking request's, `/c/…`, never does)
POSTBACK_LINE = tuple(m + b" /postback" for m in (b"GET", b"POST", b"PUT"))


def spaced_postback_line(data: bytes) -> bytes:
    """`data` with the spaces and tabs inside a postback's request target escaped, when
    its first line, whole, has them: `GET /postback?…&ordernumber=ORD 7 HTTP/1.1`, as a
    server-side script that does not encode its URL sends it, is read as if it had sent
    `ORD%207`, where the parser would refuse it (a plain-text 400 that no ledger row
    kept). The target is what lies between the method's space and the last one, before
    the version; anything else is left as it came."""
    end = data.find(b"\n")
    if end < 0:
        return data
    line = data[:end].rstrip(b"\r")
    method, _, rest = line.partition(b" ")
    target, _, version = rest.rpartition(b" ")
    if not version.startswith(b"HTTP/") or not (b" " in target or b"\t" in target):
        return data
    if target.split(b"?", 1)[0] not in POSTBACK_PATHS:  # `/postbacks`, `/postback/../api`
        return data
    target = target.replace(b" ", b"%20").replace(b"\t", b"%09")
    return b"%s %s %s%s" % (method, target, version, data[len(line) :])


class Body:
    """An upload's body as it arrives, read by the app while it comes: at most
    BODY_BUFFER bytes are held before the connection stops reading."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self.chunks: list[bytes] = []
        self.held = 0
        self.done = False  # the whole body came
        self.cut = False  # it will not: the client left, or it was refused
        self.refused: tracking.Answer | None = None  # the refusal that cut it: the answer
        self.expect = False  # the client waits for `100 Continue` before it sends it
        self._waiter: asyncio.Future[None] | None = None

    def feed(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.held += len(chunk)
        if self.held > BODY_BUFFER:
            self.conn.pause()
        self._wake()

    def end(self, cut: bool = False) -> None:
        if cut:
            self.cut = True
        else:
            self.done = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def read(self) -> dict[str, Any]:
        """The next ASGI message: what came since the last, or the disconnect. The
        client asked to wait is told to go on now: the app wants the body."""
        if self.expect:
            self.expect = False
            if not self.done and not self.cut and not self.conn.transport.is_closing():
                self.conn.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        while not self.chunks and not self.done and not self.cut:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        if self.chunks:
            data = b"".join(self.chunks)
            self.chunks.clear()
            self.held = 0
            self.conn.resume()
            return {"type": "http.request", "body": data, "more_body": not self.done}
        if self.cut:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": b"", "more_body": False}


class Request:
    __slots__ = (
        "body",
        "cut",
        "headers",
        "http_version",
        "keep_alive",
        "method",
        "refusal",
        "size",
        "stream",
        "target",
    )

    def __init__(self) -> None:
        self.method = ""
        self.target = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.size = 0  # body bytes received
        self.cut = False  # its client left or stalled before its body ended
        self.keep_alive = True
        self.http_version = "1.1"
        self.stream: Body | None = None  # an upload passed on as it comes
        self.refusal: tracking.Answer | None = None  # not a request: a refusal to write

    def header(self, name: bytes) -> str | None:
        """The first line of a header, or None."""
        for k, v in self.headers:
            if k == name:
                return v.decode("latin-1")
        return None

    def path_query(self) -> tuple[bytes, bytes]:
        """The path and query of the target, of an absolute one too (`http://host/p`),
        without a fragment."""
        target = self.target.partition(b"#")[0]
        if target[:1] != b"/" and b"://" in target:  # absolute: the authority left out
            rest = target.partition(b"://")[2]
            at = min((i for i in (rest.find(b"/"), rest.find(b"?")) if i >= 0), default=len(rest))
            target = rest[at:]
            if target[:1] != b"/":
                target = b"/" + target
        path, _, query = target.partition(b"?")
        return path, query

    def is_postback(self) -> bool:
        return self.path_query()[0] in POSTBACK_PATHS

    def hot(self) -> bool:
        path = self.path_query()[0]
        return path[:3] == b"/c/" or path in POSTBACK_PATHS


def refusal(status: int, text: bytes) -> Request:
    request = Request()
    request.refusal = (status, [("content-type", "text/plain")], text)
    request.keep_alive = False
    return request
