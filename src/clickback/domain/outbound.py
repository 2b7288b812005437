"""Outbound postbacks to affiliates: which events go out, how they are rendered and signed,
and what becomes of each attempt.

A delivery row is written in the same transaction as the conversion or status change
that causes it (the outbox), so a crash can neither lose nor invent one. A sender in each
serve process claims due deliveries with a lease (several processes and nodes share the
work), sends them, and records every attempt: 2xx is delivered; 408, 429, 5xx, timeouts
and connection errors are retried with exponential backoff and jitter until the give-up
time; any other 4xx fails for good. After a run of consecutive failures an affiliate's
postback is disabled and its deliveries held until it is re-enabled.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import idna
import orjson

from clickback.domain.money import format_minor
from clickback.errors import InputError

EVENTS = ("conversion", "approved", "rejected", "reversed")
MACROS = (
    "refid",
    "conversion_id",
    "offer_id",
    "affiliate_id",
    "sub1",
    "sub2",
    "sub3",
    "sub4",
    "sub5",
    "ordernumber",
    "orderamount",
    "order_currency",
    "commission",
    "currency",
    "status",
    "event",
    "geo",
    "coupon",
)
_MACRO = re.compile(r"\{(" + "|".join(MACROS) + r")\}")
QUEUED, HELD, DELIVERED, FAILED = "queued", "held", "delivered", "failed"
CANCELLED = "cancelled"  # not to be sent: its conversion rejected, its event not taken


@dataclass(frozen=True, slots=True)
class PostbackConfig:
    """Where an affiliate (or an offer+affiliate override) wants conversions posted."""

    url: str
    method: str  # GET | POST
    secret: str
    events: frozenset[str]
    disabled: bool

    def state_for(self, event: str) -> str:
        """'' when this event is not posted, else the new delivery's state."""
        if not self.url or event not in self.events:
            return ""
        return HELD if self.disabled else QUEUED


@dataclass(frozen=True, slots=True)
class OutboundRequest:
    method: str
    url: str
    body: bytes | None
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Attempt:
    status_code: int | None
    excerpt: str
    latency_ms: int
    error: str


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    delays: tuple[float, ...] = (10, 60, 300, 900, 3600, 10800)  # seconds; the last repeats
    give_up_seconds: float = 72 * 3600
    disable_after: int = 25

    def next_delay(self, attempts: int, rng: random.Random | None = None) -> float:
        """Backoff before retry number `attempts` (1 = the first retry), with jitter that
        only shortens it, so the first retry comes within the first delay."""
        base = self.delays[min(attempts, len(self.delays)) - 1]
        return base * (rng or random).uniform(0.5, 1.0)


def values_of(conversion: Mapping[str, Any], event: str) -> dict[str, str]:
    """Macro values of a conversion row, as text (money as decimal strings)."""
    return {
        "refid": conversion["refid"],
        "conversion_id": str(conversion["id"]),
        "offer_id": str(conversion["offer_id"]),
        "affiliate_id": str(conversion["affiliate_id"]),
        **{f"sub{i}": conversion[f"sub{i}"] for i in range(1, 6)},
        "ordernumber": conversion["ordernumber"],
        "orderamount": format_minor(conversion["orderamount"], conversion["currency"]),
        "order_currency": conversion["currency"],
        "commission": format_minor(conversion["commission"], conversion["commission_currency"]),
        "currency": conversion["commission_currency"],
        "status": conversion["status"],
        "event": event,
        "geo": conversion["geo"],
        "coupon": conversion["coupon"],
    }


def ascii_host(url: str, field: str = "destination_url") -> str:
    """The URL with a host of other than ASCII letters in its ASCII form (IDNA, UTS #46,
    as browsers: `bücher.example` is `xn--bcher-kva.example`, `straße.de`
    `xn--strae-oqa.de`, not the `strasse.de` of Python's IDNA 2003 codec, another
    domain), as every HTTP client can reach it; the rest is percent-encoded after."""
    try:
        parts = urlsplit(url)  # ValueError for a host that normalizes to a delimiter
        userinfo, at, hostport = parts.netloc.rpartition("@")
        host, colon, port = hostport.partition(":")
        if host.isascii():
            return url
        host = idna.encode(host, uts46=True).decode("ascii")  # IDNAError is a ValueError
    except ValueError:
        raise InputError(
            f"`{field}` has a host name that is not a valid domain name",
            code="invalid_url",
            field=field,
        ) from None
    return urlunsplit(parts._replace(netloc=f"{userinfo}{at}{host}{colon}{port}"))


