"""Trying a landing page from the tracker, for the click integration test."""

from __future__ import annotations

import asyncio
import functools
import ssl

import httpx


@functools.cache
def _tls() -> ssl.SSLContext:
    """The TLS context the probes verify with: httpx's own (its CA bundle, or the one
    SSL_CERT_FILE or SSL_CERT_DIR names)."""
    return httpx.create_ssl_context()


async def probe_landing(url: str, timeout: float = 5.0) -> int | str:
    """The landing page's HTTP status (redirects not followed), or why it was unreachable.
    The TLS context is made once, in a thread: reading the CA bundle on the event loop
    held every click and postback of the process for 40-120 ms at each probe."""
    tls = await asyncio.to_thread(_tls)
    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, verify=tls) as client:
            response = await client.get(url, headers={"user-agent": "clickback-integration-test"})
            return response.status_code
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
