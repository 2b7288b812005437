"""The advertiser kit served by the tracker: `GET /kit/refid.js`, the landing-page snippet.

The snippet (`web/static/refid.js`) keeps the RefID a tracking link adds to the landing
page URL in a first-party cookie, fills hidden form fields with it and carries it on in
links, until the advertiser's server fires the postback. It is read once at import and
served as a bare ASGI handler, like the hot paths.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

REFID_JS: bytes = files("clickback.web").joinpath("static").joinpath("refid.js").read_bytes()

_HEADERS = [
    (b"content-type", b"application/javascript; charset=utf-8"),
    (b"cache-control", b"public, max-age=3600"),
    (b"x-content-type-options", b"nosniff"),
    (b"content-length", str(len(REFID_JS)).encode()),
]


async def refid_js(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["method"] not in ("GET", "HEAD"):
        body = b"method not allowed"
        await send(
            {
                "type": "http.response.start",
                "status": 405,
                "headers": [
                    (b"allow", b"GET, HEAD"),
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send(
        {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else REFID_JS}
    )
