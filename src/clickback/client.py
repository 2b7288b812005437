"""Firing a postback from the advertiser's server, with retries that cannot double-count.

The tracker counts each `ordernumber` once: a repeat answers `duplicate` with the first
conversion's id. So a postback whose answer was lost (timeout, dropped connection, a
`503`) is simply fired again, and `fire_postback` does that, with exponential backoff
and jitter, on connection errors, timeouts, `408`, `429` and `5xx`. A `duplicate` of the
same order (a retry) is returned like an `accepted`: either way the order is counted,
exactly once. A `duplicate` that differs from the order counted (another amount,
currency or RefID: another order given a used order number) was not counted, and raises
OrderNumberReusedError. The module needs only httpx, so it may be copied into a shop's
code on its own.

    from decimal import Decimal
    from clickback.client import PostbackRejectedError, PostbackUnavailableError, fire_postback

    try:
        answer = fire_postback(
            "https://track.example.com",
            refid=order.refid,              # kept from the landing page URL
            orderamount=Decimal("49.90"),   # Decimal, str or int, never float; 0 for a lead
            ordernumber=order.number,       # unique per order
            currency="USD",
            geo="US",
        )
        log.info("postback %s: conversion %s", answer["status"], answer["conversion_id"])
    except PostbackRejectedError as exc:     # 4xx, or a used order number (OrderNumberReusedError):
                                             # retrying will not help; look at exc.errors
        log.error("postback refused (%s): %s", exc.code, exc.errors)
    except PostbackUnavailableError:         # still failing after the retries: queue it, try later
        requeue(order)

`async_fire_postback` is the same for asyncio code. The exceptions:

    PostbackError                  the tracker's answer was not one this client understands
     +-- PostbackRejectedError     4xx: status_code, code, errors (each field, code, message)
     |    +-- OrderNumberReusedError  a `duplicate` unlike the order counted: not counted;
     |                                code `duplicate_ordernumber`, answer, differs
     +-- PostbackUnavailableError  no answer, or 408/429/5xx, after every retry: attempts,
                                   status_code
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
import time
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx

__all__ = [
    "OrderNumberReusedError",
    "PostbackError",
    "PostbackRejectedError",
    "PostbackUnavailableError",
    "async_fire_postback",
    "fire_postback",
]

MAX_DELAY = 30.0  # seconds; caps both the backoff and a server's Retry-After
_USER_AGENT = "clickback-client"  # no package import: this file may be copied on its own
_RETRY_STATUS = frozenset({408, 429})  # besides every 5xx
_RETRY_ERRORS = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
)


class PostbackError(Exception):
    """The tracker answered something this client does not understand (wrong URL?)."""


class PostbackRejectedError(PostbackError):
    """The tracker refused the postback (4xx); firing it again unchanged will not help.

    `code` is the answer's code: `rejected` (bad or missing fields, listed in `errors`),
    `token_missing`, `token_invalid`, `unknown_refid`, `expired_refid`, `offer_paused`,
    or `http_<status>` when the answer had no JSON body.
    """

    def __init__(self, status_code: int, code: str, errors: list[dict[str, Any]]):
        detail = "; ".join(f"{e.get('field')}: {e.get('code')}" for e in errors)
        super().__init__(
            f"postback rejected ({status_code} {code}){': ' + detail if detail else ''}"
        )
        self.status_code = status_code
        self.code = code
        self.errors = errors


class OrderNumberReusedError(PostbackRejectedError):
    """The order number was counted already, for an order unlike this one (`differs`:
    each field with its `stored` and `sent` value): this one was not counted. Give each
    order its own number; a retry of the same order is a plain `duplicate`, returned."""

    def __init__(self, answer: dict[str, Any]):
        self.answer = answer
        self.differs: list[dict[str, Any]] = answer["differs"]
        super().__init__(
            200,
            "duplicate_ordernumber",
            [
                {
                    "field": d.get("field"),
                    "code": "differs",
                    "message": f"stored {d.get('stored')!r}, sent {d.get('sent')!r}",
                }
                for d in self.differs
            ],
        )


class PostbackUnavailableError(PostbackError):
    """No usable answer after every attempt; nothing is lost by firing it again later."""

    def __init__(self, message: str, attempts: int, status_code: int | None = None):
        super().__init__(message)
        self.attempts = attempts
        self.status_code = status_code


def _amount(value: Decimal | str | int) -> str:
    # A float cannot hold most cents exactly (49.9 is 49.89999...), so it is refused.
    if isinstance(value, float | bool):
        raise TypeError("orderamount must be a Decimal, str or int, not " + type(value).__name__)
    if isinstance(value, Decimal):
        # never exponent notation, which the tracker refuses; nor `-0` (0 * -1 is -0)
        return format(value.copy_abs() if value.is_zero() else value, "f")
    if isinstance(value, int | str):
        return str(value)
    raise TypeError("orderamount must be a Decimal, str or int, not " + type(value).__name__)


def _request(
    base_url: str,
    refid: str,
    orderamount: Decimal | str | int,
    ordernumber: str,
    **optional: str | None,
) -> tuple[str, dict[str, str]]:
    base = base_url.rstrip("/")
    url = base if base.endswith("/postback") else base + "/postback"
    params = {"refid": refid, "orderamount": _amount(orderamount), "ordernumber": ordernumber}
    params.update({k: v for k, v in optional.items() if v is not None})
    # as text, as they go on the wire (an order number kept as an int is signed the same)
    return url, {k: str(v) for k, v in params.items()}


def _signed(params: dict[str, str], secret: str | None) -> dict[str, str]:
    """The parameters with `ts` and `sig` added, when the advertiser signs its postbacks:
    hex HMAC-SHA256 of the other parameters sorted by name, each `name=value` with both
    percent-encoded (RFC 3986), joined by `&` (kept here so this file stands alone)."""
    if not secret:
        return params
    out = {k: v for k, v in params.items() if k != "sig"}
    out["ts"] = str(int(time.time()))
    canonical = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in sorted(out.items()))
    out["sig"] = hmac.new(secret.encode(), canonical.encode(), hashlib.sha256).hexdigest()
    return out


def _body(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _where(response: httpx.Response) -> str:
    """The URL a request went to, without its query: that carries the postback token,
    and an error's message ends up in logs."""
    return str(response.request.url.copy_with(query=None))


