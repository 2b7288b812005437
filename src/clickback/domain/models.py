"""The things clickback tracks, as frozen dataclasses (plain values, no behaviour of note).

Money is held as integer minor units of the named currency; times as integer
microseconds since the Unix epoch, UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum


class PayoutType(StrEnum):
    CPA = "cpa"  # a fixed amount per conversion
    CPS = "cps"  # a percent of orderamount
    CPL = "cpl"  # a fixed amount per lead (orderamount is usually 0)


class OfferStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    ARCHIVED = "archived"  # the offer or its advertiser was archived (DELETE)


class Outcome(StrEnum):
    """What became of a postback; stored with it in the ledger."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"  # bad fields (400)
    UNKNOWN_REFID = "unknown_refid"  # 404
    EXPIRED_REFID = "expired_refid"  # 422
    OFFER_PAUSED = "offer_paused"  # 422
    FORBIDDEN = "forbidden"  # 403: token, IP allowlist, signature
    RATE_LIMITED = "rate_limited"  # 429


@dataclass(frozen=True, slots=True)
class Advertiser:
    id: int
    name: str
    postback_token: str
    require_token: bool
    created_at: int
    ip_allowlist: str = ""  # comma-separated IPs/CIDRs; empty: any address
    signing_secret: str = ""
    require_signature: bool = False


@dataclass(frozen=True, slots=True)
class Offer:
    id: int
    advertiser_id: int
    name: str
    destination_url: str
    refid_param: str
    payout_type: PayoutType
    payout_amount: int  # minor units of `currency` (CPA, CPL)
    payout_percent: Decimal  # CPS
    currency: str
    attribution_window_days: int
    status: OfferStatus
    created_at: int
    approval: str = "auto"  # `auto`: approved when recorded; `review`: pending until decided
    fallback_url: str = ""  # where its links send a click while not serving; '': the global
    daily_cap: int | None = None  # conversions a UTC day; more are flagged `over_cap`
    auto_approve_days: int | None = None  # a pending conversion this old is approved
    cap_redirect: bool = False  # a click once a daily cap is reached: to the fallback URL
    revenue: str = ""  # its revenue terms (`commission.revenue_terms`), kept by conversions


@dataclass(frozen=True, slots=True)
class Affiliate:
    id: int
    name: str
    created_at: int


@dataclass(frozen=True, slots=True)
class Link:
    id: int
    code: str
    offer_id: int
    affiliate_id: int
    active: bool
    created_at: int
    is_test: bool = False


# every code a postback's error may carry (the ledger's `code` is its first error's): a
# filter by another is a typo and refused, not an empty list (tests check that every code
# the source gives a FieldError is here)
ERROR_CODES = (
    "duplicate_ordernumber",
    "expired_refid",
    "get_body_ignored",
    "invalid_amount",
    "invalid_currency",
    "invalid_form",
    "invalid_geo",
    "invalid_json",
    "invalid_text",
    "ip_not_allowed",
    "json_not_declared",
    "method_not_allowed",
    "missing",
    "missing_rate",
    "offer_archived",
    "offer_paused",
    "rate_limited",
    "repeated",
    "request_incomplete",
    "request_too_large",
    "signature_expired",
    "signature_invalid",
    "token_invalid",
    "token_missing",
    "thousands_like_amount",
    "too_long",
    "too_many_fields",
    "unencoded_ampersand",
    "unknown_commissionid",
    "unknown_refid",
    "unsupported_encoding",
    "wrong_parameter",
)


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)
class CommissionRule:
    """A payout that replaces the offer's default: for a postback `commissionid`, for an
    affiliate, or for both."""

    id: int
    offer_id: int
    affiliate_id: int | None
    commissionid: str  # '' applies to every postback of the affiliate
    payout_type: PayoutType
    payout_amount: int  # minor units of `currency`
    payout_percent: Decimal
    currency: str = "USD"  # of payout_amount: the offer's when the rule was made
