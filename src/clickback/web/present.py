"""Stored rows as the API shows them: ISO 8601 UTC times, decimal-string money, booleans."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from starlette.responses import Response

from clickback.domain.csvtext import safe_cell
from clickback.domain.money import format_minor, plain
from clickback.domain.timefmt import from_datetime, iso, restore_plus
from clickback.errors import InputError


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, media_type="application/json")


def parse_time(text: str, field: str) -> int:
    """ISO 8601 (a date, or a time; naive means UTC) -> microseconds since the epoch. An
    offset's `+` sent unencoded in a query string (a space once decoded) is read as `+`."""
    try:
        dt = datetime.fromisoformat(restore_plus(text).replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"`{field}` must be an ISO 8601 date or time", code="invalid_time", field=field
        ) from None
    return from_datetime(dt)


def advertiser(r: dict[str, Any], base: str) -> dict[str, Any]:
    return {
        "id": r["id"],
        "name": r["name"],
        "postback_token": r["postback_token"],
        "require_token": bool(r["require_token"]),
        "ip_allowlist": r["ip_allowlist"],
        "signing_secret": r["signing_secret"],
        "require_signature": bool(r["require_signature"]),
        "created_at": iso(r["created_at"]),
        "updated_at": iso(r["updated_at"]),
        "archived_at": iso(r["archived_at"]),
    }


def offer(r: dict[str, Any], base: str) -> dict[str, Any]:
    return {
        "id": r["id"],
        "advertiser_id": r["advertiser_id"],
        "name": r["name"],
        "destination_url": r["destination_url"],
        "fallback_url": r["fallback_url"],
        "refid_param": r["refid_param"],
        "payout_type": r["payout_type"],
        "payout_amount": format_minor(r["payout_amount"], r["currency"]),
        "payout_percent": plain(r["payout_percent"]),
        "revenue_type": r["revenue_type"],
        "revenue_amount": plain(r["revenue_amount"]),
        "revenue_percent": plain(r["revenue_percent"]),
        "currency": r["currency"],
        "attribution_window_days": r["attribution_window_days"],
        # an archived (DELETEd) offer keeps the status it had, but never serves again
        "status": "archived" if r["archived_at"] is not None else r["status"],
        "approval": r["approval"],
        "fraud_rules": orjson.loads(r["fraud_rules"]),
        "daily_cap": r["daily_cap"],
        "auto_approve_days": r["auto_approve_days"],
        "cap_redirect": bool(r["cap_redirect"]),
        "created_at": iso(r["created_at"]),
        "updated_at": iso(r["updated_at"]),
        "archived_at": iso(r["archived_at"]),
    }


def affiliate(r: dict[str, Any], base: str) -> dict[str, Any]:
    return {
        "id": r["id"],
        "name": r["name"],
        "postback_url": r["postback_url"],
        "postback_method": r["postback_method"],
        "postback_secret": r["postback_secret"],
        "postback_events": [e for e in r["postback_events"].split(",") if e],
        "postback_enabled": r["postback_disabled_at"] is None,
        "postback_disabled_at": iso(r["postback_disabled_at"]),
        "postback_failures": r["postback_failures"],
        "created_at": iso(r["created_at"]),
        "updated_at": iso(r["updated_at"]),
        "archived_at": iso(r["archived_at"]),
    }


def affiliate_cap(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "offer_id": r["offer_id"],
        "affiliate_id": r["affiliate_id"],
        "daily_cap": r["daily_cap"],
        "created_at": iso(r["created_at"]),
        "updated_at": iso(r["updated_at"]),
    }


def offer_postback(r: dict[str, Any]) -> dict[str, Any]:
    """A per-offer override of an affiliate's postback (it holds no secret: the
    affiliate's `postback_secret` signs it)."""
    return {
        "offer_id": r["offer_id"],
        "affiliate_id": r["affiliate_id"],
        "postback_url": r["postback_url"],
        "postback_method": r["postback_method"],
        "postback_events": [e for e in r["postback_events"].split(",") if e],
        "created_at": iso(r["created_at"]),
        "updated_at": iso(r["updated_at"]),
    }