def render_url(template: str, values: Mapping[str, str]) -> str:
    """The template with its macros filled (each value percent-encoded), and whatever
    else a URL may not carry as it is (a space, `"`, a non-ASCII letter typed into the
    template) percent-encoded too: an HTTP client would encode those after the URL was
    signed, and the receiver's check of the signature would fail."""
    url = _MACRO.sub(lambda m: quote(values[m.group(1)], safe=""), template)
    with contextlib.suppress(InputError):  # such a host fails to send, and says why
        # a URL stored before hosts were kept in their ASCII form (`bücher.example`)
        url = ascii_host(url)
    url = _plain_host(url)
    parts = urlsplit(url)
    path, query = (quote(p, safe=_URL_SAFE) for p in (parts.path, parts.query))
    # as requested: `/` for no path, no `.` or `..` segments, and no fragment (never sent)
    return urlunsplit(parts._replace(path=_without_dots(path), query=query, fragment=""))


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _plain_host(url: str) -> str:
    """The URL with its host in lower case and without its scheme's default port, as an
    HTTP client sends it (`Aff.Example:443` is sent as `aff.example`): the signature
    covers the URL as its receiver sees it."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:  # a port that is no number: fails to send, and says why
        return url
    if not host:
        return url
    userinfo, at, _ = parts.netloc.rpartition("@")
    shown = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS.get(parts.scheme):
        shown += f":{port}"
    return urlunsplit(parts._replace(netloc=f"{userinfo}{at}{shown}"))


def _without_dots(path: str) -> str:
    """RFC 3986's remove_dot_segments, as HTTP clients apply it: `/a/../pb` is `/pb`."""
    out: list[str] = []
    segments = path.split("/")
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        elif segment == ".":
            if last:
                out.append("")
        else:
            out.append(segment)
    joined = "/".join(out)
    return joined if joined.startswith("/") else "/" + joined


def _as_received(url: str) -> str:
    """The URL as its receiver sees it (what a GET's signature covers): without the
    credentials, which go in the `Authorization` header."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


_URL_SAFE = "!$&'()*+,;=:@/?[]~%"  # RFC 3986 reserved and unreserved, and escapes


def signature(secret: str, timestamp: int, payload: str) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<url or body>">` under the secret."""
    mac = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def build_request(
    config: PostbackConfig, conversion: Mapping[str, Any], event: str, delivery_id: int, now: int
) -> OutboundRequest:
    values = values_of(conversion, event)
    url = render_url(config.url, values)
    headers = {
        "Idempotency-Key": f"clickback-delivery-{delivery_id}",
        "User-Agent": "clickback-postback/1",
    }
    body = None
    payload = _as_received(url)
    if config.method == "POST":
        body = orjson.dumps(values)
        payload = body.decode()
        headers["Content-Type"] = "application/json"
    if config.secret:
        headers["X-Clickback-Signature"] = signature(config.secret, now, payload)
    return OutboundRequest(config.method, url, body, headers)


def outcome(attempt: Attempt) -> str:
    """delivered, retry, or failed (a 4xx other than 408 and 429 will not get better)."""
    code = attempt.status_code
    if code is not None and 200 <= code < 300:
        return DELIVERED
    if code is None or code in (408, 429) or code >= 500:
        return "retry"
    return FAILED


def next_state(
    attempt: Attempt, attempts: int, created_at_us: int, now_us: int, policy: RetryPolicy
) -> tuple[str, int]:
    """The delivery's new state and next attempt time after an attempt."""
    result = outcome(attempt)
    if result != "retry":
        return result, now_us
    next_at = now_us + int(policy.next_delay(attempts) * 1_000_000)
    if next_at - created_at_us > policy.give_up_seconds * 1_000_000:
        return FAILED, now_us
    return QUEUED, next_at


def config_from_row(row: Mapping[str, Any]) -> PostbackConfig:
    return PostbackConfig(
        url=row["postback_url"] or "",
        method=row["postback_method"] or "GET",
        secret=row["postback_secret"] or "",
        events=frozenset(e for e in (row["postback_events"] or "").split(",") if e),
        disabled=row["postback_disabled_at"] is not None,
    )
