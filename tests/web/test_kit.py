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


def test_the_server_cookie_example_uses_another_name_than_the_snippets() -> None:
    """The guide says to set the server's cookie "under another name than the script's"
    (the script rewrites its own cookie, which Safari then caps at 7 days); its examples
    of that cookie must follow the advice."""
    import re
    from pathlib import Path

    guide = (Path(__file__).resolve().parents[2] / "docs" / "integration.md").read_text()
    assert "under another name than the script's" in guide
    section = guide.split("### A cookie set by your server", 1)[1].split("\n### ", 1)[0]
    snippet = files("clickback.web").joinpath("static").joinpath("refid.js").read_text()
    [script_cookie] = re.findall(r'data\.cookie : "([^"]+)"', snippet)
    assert script_cookie not in section, section