def _decide(response: httpx.Response) -> dict[str, Any] | None:
    """The answer to return, None to retry; raises for a refusal or a foreign answer."""
    status = response.status_code
    if status >= 500 or status in _RETRY_STATUS:
        return None
    body = _body(response)
    if status == 200 and body is not None and body.get("status") in ("accepted", "duplicate"):
        if body["status"] == "duplicate" and body.get("differs"):
            raise OrderNumberReusedError(body)
        return body
    if status in (404, 405) and (body is None or body.get("code") != "unknown_refid"):
        # the postback endpoint's only 404 names the RefID: this is another path (a wrong
        # `base_url`), or another server; not a refusal of the order
        raise PostbackError(f"{status} from {_where(response)}: no postback endpoint there")
    if 400 <= status < 500:
        if body is None:
            raise PostbackRejectedError(status, f"http_{status}", [])
        errors = [e for e in body.get("errors") or [] if isinstance(e, dict)]
        raise PostbackRejectedError(status, str(body.get("code") or body.get("status")), errors)
    where = (
        f" (redirected to {response.headers['location'].split('?')[0]})"
        if "location" in response.headers
        else ""
    )
    raise PostbackError(f"unexpected answer {status} from {_where(response)}{where}")


def _delay(attempt: int, backoff: float, response: httpx.Response | None) -> float:
    """Exponential backoff with jitter (half fixed, half random); a Retry-After is a floor."""
    delay = min(MAX_DELAY, backoff * 2.0**attempt)
    delay = delay / 2 + random.uniform(0, delay / 2)
    retry_after = response.headers.get("retry-after", "") if response is not None else ""
    if (
        retry_after.isascii() and retry_after.isdigit()
    ):  # seconds; an HTTP date is left to the backoff alone
        delay = max(delay, min(MAX_DELAY, float(retry_after)))
    return delay