def link(r: dict[str, Any], base: str) -> dict[str, Any]:
    return {
        "id": r["id"],
        "code": r["code"],
        "offer_id": r["offer_id"],
        "affiliate_id": r["affiliate_id"],
        "active": bool(r["active"]) and r["archived_at"] is None,  # archived: never again
        "is_test": bool(r["is_test"]),
        "tracking_url": f"{base}/c/{r['code']}",
        "created_at": iso(r["created_at"]),
        "archived_at": iso(r["archived_at"]),
    }


def _subs(r: dict[str, Any]) -> dict[str, str]:
    return {f"sub{i}": r[f"sub{i}"] for i in range(1, 6)}


def click(r: dict[str, Any], base: str) -> dict[str, Any]:
    return {
        "refid": r["refid"],
        "link_id": r["link_id"],
        "offer_id": r["offer_id"],
        "affiliate_id": r["affiliate_id"],
        **_subs(r),
        "ip": r["ip"],
        "user_agent": r["user_agent"],
        "referer": r["referer"],
        "is_test": bool(r["is_test"]),
        "flags": [f for f in r["flags"].split(",") if f],
        "created_at": iso(r["created_at"]),
    }


def conversion(r: dict[str, Any], base: str) -> dict[str, Any]:
    return {
        "id": r["id"],
        "refid": r["refid"],
        "click_id": None if r["click_missing"] else r["refid"],
        "offer_id": r["offer_id"],
        "affiliate_id": r["affiliate_id"],
        "advertiser_id": r["advertiser_id"],
        "link_id": r["link_id"],
        **_subs(r),
        "ordernumber": r["ordernumber"],
        "orderamount": format_minor(r["orderamount"], r["currency"]),
        "currency": r["currency"],
        "commission": format_minor(r["commission"], r["commission_currency"]),
        "commission_currency": r["commission_currency"],
        "coupon": r["coupon"],
        "geo": r["geo"] or None,
        "commissionid": r["commissionid"],
        "rule": r["rule"],
        "status": r["status"],
        "is_test": bool(r["is_test"]),
        "click_missing": bool(r["click_missing"]),
        "flags": [f for f in r["flags"].split(",") if f],
        "base_currency": r["base_currency"],
        "rate": r["rate"] or None,  # '' for an order of zero valued without a rate
        "base_amount": _base(r["base_amount"], r["base_currency"]),
        "base_commission": _base(r["base_commission"], r["base_currency"]),
        # its offer's revenue terms when it was recorded (`cpa:7.25`, `cps:12.5`, '' none;
        # those of the upgrade for one recorded before they were kept: migration 27)
        "revenue_terms": r.get("revenue_terms"),
        "created_at": iso(r["created_at"]),
        "clicked_at": iso(r["clicked_at"]),
        "updated_at": iso(r["updated_at"]),
        # when it was recorded: after `created_at` for a replayed postback, which keeps its
        # first arrival's time (an offer's validation period runs from here)
        "recorded_at": iso(r.get("recorded_at")),
    }


def _base(minor: int | None, currency: str) -> str | None:
    return None if minor is None else format_minor(minor, currency)


def rule(r: dict[str, Any], base: str) -> dict[str, Any]:
    return {
        "id": r["id"],
        "offer_id": r["offer_id"],
        "affiliate_id": r["affiliate_id"],
        "commissionid": r["commissionid"],
        "payout_type": r["payout_type"],
        "payout_amount": format_minor(r["payout_amount"], r["currency"]),
        "payout_percent": plain(r["payout_percent"]),
        "currency": r["currency"],
        "created_at": iso(r["created_at"]),
        "archived_at": iso(r["archived_at"]),
    }


