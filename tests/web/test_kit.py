"""`GET /kit/refid.js`: the landing-page snippet as the tracker serves it."""

from __future__ import annotations

from importlib.resources import files

import httpx


async def test_snippet_is_served_as_cacheable_javascript(client: httpx.AsyncClient) -> None:
    r = await client.get("/kit/refid.js")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/javascript; charset=utf-8"
    assert r.headers["cache-control"] == "public, max-age=3600"
    shipped = files("clickback.web").joinpath("static").joinpath("refid.js").read_bytes()
    assert r.content == shipped and b"window.clickback" in r.content


async def test_head_has_no_body_and_other_methods_are_405(client: httpx.AsyncClient) -> None:
    head = await client.head("/kit/refid.js")
    post = await client.post("/kit/refid.js")
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) > 0
    assert post.status_code == 405 and post.headers["allow"] == "GET, HEAD"
