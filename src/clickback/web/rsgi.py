"""The app as `clickback serve` runs it: granian's RSGI interface in front of the ASGI app.

The two hot paths are answered here, each with one call into the server
(`response_bytes`) instead of the two ASGI messages the server has to turn into a
response; everything else (health checks, the admin API, the dashboard, the kit) goes
to the ASGI app (`ClickbackApp`) through a small bridge. Start-up and shutdown run the
ASGI app's own, on the worker's event loop, before it serves and after it stopped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from granian._granian import RSGIProtocolClosed as ProtocolClosed

from clickback.domain import security
from clickback.web import tracking
from clickback.web.app import ClickbackApp, app_from_env
from clickback.web.tracking import MAX_BODY, BodyError, body_cut_short, body_too_large

log = logging.getLogger("clickback")


def _address(text: str) -> tuple[str, int]:
    """RSGI's `host:port` (`[::1]:port` or `::1:port` for IPv6) as ASGI's pair."""
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        return text, 0
    return host.strip("[]"), int(port)


async def _body(protocol: Any, declared: str | None) -> bytes | BodyError:
    """A postback's body, read up to MAX_BODY. With a Content-Length, read piece by piece
    (what arrived before a disconnect is kept for the ledger: RSGI ends the pieces
    early then, without an error, so the length tells); without one (chunked), whole,
    which RSGI refuses with ProtocolClosed when the client leaves."""
    if declared is None or not declared.isdigit():
        try:
            body: bytes = await protocol()
        except ProtocolClosed:
            return body_cut_short(b"")
        return body if len(body) <= MAX_BODY else body_too_large(body)
    chunks: list[bytes] = []
    size = 0
    async for chunk in protocol:
        size += len(chunk)
        if size > MAX_BODY:
            return body_too_large(b"".join(chunks))
        chunks.append(chunk)
    body = b"".join(chunks)
    return body if size >= int(declared) else body_cut_short(body)


class RsgiApp:
    """The RSGI callable. `app` keeps the state; requests counted as the ASGI app counts
    them, so its background jobs rest for them alike."""

    def __init__(self, app: ClickbackApp):
        self.app = app

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            loop.run_until_complete(self.app.startup())
        except Exception:
            log.exception("start-up failed")
            raise SystemExit(1) from None

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.app.shutdown())

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        if scope.proto != "http":
            protocol.close(1003)  # no websockets here
            return
        path = scope.path
        if path[:3] == "/c/":
            answer = self._click(scope, path[3:])
        elif path in tracking.POSTBACK_PATHS:
            answer = self._postback(scope, protocol)
        else:
            await self._asgi(scope, protocol)
            return
        app = self.app
        app.begun += 1
        app.in_flight += 1
        try:
            status, headers, body = await answer
            if body:
                protocol.response_bytes(status, headers, body)
            else:
                protocol.response_empty(status, headers)
        finally:
            app.in_flight -= 1

    def _ip(self, scope: Any) -> str:
        peer = _address(scope.client)[0]
        if not self.app.trusted_proxies:
            return peer
        # every line of the header, as `tracking.client_ip` reads them
        lines = scope.headers.get_all("x-forwarded-for")
        if not lines:
            return peer
        return security.forwarded_ip(peer, ", ".join(lines), self.app.trusted_proxies)

    def _click(self, scope: Any, code: str) -> Coroutine[Any, Any, tracking.Answer]:
        headers = scope.headers
        return tracking.click_answer(
            self.app,
            scope.method,
            code,
            scope.query_string,
            self._ip(scope),
            headers.get("user-agent", ""),
            headers.get("referer", ""),
        )

    async def _postback(self, scope: Any, protocol: Any) -> tracking.Answer:
        method, headers = scope.method, scope.headers
        length = headers.get("content-length")
        body = (
            await _body(protocol, length)
            if method == "POST"
            or tracking.has_body(method, length, headers.get("transfer-encoding") is not None)
            else None
        )
        kind = encoding = ""
        if body is not None:
            kind = headers.get("content-type", "")
            encoding = headers.get("content-encoding", "")
        return await tracking.postback_answer(
            self.app, method, scope.query_string, self._ip(scope), body, kind, encoding
        )

    async def _asgi(self, scope: Any, protocol: Any) -> None:
        """One request through the ASGI app: its scope built from RSGI's, the body read
        whole on the first `receive`, the answer given in one call, or streamed when
        the app sends it in parts."""
        asgi_scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": scope.http_version,
            "method": scope.method,
            "scheme": scope.scheme,
            "path": scope.path,
            "query_string": scope.query_string.encode(),  # RSGI's is decoded UTF-8
            "root_path": "",
            "headers": [
                (k.encode("latin-1"), v.encode("latin-1")) for k, v in scope.headers.items()
            ],
            "client": _address(scope.client),
            "server": _address(scope.server),
        }
        read = answered = False
        start: dict[str, Any] = {}
        stream: Any = None

        async def receive() -> dict[str, Any]:
            nonlocal read
            if not read:
                read = True
                try:
                    return {"type": "http.request", "body": await protocol(), "more_body": False}
                except ProtocolClosed:
                    return {"type": "http.disconnect"}
            await protocol.client_disconnect()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal stream, answered
            if message["type"] == "http.response.start":
                start.update(message)
                return
            body = message.get("body", b"")
            if stream is None:
                headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start["headers"]]
                if not message.get("more_body"):
                    protocol.response_bytes(start["status"], headers, body)
                    answered = True
                    return
                stream = protocol.response_stream(start["status"], headers)
                answered = True
            if body:
                await stream.send_bytes(body)

        try:
            await self.app(asgi_scope, receive, send)
        finally:
            if not answered:  # the app failed before it answered
                protocol.response_bytes(500, [("content-type", "text/plain")], b"server error")


def rsgi_from_env() -> RsgiApp:
    """Factory for the server process: settings from CLICKBACK_* variables."""
    return RsgiApp(app_from_env())