def postback(r: dict[str, Any], base: str) -> dict[str, Any]:
    return {
        "id": r["id"],
        "received_at": iso(r["received_at"]),
        "method": r["method"],
        "ip": r["ip"],
        "params": orjson.loads(r["params"]),
        "refid": r["refid"],
        "ordernumber": r["ordernumber"],
        "advertiser_id": r["advertiser_id"],
        "outcome": r["outcome"],
        "http_status": r["http_status"],
        "errors": orjson.loads(r["errors"]),
        "code": r["code"] or None,
        "conversion_id": r["conversion_id"],
        "link_id": r["link_id"],
        "is_test": bool(r["is_test"]),
        "replay_of": r["replay_of"],
    }


def delivery(r: dict[str, Any], base: str) -> dict[str, Any]:
    return {
        "id": r["id"],
        "conversion_id": r["conversion_id"],
        "affiliate_id": r["affiliate_id"],
        "offer_id": r["offer_id"],
        "event": r["event"],
        "state": r["state"],
        "attempt_count": r["attempts"],
        "next_attempt_at": iso(r["next_at"]) if r["state"] == "queued" else None,
        "last_status": r["last_status"],
        "last_error": r["last_error"],
        "created_at": iso(r["created_at"]),
        "updated_at": iso(r["updated_at"]),
    }


def attempt(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "at": iso(r["at"]),
        "method": r["method"],
        "url": r["url"],
        "status_code": r["status_code"],
        "response_excerpt": r["excerpt"],
        "latency_ms": r["latency_ms"],
        "error": r["error"],
    }


def token(r: dict[str, Any], base: str) -> dict[str, Any]:
    """An API token as listed: never the token, nor its hash."""
    return {
        "id": r["id"],
        "name": r["name"],
        "role": r["role"],
        "affiliate_id": r["affiliate_id"],
        "created_at": iso(r["created_at"]),
        "revoked_at": iso(r["revoked_at"]),
    }


PRESENTERS = {
    "advertisers": advertiser,
    "offers": offer,
    "affiliates": affiliate,
    "links": link,
    "clicks": click,
    "conversions": conversion,
    "postbacks": postback,
    "commission_rules": rule,
    "deliveries": delivery,
    "api_tokens": token,
}


# CSV export columns: the presenters' fields, in order (a test keeps them in step)
def csv_cell(value: Any, column: str = "") -> Any:
    """A presented value as a CSV export's cell (the API's and the CLI's the same), text
    made safe for spreadsheets (`csvtext.safe_cell`), but in the columns the tracker
    itself wrote (GENERATED)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return orjson.dumps(value).decode()
    if value is None:
        return ""
    return value if column in GENERATED else safe_cell(value)


# made by the tracker, never taken from outside, so written as they are: a RefID (signed,
# so never one a visitor chose) often starts with `-`, and must stay the RefID it is
GENERATED = frozenset({"refid", "click_id"})  # `click_id`: a conversion's RefID again


EXPORT_COLUMNS = {
    "clicks": [
        "refid",
        "link_id",
        "offer_id",
        "affiliate_id",
        "sub1",
        "sub2",
        "sub3",
        "sub4",
        "sub5",
        "ip",
        "user_agent",
        "referer",
        "is_test",
        "flags",
        "created_at",
    ],
    "conversions": [
        "id",
        "refid",
        "click_id",
        "offer_id",
        "affiliate_id",
        "advertiser_id",
        "link_id",
        "sub1",
        "sub2",
        "sub3",
        "sub4",
        "sub5",
        "ordernumber",
        "orderamount",
        "currency",
        "commission",
        "commission_currency",
        "coupon",
        "geo",
        "commissionid",
        "rule",
        "status",
        "is_test",
        "click_missing",
        "flags",
        "base_currency",
        "rate",
        "base_amount",
        "base_commission",
        "revenue_terms",
        "created_at",
        "clicked_at",
        "updated_at",
        "recorded_at",
    ],
}
