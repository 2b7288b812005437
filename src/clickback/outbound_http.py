"""Sending one outbound postback over HTTP, refusing inward addresses (SSRF).

Unless private networks are allowed (`CLICKBACK_OUTBOUND_ALLOW_PRIVATE=1`), the host is
resolved at send time, every address it resolves to must be public, and the request is
made to those checked addresses, in turn until one takes the connection (with the host
name in `Host` and TLS SNI), so a name that starts resolving inward is refused too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from urllib.parse import urlsplit, urlunsplit

import httpx

from clickback.domain.outbound import Attempt, OutboundRequest
from clickback.errors import InputError

EXCERPT = 500


def is_public(address: str) -> bool:
    """True for a globally routable unicast address; an IPv6 address that carries an IPv4
    one (mapped, 6to4, Teredo, NAT64) must carry a public one too."""
    ip = ipaddress.ip_address(address)
    if ip.is_multicast or not ip.is_global:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _LOCAL_NAT64:  # where it carries the IPv4 address is the network's choice
            return False
        inner = [ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None]
        if ip in _NAT64 or ip in _TRANSLATED:
            inner.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        return all(a is None or (a.is_global and not a.is_multicast) for a in inner)
    return True


_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052, well-known prefix
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215, local-use translation
_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # RFC 2765, IPv4-translated (SIIT)


async def resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def check_destination(url: str, allow_private: bool) -> None:
    """Refuses (InputError) a URL that is not http(s) or points at an inward address; a host
    that does not resolve now is let through (checked again when sending)."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port that is not a number
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(
            "a postback URL must be an absolute http(s) URL with a fixed host and port",
            code="invalid_url",
            field="postback_url",
        )
    if allow_private:
        return
    try:
        addresses = await resolve(parts.hostname, port or 443)
    except (OSError, UnicodeError):
        return
    if not all(is_public(a) for a in addresses):
        raise InputError(
            f"{parts.hostname} points at a private, loopback, link-local or multicast address;"
            " for tests and private networks set CLICKBACK_OUTBOUND_ALLOW_PRIVATE=1 where the"
            " URL is set (the clickback command's environment, or the server's for the API)"
            " and for `clickback serve`, which sends the postbacks",
            code="private_address",
            field="postback_url",
        )


def pinned(url: str, ip: str) -> tuple[str, str]:
    """The URL made to the checked address `ip` (credentials and port kept), and the
    `Host` header it is sent with."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    netloc = userinfo + at + (f"[{ip}]" if ":" in ip else ip)
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)), hostport


async def send(
    client: httpx.AsyncClient, request: OutboundRequest, timeout: float, allow_private: bool
) -> Attempt:
    started = time.monotonic()
    parts = urlsplit(request.url)
    try:
        # the timeout is for the whole exchange, the name's resolution and every address
        # tried included (a sender's lease outlasts it: `config.Settings`), not each step
        async with asyncio.timeout(timeout):
            addresses: list[str] = []
            if not allow_private:
                host = parts.hostname or ""
                port = parts.port or (443 if parts.scheme == "https" else 80)
                addresses = await resolve(host, port)
                bad = [a for a in addresses if not is_public(a)]
                if bad or not addresses:
                    return Attempt(None, "", 0, f"refused: {host} resolves to {', '.join(bad)}")
            status, excerpt = await exchange(client, request, addresses, started + timeout)
        return Attempt(status, excerpt, _ms(started), "")
    except (TimeoutError, httpx.TimeoutException):
        return Attempt(None, "", _ms(started), f"timeout after {timeout:g} s")
    except (httpx.HTTPError, OSError, UnicodeError) as exc:
        return Attempt(None, "", _ms(started), _text(f"{type(exc).__name__}: {exc}"[:EXCERPT]))


async def exchange(
    client: httpx.AsyncClient, request: OutboundRequest, addresses: list[str], deadline: float
) -> tuple[int, str]:
    """The answer's status and excerpt, from the first of the checked `addresses` that
    takes the connection (the host name itself when none are given). A failure to connect
    moves on to the next address, each given an even share of the time left to connect
    in, so one that does not answer leaves the rest time to; an HTTP answer, whatever it
    says, is the answer. Nothing of the request has gone out when a connection fails (no
    connection is kept between requests made to an address), so none gets it twice."""
    targets: list[str | None] = [*addresses] or [None]
    *first, last = targets
    failed: list[str] = []
    for i, address in enumerate(first):
        try:
            return await _exchange_with(client, request, address, deadline, len(first) + 1 - i)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            failed.append(f"{address}: {type(exc).__name__}: {exc}")
    try:
        return await _exchange_with(client, request, last, deadline, 1)
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        if not failed:
            raise
        failed.append(f"{last}: {type(exc).__name__}: {exc}")
        raise httpx.ConnectError("; ".join(failed)) from exc


async def _exchange_with(
    client: httpx.AsyncClient,
    request: OutboundRequest,
    address: str | None,
    deadline: float,
    shares: int,
) -> tuple[int, str]:
    url, headers, extensions = request.url, dict(request.headers), {}
    if address is not None:
        url, headers["Host"] = pinned(request.url, address)
        extensions["sni_hostname"] = urlsplit(request.url).hostname or ""
    left = max(deadline - time.monotonic(), 0.001)
    async with client.stream(
        request.method,
        url,
        content=request.body,
        headers=headers,
        timeout=httpx.Timeout(left, connect=left / shares),
        extensions=extensions,
    ) as response:
        body = b""
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) >= EXCERPT:
                break  # an excerpt is all the log keeps: read no more
    return response.status_code, _text(body[:EXCERPT].decode("utf-8", "replace"))


def _text(text: str) -> str:
    """Text as every engine stores it: PostgreSQL refuses a NUL in text (the attempt's
    transaction failed, and the postback went out again each lease)."""
    return text.replace("\x00", "\ufffd")


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
