"""A second baseline for the hot-path benchmark, beside `bare_asgi.py` (the 100 %): the
same bare 302 on granian's RSGI interface, the one `clickback serve` runs. It shows what
the interface alone is worth, so a share of the bare ASGI 302 can be read apart from it.

    granian --interface rsgi --http 1 --loop uvloop --working-dir bench bare_rsgi:app
"""

from __future__ import annotations

from typing import Any

from bare_asgi import _START

_HEADERS = [(k.decode(), v.decode()) for k, v in _START["headers"] if k != b"content-length"]


class App:
    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        protocol.response_empty(302, _HEADERS)


app = App()
