"""The native front's bridge to the ASGI app: every request that is not a click or a
postback (health checks, the admin API, the dashboard, the kit).

The body is passed on as it arrives (an upload the app refuses, for want of a token,
say, is not read first); the answer is written as the app sends it: whole, or, when it
comes in parts, chunked (to an HTTP/1.0 client: as it is, up to the connection's end).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from clickback.web.native import SERVER_ERROR, head

if TYPE_CHECKING:
    from clickback.web.native import Connection
    from clickback.web.native_request import Request

log = logging.getLogger("clickback")

_DROPPED = (b"content-length", b"transfer-encoding", b"connection")


async def answer_asgi(conn: Connection, request: Request, path: bytes, query: bytes) -> None:
    server = conn.server
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
        "client": (conn.peer, conn.peer_port),
        "server": server.address,
        "state": {},
    }
    read = False  # the whole body was handed over
    status = 0  # 0: no answer begun; -1: answered
    headers: list[tuple[str, str]] = []
    streaming = False
    close = False
    head_only = request.method == "HEAD"
    stream = request.stream

    async def receive() -> dict[str, Any]:
        nonlocal read
        if not read:
            if stream is None:
                read = True
                return {"type": "http.request", "body": b"".join(request.body), "more_body": False}
            message = await stream.read()
            read = message["type"] == "http.disconnect" or not message["more_body"]
            return message
        if conn.lost is None:
            conn.lost = server.loop.create_future()
        await conn.lost
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, headers, streaming, close
        transport = conn.transport
        if stream is not None and stream.refused is not None and not streaming:
            return  # the upload was refused (408, 413, 400): that is the answer
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = [
                (k.decode("latin-1"), v.decode("latin-1"))
                for k, v in message.get("headers", [])
                if k.lower() not in _DROPPED
            ]
            if stream is not None and not stream.done:
                # answered before the upload ended: the rest of it is not read
                request.keep_alive = False
            return
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if transport.is_closing():
            return
        if not streaming:
            if not more:  # the whole answer at once
                conn.write(request, status, headers, body)
                status = -1
                return
            streaming = True
            if request.http_version == "1.0":
                request.keep_alive = False  # no chunks: the answer ends with the connection
            close = conn.closes_after(request)
            transport.write(head(request, status, headers, None, close))
        if body and not head_only:
            if close:  # an HTTP/1.0 client's answer, or the last on this connection
                transport.write(body)
            else:
                transport.write(b"%x\r\n%s\r\n" % (len(body), body))
        if not more:
            if not head_only and not close:
                transport.write(b"0\r\n\r\n")
            status = -1
            if close:
                conn.end()
        elif conn.writable is not None:
            await conn.writable

    if stream is None or stream.refused is None:
        try:
            await conn.app(scope, receive, send)
        except Exception:  # answered (the app's own 500) or not: logged, as granian does
            if stream is None or not stream.cut:  # (not the app told the upload was cut)
                log.exception("request failed: %s %s", request.method, request.target[:200])
    if stream is not None and stream.refused is not None and not streaming:
        request.keep_alive = False
        conn.write(request, *stream.refused)
        return
    if status == 0 and stream is not None and stream.cut:
        return  # its client left: no one to answer
    if status == 0 or (status > 0 and not streaming):  # the app ended before it answered
        conn.write(request, *SERVER_ERROR)
    elif status > 0:  # it stopped in the middle: the answer is cut, so is the connection
        conn.end()
