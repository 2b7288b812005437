"""The app tells its background jobs whether requests are being answered: they rest
between passes only then (an idle server folds its backlog at full speed)."""

from __future__ import annotations

import asyncio
from typing import Any

from clickback.web.app import ClickbackApp
from tests.conftest import form_post_scope


async def test_a_request_counts_as_answered_until_its_answer_is_sent(app: ClickbackApp) -> None:
    assert app.rollup is not None and app.screener is not None
    rollup_asks, screener_asks = app.rollup.busy, app.screener.busy
    assert rollup_asks is not None and screener_asks is not None
    rollup_asks(), screener_asks()  # what came before is not asked about
    assert not app.answering() and not rollup_asks()
    body_arrives = asyncio.Event()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await body_arrives.wait()  # a postback whose body is slow to come
        return {"type": "http.request", "body": b"refid=x&orderamount=1", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = form_post_scope("/postback", ("203.0.113.7", 5555))
    request = asyncio.create_task(app(scope, receive, send))
    await asyncio.sleep(0.05)
    assert app.answering() and not sent
    body_arrives.set()
    await request
    assert sent[0]["status"] == 400  # no ordernumber: refused, and answered
    assert not app.answering()
    # the request is over, but it was answered since the jobs last asked: they rest
    assert rollup_asks() and screener_asks()
    assert not rollup_asks()  # nothing since
