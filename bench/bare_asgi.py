"""The baseline for the hot-path benchmark: a bare ASGI app that answers every request
with a 302, no database, no framework.

It is what `clickback serve` could do at best on the same server settings (granian,
`--interface asgi --http 1 --loop uvloop`), so the click and postback figures are read
as a share of it. The response carries the same headers as a tracking redirect.

    granian --interface asgi --http 1 --loop uvloop --working-dir bench bare_asgi:app
"""

from __future__ import annotations

from typing import Any

_START = {
    "type": "http.response.start",
    "status": 302,
    "headers": [
        (
            b"location",
            b"https://shop.example.com/landing?utm_source=clickback"
            b"&refid=-P7Ko0ez-----QZkWTebzAG22Zoqoe_UZSSw",
        ),
        (b"cache-control", b"no-store"),
        (b"content-length", b"0"),
    ],
}
_BODY = {"type": "http.response.body", "body": b""}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await send(_START)
        await send(_BODY)
    elif scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
