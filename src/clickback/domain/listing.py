"""What each list (API, CLI) may be filtered and paged by.

Lists are newest first by their key (an increasing id, or the time-ordered RefID for
clicks); a cursor is the last key of the previous page. Filters are exact values.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100

_SUBS = {f"sub{i}": str for i in range(1, 6)}


@dataclass(frozen=True, slots=True)
class ListSpec:
    key: str  # the column pages are ordered and cut by, descending
    time: str  # the column `since`/`until` apply to
    filters: dict[str, type]  # column -> int or str


LISTS: dict[str, ListSpec] = {
    "advertisers": ListSpec("id", "created_at", {"id": int, "name": str}),
    "offers": ListSpec(
        "id",
        "created_at",
        {"id": int, "advertiser_id": int, "status": str, "payout_type": str, "currency": str},
    ),
    "affiliates": ListSpec("id", "created_at", {"id": int, "name": str}),
    "links": ListSpec(
        "id", "created_at", {"id": int, "code": str, "offer_id": int, "affiliate_id": int}
    ),
    "clicks": ListSpec(
        "refid",
        "created_at",
        {"refid": str, "link_id": int, "offer_id": int, "affiliate_id": int, "is_test": int}
        | _SUBS,
    ),
    "conversions": ListSpec(
        "id",
        "created_at",
        {
            "id": int,
            "refid": str,
            "ordernumber": str,
            "offer_id": int,
            "affiliate_id": int,
            "advertiser_id": int,
            "link_id": int,
            "status": str,
            "currency": str,
            "geo": str,
            "is_test": int,
            "commissionid": str,
            "rule": str,
        }
        | _SUBS,
    ),
    "postbacks": ListSpec(
        "id",
        "received_at",
        {
            "id": int,
            "refid": str,
            "ordernumber": str,
            "advertiser_id": int,
            "outcome": str,
            "method": str,
            "conversion_id": int,
            "code": str,
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
            "state": str,
            "event": str,
        },
    ),
    "integration_tests": ListSpec("id", "created_at", {"id": int, "offer_id": int}),
    "commission_rules": ListSpec(
        "id", "created_at", {"id": int, "offer_id": int, "affiliate_id": int, "commissionid": str}
    ),
}
