"""What the domain needs from the outside world, as Protocols: a Store and a Clock.

Storage implements `Store` once per engine (`storage.sqlite`, `storage.postgres`).
Rows written on the hot paths are plain tuples in the column order given here, so the
writer hands them to the driver without building objects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from clickback.domain.models import Advertiser, CommissionRule, Link, Offer, Outcome
from clickback.domain.outbound import Attempt, PostbackConfig
from clickback.domain.reports import ReportStore
from clickback.domain.rollup import RollupStore

# (refid, link_id, offer_id, affiliate_id, sub1, sub2, sub3, sub4, sub5,
#  ip, user_agent, referer, created_at, is_test)
ClickRow = tuple[str, int, int, int, str, str, str, str, str, str, str, str, int, int]

CLICK_COLUMNS = (
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
    "created_at",
    "is_test",
)


@dataclass(frozen=True, slots=True)
class ConversionRow:
    """A conversion to insert; its sub-IDs come from its click row, when that is stored."""

    refid: str
    offer_id: int
    affiliate_id: int
    advertiser_id: int
    link_id: int
    ordernumber: str
    orderamount: int  # minor units of currency
    currency: str
    commission: int  # minor units of commission_currency
    commission_currency: str
    coupon: str
    geo: str
    commissionid: str
    status: str
    created_at: int  # when the postback arrived (a replay's: the original's)
    recorded_at: int  # when the row is written: a validation period runs from then
    clicked_at: int
    is_test: int
    rule: str  # "default" or "rule:<id>"
    flags: str  # comma-separated: missing_rate, unknown_commissionid
    base_currency: str
    rate: str | None  # the order currency's rate into base_currency; None: missing
    base_amount: int | None
    base_commission: int | None
    ip: str = ""  # where the postback came from (fraud screening compares it)
    delivery: str = ""  # outbound postback to queue with it: '' none, 'queued' or 'held'
    revenue_terms: str = ""  # its offer's revenue terms when recorded (`commission.revenue_terms`)


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """The raw postback as received, with the decision taken on it."""

    received_at: int
    method: str
    ip: str
    params: str  # JSON object of every parameter received
    refid: str
    ordernumber: str
    advertiser_id: int | None
    outcome: Outcome
    http_status: int
    errors: str  # JSON list of {field, code, message}
    code: str  # the first error's code, '' when accepted: the ledger filters by it
    link_id: int | None  # the link the RefID names, when it could be read
    is_test: int
    replay_of: int | None  # the ledger row this one re-decided
    # the conversion a refused repeat of an order counted already repeats (a retry after
    # its offer was paused, say), so that the ledger links it as a duplicate's row
    conversion_id: int | None = None


@dataclass(frozen=True, slots=True)
class StoredOrder:
    """The conversion a duplicate repeats, as stored: what the repeat is compared with."""

    conversion_id: int
    orderamount: int  # minor units of currency
    currency: str
    refid: str
    commissionid: str
    coupon: str
    geo: str


@dataclass(frozen=True, slots=True)
class PostbackWritten:
    outcome: Outcome  # ACCEPTED, or DUPLICATE when the ordernumber was already counted
    conversion_id: int | None
    ledger_id: int
    stored: StoredOrder | None = None  # for a DUPLICATE: the conversion it repeats


@dataclass(frozen=True, slots=True)
class Screening:
    """A conversion's fraud screening: its flags, and the status the offer's rules give
    it (with the outbound postback of that change, when there is one)."""

    conversion_id: int
    flags: str
    from_status: str
    to_status: str
    reason: str
    delivery: str


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class CatalogSnapshot:
    version: int
    advertisers: Sequence[Advertiser]
    offers: Sequence[Offer]
    links: Sequence[Link]
    rules: Sequence[CommissionRule]
    rates: Sequence[tuple[str, str, Decimal]]  # (currency, day, rate)
    # outbound postback settings by (offer_id, affiliate_id); offer_id 0: the affiliate's own
    postbacks: Mapping[tuple[int, int], PostbackConfig]


class OutboxStore(Protocol):
    """The outbound postback outbox (storage.outbox) and background jobs
    (storage.screening)."""

    async def claim_deliveries(
        self,
        now: int,
        lease_until: int,
        limit: int,
        in_flight: Mapping[int, int] | None = None,
        per_affiliate: int = 0,
    ) -> list[dict[str, Any]]: ...
    async def finish_attempt(
        self,
        delivery_id: int,
        affiliate_id: int,
        attempt: Attempt,
        method: str,
        url: str,
        state: str,
        next_at: int,
        now: int,
        disable_after: int,
        lease: int,
    ) -> bool: ...
    async def enable_postbacks(self, affiliate_id: int, now: int) -> int: ...
    async def disable_postbacks(self, affiliate_id: int, now: int) -> int: ...
    async def resend_delivery(self, delivery_id: int, now: int) -> dict[str, Any] | None: ...
    async def cancel_delivery(self, delivery_id: int, lease: int, now: int) -> bool: ...
    async def delivery_with_attempts(
        self, delivery_id: int
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]: ...
    async def set_offer_postback(
        self, offer_id: int, affiliate_id: int, url: str, method: str, events: str, now: int
    ) -> None: ...
    async def offer_postbacks(
        self, offer_id: int | None = None, affiliate_id: int | None = None
    ) -> list[dict[str, Any]]: ...
    async def delete_offer_postback(self, offer_id: int, affiliate_id: int) -> bool: ...
    async def acquire_job(
        self, name: str, owner: str, now: int, lease_until: int
    ) -> str | None: ...
    async def clicks_after(self, refid: str, below: str, limit: int) -> list[dict[str, Any]]: ...
    async def screened_clicks(
        self, after: str, through: str, limit: int
    ) -> list[tuple[Any, ...]]: ...
    async def screened_conversions(self, before: int, limit: int) -> list[tuple[Any, ...]]: ...
    async def newest_conversion_event(self) -> int: ...
    async def decisions_after(self, after: int, since: int) -> tuple[int, bool]: ...
    async def flag_clicks(
        self, flagged: list[tuple[str, str]], owner: str, watermark: str
    ) -> bool: ...
    async def unscreened_conversions(self, through: str, limit: int) -> list[dict[str, Any]]: ...
    async def screen_conversions(
        self, screenings: list[Screening], owner: str, now: int
    ) -> bool: ...
    async def affiliate_caps(
        self, offer_id: int, affiliate_id: int | None = None
    ) -> list[dict[str, Any]]: ...
    async def set_affiliate_cap(
        self, offer_id: int, affiliate_id: int, cap: int, now: int
    ) -> None: ...
    async def delete_affiliate_cap(self, offer_id: int, affiliate_id: int) -> bool: ...
    async def daily_caps(self) -> dict[tuple[int, int], int]: ...
    async def caps_reached(self, from_day: int) -> set[tuple[int, int, int]]: ...
    async def caps_reached_on(self, offer_id: int, day: int) -> list[tuple[int, int]]: ...
    async def reach_caps(
        self, reached: list[tuple[int, int, int]], owner: str, now: int
    ) -> bool: ...
    async def match_caps_reached(
        self, from_day: int, reached: set[tuple[int, int, int]], owner: str, now: int
    ) -> bool: ...
    async def date_unrecorded(self) -> None: ...
    async def due_for_approval(
        self, now: int, after: tuple[int, int], limit: int
    ) -> list[dict[str, Any]]: ...


class Store(OutboxStore, ReportStore, RollupStore, Protocol):
    async def migrate(self) -> int: ...
    async def ping(self) -> bool: ...
    def writes_failing(self, within: float) -> float | None: ...
    async def write_probe(self) -> None: ...

    # what the driver raises when the database may be out of reach for now
    unavailable_errors: tuple[type[BaseException], ...]

    def unavailable(self, exc: BaseException) -> bool:
        """Whether `exc` says the database is out of reach for now (retry later), not
        that a statement or the code is wrong."""
        ...

    def damaged(self, exc: BaseException) -> str:
        """What to do, when `exc` says a database file is damaged; "" when it does not."""
        ...

    async def close(self) -> None: ...

    # hot paths: each returns once its row is committed (group commit)
    # write_click hands the row over at once and returns what to await: a future, which
    # the native front waits on with a callback instead of a coroutine
    def write_click(self, row: ClickRow) -> asyncio.Future[None]: ...
    def queue_click(self, row: ClickRow) -> None: ...
    async def write_postback(
        self, ledger: LedgerRow, conversion: ConversionRow | None
    ) -> PostbackWritten: ...

    # shared state
    async def get_meta(self, key: str) -> str | None: ...
    async def get_or_set_meta(self, key: str, value: str) -> str: ...
    async def set_meta(self, key: str, value: str) -> None: ...
    async def config_version(self) -> int: ...
    async def load_catalog(self) -> CatalogSnapshot: ...
    async def link_by_code(self, code: str) -> Link | None: ...

    # admin
    async def create_advertiser(
        self, name: str, postback_token: str, require_token: bool
    ) -> int: ...
    async def create_offer(self, values: Mapping[str, Any]) -> int: ...
    async def update_row(self, table: str, row_id: int, values: Mapping[str, Any]) -> bool: ...
    async def archive_row(self, table: str, row_id: int) -> bool: ...
    async def create_affiliate(
        self, name: str, postback: Mapping[str, Any] | None = None
    ) -> int: ...
    async def create_link(
        self, code: str, offer_id: int, affiliate_id: int, is_test: bool = False
    ) -> int: ...
    async def get_row(self, table: str, row_id: int) -> dict[str, Any] | None: ...
    async def list_rows(
        self,
        table: str,
        filters: Mapping[str, Any],
        since: int | None,
        until: int | None,
        limit: int,
        cursor: str | None,
        *,
        nulls: Mapping[str, bool] | None = None,
        ascending: bool = False,
        flag: str | None = None,
    ) -> Page: ...

    # conversion lifecycle, commission rules, rates
    async def transition(
        self,
        conversion_id: int,
        from_status: str,
        to_status: str,
        reason: str,
        actor: str,
        delivery: str = "",
        *,
        announce: str = "",
    ) -> bool: ...
    async def conversion_with_history(
        self, conversion_id: int
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]: ...
    async def find_conversion(
        self, advertiser_id: int, ordernumber: str
    ) -> dict[str, Any] | None: ...
    async def stored_order(
        self, advertiser_id: int, ordernumber: str, is_test: int
    ) -> StoredOrder | None: ...
    async def conversion_totals(
        self, filters: Mapping[str, Any], since: int | None, until: int | None
    ) -> list[dict[str, Any]]: ...
    async def create_rule(self, values: Mapping[str, Any]) -> int: ...
    async def put_rates(self, rows: list[tuple[str, str, str]]) -> int: ...
    async def rates_changed_at(self) -> int: ...
    async def base_currency_in_use(self) -> str | None: ...
    async def all_rates(self) -> list[tuple[str, str, str]]: ...
    async def list_rates(self, currency: str | None, limit: int, cursor: str | None) -> Page: ...
    async def unvalued_conversions(self, after_id: int, limit: int) -> list[dict[str, Any]]: ...
    async def value_conversions(self, rows: list[tuple[str, int, int, str, int]]) -> None: ...
    # integration tests
    async def create_integration_test(
        self, offer_id: int, affiliate_id: int, link_id: int, refid: str, status: str, reasons: str
    ) -> int: ...
    async def restart_integration_test(
        self, test_id: int, refid: str, status: str, reasons: str
    ) -> None: ...
    async def delete_integration_test(self, test_id: int) -> bool: ...
    async def test_postbacks(
        self, link_id: int, since: int, limit: int
    ) -> list[dict[str, Any]]: ...
    async def unmatched_postbacks(
        self, since: int, token: str, refid: str, limit: int
    ) -> list[dict[str, Any]]: ...

    async def create_token(
        self, name: str, token_hash: str, role: str, affiliate_id: int | None = None
    ) -> int: ...
    async def find_token(self, token_hash: str) -> dict[str, Any] | None: ...
    async def revoke_token(self, token_id: int) -> bool: ...
    # dashboard sessions ended by logging out, until `expires_at` (µs)
    async def end_session(self, session_id: str, expires_at: int) -> None: ...
    async def session_ended(self, session_id: str) -> bool: ...


class Clock(Protocol):
    def now_us(self) -> int: ...