def _unavailable(
    attempts: int, response: httpx.Response | None, error: Exception | None
) -> PostbackUnavailableError:
    if response is not None:
        why = f"answered {response.status_code}"
    else:
        why = f"{type(error).__name__}: {error}"
    return PostbackUnavailableError(
        f"postback not delivered after {attempts} attempts ({why})",
        attempts,
        response.status_code if response is not None else None,
    )


def _check(retries: int, backoff: float) -> None:
    if retries < 0 or backoff < 0:
        raise ValueError("retries and backoff must not be negative")


def fire_postback(
    base_url: str,
    *,
    refid: str,
    orderamount: Decimal | str | int,
    ordernumber: str,
    coupon: str | None = None,
    currency: str | None = None,
    geo: str | None = None,
    commissionid: str | None = None,
    token: str | None = None,
    retries: int = 5,
    backoff: float = 0.5,
    timeout: float = 10.0,
    signing_secret: str | None = None,
    transport: httpx.BaseTransport | None = None,
) -> dict[str, Any]:
    """Fire `GET {base_url}/postback`; the tracker's JSON answer when accepted or a
    duplicate of the same order (a retry).

    Retries `retries` times after the first attempt on connection errors, timeouts, 408,
    429 and 5xx. With `signing_secret` each attempt is signed afresh (`ts`, `sig`).
    Raises PostbackRejectedError on a 4xx, OrderNumberReusedError (one of them) for a
    duplicate unlike the order counted, PostbackUnavailableError when every attempt
    failed, TypeError for a float `orderamount`.
    """
    _check(retries, backoff)
    url, params = _request(
        base_url,
        refid,
        orderamount,
        ordernumber,
        coupon=coupon,
        currency=currency,
        geo=geo,
        commissionid=commissionid,
        token=token,
    )
    response: httpx.Response | None = None
    error: Exception | None = None
    with httpx.Client(
        transport=transport, timeout=timeout, headers={"user-agent": _USER_AGENT}
    ) as client:
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(_delay(attempt - 1, backoff, response))
            try:
                response = client.get(url, params=_signed(params, signing_secret))
                error = None
            except _RETRY_ERRORS as exc:
                response, error = None, exc
                continue
            answer = _decide(response)
            if answer is not None:
                return answer
    raise _unavailable(retries + 1, response, error) from error


async def async_fire_postback(
    base_url: str,
    *,
    refid: str,
    orderamount: Decimal | str | int,
    ordernumber: str,
    coupon: str | None = None,
    currency: str | None = None,
    geo: str | None = None,
    commissionid: str | None = None,
    token: str | None = None,
    retries: int = 5,
    backoff: float = 0.5,
    timeout: float = 10.0,
    signing_secret: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> dict[str, Any]:
    """`fire_postback` for asyncio code: the same request, retries and answers."""
    _check(retries, backoff)
    url, params = _request(
        base_url,
        refid,
        orderamount,
        ordernumber,
        coupon=coupon,
        currency=currency,
        geo=geo,
        commissionid=commissionid,
        token=token,
    )
    response: httpx.Response | None = None
    error: Exception | None = None
    async with httpx.AsyncClient(
        transport=transport, timeout=timeout, headers={"user-agent": _USER_AGENT}
    ) as client:
        for attempt in range(retries + 1):
            if attempt:
                await asyncio.sleep(_delay(attempt - 1, backoff, response))
            try:
                response = await client.get(url, params=_signed(params, signing_secret))
                error = None
            except _RETRY_ERRORS as exc:
                response, error = None, exc
                continue
            answer = _decide(response)
            if answer is not None:
                return answer
    raise _unavailable(retries + 1, response, error) from error
