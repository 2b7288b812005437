"""Trying a landing page from the tracker, for the click integration test."""

from __future__ import annotations

import httpx


async def probe_landing(url: str, timeout: float = 5.0) -> int | str:
    """The landing page's HTTP status (redirects not followed), or why it was unreachable."""
    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
            response = await client.get(url, headers={"user-agent": "clickback-integration-test"})
            return response.status_code
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
