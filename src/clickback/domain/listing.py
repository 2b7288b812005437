"""What each list (API, CLI) may be filtered and paged by.

Lists are newest first by their key (an increasing id, or the time-ordered RefID for
clicks); a cursor is the last key of the previous page. Filters are exact values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from clickback.domain.lifecycle import STATUSES
from clickback.domain.models import ERROR_CODES, OfferStatus, Outcome, PayoutType
from clickback.domain.money import normalize_currency
from clickback.domain.outbound import CANCELLED, DELIVERED, EVENTS, FAILED, HELD, QUEUED
from clickback.domain.postback import composed
from clickback.domain.tokens import ROLES
from clickback.errors import InputError

# a filter's kind: int, str, or the values a text column takes (any other is refused: it
# would match no row, and an empty list reads as "none" rather than "a typo")
Filter = type | tuple[str, ...]
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100

_SUBS: dict[str, Filter] = {f"sub{i}": str for i in range(1, 6)}


def _filters(*parts: Mapping[str, Filter]) -> dict[str, Filter]:
    return {name: kind for part in parts for name, kind in part.items()}


@dataclass(frozen=True, slots=True)
class ListSpec:
    key: str  # the column pages are ordered and cut by, descending
    time: str  # the column `since`/`until` apply to
    filters: dict[str, Filter]  # column -> int, str, or the values it takes


LISTS: dict[str, ListSpec] = {
    "advertisers": ListSpec("id", "created_at", {"id": int, "name": str}),
    "offers": ListSpec(
        "id",
        "created_at",
        {
            "id": int,
            "advertiser_id": int,
            "status": tuple(OfferStatus),
            "payout_type": tuple(PayoutType),
            "currency": str,
        },
    ),
    "affiliates": ListSpec("id", "created_at", {"id": int, "name": str}),
    "links": ListSpec(
        "id", "created_at", {"id": int, "code": str, "offer_id": int, "affiliate_id": int}
    ),
    "clicks": ListSpec(
        "refid",
        "created_at",
        _filters(
            {"refid": str, "link_id": int, "offer_id": int, "affiliate_id": int, "is_test": int},
            _SUBS,
        ),
    ),
    "conversions": ListSpec(
        "id",
        "created_at",
        _filters(
            {
                "id": int,
                "refid": str,
                "ordernumber": str,
                "offer_id": int,
                "affiliate_id": int,
                "advertiser_id": int,
                "link_id": int,
                "status": STATUSES,
                "currency": str,
                "geo": str,
                "is_test": int,
                "commissionid": str,
                "rule": str,
            },
            _SUBS,
        ),
    ),
    "postbacks": ListSpec(
        "id",
        "received_at",
        {
            "id": int,
            "refid": str,
            "ordernumber": str,
            "advertiser_id": int,
            "outcome": tuple(Outcome),
            "method": str,
            "conversion_id": int,
            "code": ERROR_CODES,
            "link_id": int,
            "is_test": int,
            "replay_of": int,
        },
    ),
    "deliveries": ListSpec(
        "id",
        "created_at",
        {
            "id": int,
            "affiliate_id": int,
            "conversion_id": int,
            "offer_id": int,
            "state": (QUEUED, HELD, DELIVERED, FAILED, CANCELLED),
            "event": EVENTS,
        },
    ),
    "integration_tests": ListSpec("id", "created_at", {"id": int, "offer_id": int}),
    "commission_rules": ListSpec(
        "id", "created_at", {"id": int, "offer_id": int, "affiliate_id": int, "commissionid": str}
    ),
    # API tokens: their hashes are read with the rows, and never presented
    "api_tokens": ListSpec("id", "created_at", {"id": int, "role": ROLES, "affiliate_id": int}),
}


def text_filter(table: str, name: str, value: str) -> str:
    """A text filter's value, refused when the column takes only some values and this is
    not one of them."""
    kind = LISTS[table].filters[name]
    if isinstance(kind, tuple) and value not in kind:
        raise InputError(
            f"`{name}` must be one of {', '.join(kind)}", code="invalid_filter", field=name
        )
    if table == "conversions" and name == "ordernumber":
        return composed(value)  # as stored
    if name == "currency":  # stored as its ISO code: `usd` is USD, as it is taken
        code = normalize_currency(value)
        if code is None:
            raise InputError(
                "`currency` must be an ISO 4217 code", code="invalid_filter", field=name
            )
        return code
    return value
