"""SQL shared by both engines: admin writes, lists, the catalog and tokens.

Engine classes provide four primitives (`_fetch`, `_write`, and the two hot-path
writes); SQL is written once with `?` placeholders and translated for PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import orjson

from clickback.domain import outbound
from clickback.domain.commission import revenue_terms
from clickback.domain.listing import LISTS
from clickback.domain.models import (
    Advertiser,
    CommissionRule,
    Link,
    Offer,
    OfferStatus,
    PayoutType,
)
from clickback.domain.pacing import USUAL_SETTLE_US
from clickback.domain.ports import CatalogSnapshot, Page, StoredOrder
from clickback.storage.outbox import OutboxSql
from clickback.storage.primitives import decode_cursor, encode_cursor, now_us
from clickback.storage.rates import RatesSql
from clickback.storage.reports import ReportSql
from clickback.storage.screening import ScreeningSql
from clickback.storage.writer import OutageLog

_QMARK = re.compile(r"\?")

OFFER_COLUMNS = (
    "advertiser_id",
    "name",
    "destination_url",
    "fallback_url",
    "refid_param",
    "payout_type",
    "payout_amount",
    "payout_percent",
    "revenue_type",
    "revenue_amount",
    "revenue_percent",
    "currency",
    "attribution_window_days",
    "status",
    "approval",
    "fraud_rules",
    "daily_cap",
    "auto_approve_days",
    "cap_redirect",
)
UPDATABLE: dict[str, frozenset[str]] = {
    "advertisers": frozenset(
        {
            "name",
            "postback_token",
            "require_token",
            "ip_allowlist",
            "signing_secret",
            "require_signature",
        }
    ),
    "offers": frozenset(OFFER_COLUMNS) - {"advertiser_id"},
    "affiliates": frozenset(
        {"name", "postback_url", "postback_method", "postback_secret", "postback_events"}
    ),
    "links": frozenset({"active"}),
    "commission_rules": frozenset(),
}
AFFILIATE_POSTBACK = UPDATABLE["affiliates"] - {"name"}


# a link as the hot path sees it: archived, or of an archived affiliate, it is inactive
LINKS_SERVING = (
    "SELECT l.*, CASE WHEN l.archived_at IS NULL AND f.archived_at IS NULL "
    "THEN l.active ELSE 0 END AS active "
    "FROM links AS l JOIN affiliates AS f ON f.id = l.affiliate_id"
)


# what is archived with a row: (table, the condition its rows meet, on the row's id)
ARCHIVED_WITH: dict[str, tuple[tuple[str, str], ...]] = {
    "advertisers": (
        ("offers", "advertiser_id = ?"),
        ("links", "offer_id IN (SELECT id FROM offers WHERE advertiser_id = ?)"),
    ),
    "offers": (("links", "offer_id = ?"),),
    "affiliates": (("links", "affiliate_id = ?"),),
}


def offer_from_row(r: Mapping[str, Any]) -> Offer:
    return Offer(
        id=r["id"],
        advertiser_id=r["advertiser_id"],
        name=r["name"],
        destination_url=r["destination_url"],
        refid_param=r["refid_param"],
        payout_type=PayoutType(r["payout_type"]),
        payout_amount=r["payout_amount"],
        payout_percent=Decimal(r["payout_percent"]),
        currency=r["currency"],
        attribution_window_days=r["attribution_window_days"],
        status=OfferStatus(r["status"]),
        created_at=r["created_at"],
        approval=r["approval"],
        fallback_url=r["fallback_url"],
        daily_cap=r["daily_cap"],
        auto_approve_days=r["auto_approve_days"],
        cap_redirect=bool(r["cap_redirect"]),
        revenue=revenue_terms(r["revenue_type"], r["revenue_amount"], r["revenue_percent"]),
    )


def link_from_row(r: Mapping[str, Any]) -> Link:
    return Link(
        r["id"],
        r["code"],
        r["offer_id"],
        r["affiliate_id"],
        bool(r["active"]),
        r["created_at"],
        bool(r["is_test"]),
    )


# how far back (postbacks) an integration test looks for one whose RefID named no link
UNMATCHED_SCAN = 5000
_LIKE_ESCAPES = str.maketrans({"\\": "\\\\", "%": "\\%", "_": "\\_"})


class SqlStore(OutboxSql, ScreeningSql, ReportSql, RatesSql):
    """Engine-neutral part of a Store. Subclasses set `engine` and the primitives."""

    engine = ""
    # how long after its RefID was stamped a click may still commit, and so how old the
    # background jobs let clicks be before they pass them by RefID: one process writes
    # SQLite, in stamp order, and its batches commit in milliseconds
    click_settle_us = USUAL_SETTLE_US
    # what this engine's driver raises when the database cannot be reached or refuses
    # work for now (see `unavailable`): the admin API answers those 503, not 500
    unavailable_errors: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
    _outage: OutageLog  # the writer's failures for the database out of reach

    async def write_probe(self) -> None:
        """One small write, committed, once writes failed (`writes_failing`): they commit
        again when it does. `/readyz` tries it, since a node out of the balancer gets no
        traffic whose writes would tell."""
        await self.set_meta("write_probe", str(now_us()))
        self._outage.recovered()

    def writes_failing(self, within: float) -> float | None:
        """Seconds since a write batch last failed for the database out of reach (a disk
        full, a server down), if one did within `within` seconds and none committed
        since: `/readyz` says not ready meanwhile, though reads still work."""
        return self._outage.failing(within)

    def unavailable(self, exc: BaseException) -> bool:
        """Whether `exc` says the database is out of reach for now (retry later), not
        that a statement or the code is wrong."""
        return isinstance(exc, self.unavailable_errors)

    def damaged(self, exc: BaseException) -> str:
        """What to do, when `exc` says a database file is damaged (SQLite's); "" else."""
        return ""

    def _sql(self, sql: str) -> str:
        if self.engine != "postgres":
            return sql
        n = 0

        def number(_: re.Match[str]) -> str:
            nonlocal n
            n += 1
            return f"${n}"

        return _QMARK.sub(number, sql)

    async def _fetchone(self, sql: str, *args: Any) -> dict[str, Any] | None:
        rows = await self._fetch(sql, *args)
        return rows[0] if rows else None

    # -- catalog ------------------------------------------------------------------

    async def config_version(self) -> int:
        row = await self._fetchone("SELECT value FROM meta WHERE key = 'config_version'")
        return int(row["value"]) if row else 0

    async def load_catalog(self) -> CatalogSnapshot:
        version = await self.config_version()
        advertisers = [
            Advertiser(
                r["id"],
                r["name"],
                r["postback_token"],
                bool(r["require_token"]),
                r["created_at"],
                r["ip_allowlist"],
                r["signing_secret"],
                bool(r["require_signature"]),
            )
            for r in await self._fetch("SELECT * FROM advertisers")
        ]
        # archiving an offer or its advertiser archives the offer for the hot paths;
        # archiving a link or its affiliate stops the link
        offers = [
            offer_from_row(r)
            for r in await self._fetch(
                "SELECT o.*, CASE WHEN o.archived_at IS NOT NULL OR a.archived_at IS NOT NULL "
                "THEN 'archived' ELSE o.status END AS status "
                "FROM offers AS o JOIN advertisers AS a ON a.id = o.advertiser_id"
            )
        ]
        links = [link_from_row(r) for r in await self._fetch(LINKS_SERVING)]
        rules = [
            CommissionRule(
                r["id"],
                r["offer_id"],
                r["affiliate_id"],
                r["commissionid"],
                PayoutType(r["payout_type"]),
                r["payout_amount"],
                Decimal(r["payout_percent"]),
                r["currency"],
            )
            for r in await self._fetch(
                "SELECT * FROM commission_rules WHERE archived_at IS NULL ORDER BY id"
            )
        ]
        rates = [
            (r["currency"], r["day"], Decimal(r["rate"]))
            for r in await self._fetch("SELECT currency, day, rate FROM rates")
        ]
        postbacks = {
            (0, r["id"]): outbound.config_from_row(r)
            for r in await self._fetch("SELECT * FROM affiliates WHERE postback_url <> ''")
        }
        for r in await self._fetch(
            "SELECT o.*, a.postback_secret, a.postback_disabled_at FROM offer_postbacks AS o "
            "JOIN affiliates AS a ON a.id = o.affiliate_id"
        ):
            postbacks[(r["offer_id"], r["affiliate_id"])] = outbound.config_from_row(r)
        return CatalogSnapshot(version, advertisers, offers, links, rules, rates, postbacks)

    async def link_by_code(self, code: str) -> Link | None:
        # masked as the catalog's links are: one archived elsewhere, not yet reloaded
        # here, must not be served from a cache miss
        row = await self._fetchone(f"{LINKS_SERVING} WHERE l.code = ?", code)
        return link_from_row(row) if row else None

    async def get_meta(self, key: str) -> str | None:
        row = await self._fetchone("SELECT value FROM meta WHERE key = ?", key)
        return str(row["value"]) if row else None

    async def get_or_set_meta(self, key: str, value: str) -> str:
        await self._write(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", key, value
        )
        row = await self._fetchone("SELECT value FROM meta WHERE key = ?", key)
        assert row is not None
        return str(row["value"])

    async def set_meta(self, key: str, value: str) -> None:
        await self._write(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            key,
            value,
        )

    # -- admin writes ---------------------------------------------------------------

    async def create_advertiser(self, name: str, postback_token: str, require_token: bool) -> int:
        t = now_us()
        return int(
            await self._write(
                "INSERT INTO advertisers (name, postback_token, require_token, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
                name,
                postback_token,
                int(require_token),
                t,
                t,
                bump=True,
            )
        )

    async def create_offer(self, values: Mapping[str, Any]) -> int:
        t = now_us()
        cols = ", ".join(OFFER_COLUMNS)
        marks = ", ".join("?" * len(OFFER_COLUMNS))
        args = [values[c] for c in OFFER_COLUMNS]
        return int(
            await self._write(
                f"INSERT INTO offers ({cols}, created_at, updated_at) VALUES ({marks}, ?, ?) "
                "RETURNING id",
                *args,
                t,
                t,
                bump=True,
            )
        )

    async def update_row(self, table: str, row_id: int, values: Mapping[str, Any]) -> bool:
        """Sets the given columns (those the table allows) and bumps the config version."""
        cols = [c for c in values if c in UPDATABLE[table]]
        if not cols:
            return await self.get_row(table, row_id) is not None
        sets = ", ".join(f"{c} = ?" for c in cols)
        found = await self._write(
            f"UPDATE {table} SET {sets}, updated_at = ? WHERE id = ? RETURNING id",
            *[values[c] for c in cols],
            now_us(),
            row_id,
            bump=True,
        )
        return found is not None

    async def archive_row(self, table: str, row_id: int) -> bool:
        """Archives (never deletes): the row stops serving and keeps its history, and so
        does what belongs to it (an advertiser's offers, an offer's or affiliate's links),
        in the same transaction."""
        t = now_us()
        steps: list[tuple[str, tuple[Any, ...]]] = [
            (
                f"UPDATE {table} SET archived_at = coalesce(archived_at, ?), updated_at = ? "
                "WHERE id = ? RETURNING id",
                (t, t, row_id),
            )
        ]
        below = ARCHIVED_WITH.get(table, ())
        if below and self.engine == "postgres":
            # waits for the creates under way below it to commit, so that the cascade
            # sees them, and holds back those to come until this commits, so that their
            # check after the insert sees the archive (`admin.require_live`)
            names = ", ".join(dict.fromkeys(name for name, _ in below))
            steps.append((f"LOCK TABLE {names} IN SHARE ROW EXCLUSIVE MODE", ()))
        steps += [
            (
                f"UPDATE {name} SET archived_at = ?, updated_at = ? "
                f"WHERE archived_at IS NULL AND {where}",
                (t, t, row_id),
            )
            for name, where in below
        ]
        return await self._write_all(steps, bump=True, guards=1)

    async def create_affiliate(self, name: str, postback: Mapping[str, Any] | None = None) -> int:
        """A new affiliate; `postback` sets its outbound postback columns in the same row."""
        t = now_us()
        given = {c: v for c, v in (postback or {}).items() if c in AFFILIATE_POSTBACK}
        cols = "".join(f", {c}" for c in given)
        marks = ", ?" * len(given)
        return int(
            await self._write(
                f"INSERT INTO affiliates (name{cols}, created_at, updated_at) "
                f"VALUES (?{marks}, ?, ?) RETURNING id",
                name,
                *given.values(),
                t,
                t,
                bump=True,
            )
        )

    async def create_link(
        self, code: str, offer_id: int, affiliate_id: int, is_test: bool = False
    ) -> int:
        t = now_us()
        return int(
            await self._write(
                "INSERT INTO links (code, offer_id, affiliate_id, active, is_test, created_at, "
                "updated_at) VALUES (?, ?, ?, 1, ?, ?, ?) RETURNING id",
                code,
                offer_id,
                affiliate_id,
                int(is_test),
                t,
                t,
                bump=True,
            )
        )

    # -- integration tests ------------------------------------------------------------

    async def create_integration_test(
        self, offer_id: int, affiliate_id: int, link_id: int, refid: str, status: str, reasons: str
    ) -> int:
        t = now_us()
        return int(
            await self._write(
                "INSERT INTO integration_tests (offer_id, affiliate_id, link_id, refid, "
                "click_status, click_reasons, started_at, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                offer_id,
                affiliate_id,
                link_id,
                refid,
                status,
                reasons,
                t,
                t,
            )
        )

    async def restart_integration_test(
        self, test_id: int, refid: str, status: str, reasons: str
    ) -> None:
        await self._write(
            "UPDATE integration_tests SET refid = ?, click_status = ?, click_reasons = ?, "
            "started_at = ? WHERE id = ?",
            refid,
            status,
            reasons,
            now_us(),
            test_id,
        )

    async def delete_integration_test(self, test_id: int) -> bool:
        link_id = await self._write(
            "DELETE FROM integration_tests WHERE id = ? RETURNING link_id", test_id
        )
        if link_id is None:
            return False
        # the test link stops serving; its test clicks and conversions keep their history
        await self._write(
            "UPDATE links SET active = 0, updated_at = ? WHERE id = ?",
            now_us(),
            link_id,
            bump=True,
        )
        return True

    async def test_postbacks(self, link_id: int, since: int, limit: int) -> list[dict[str, Any]]:
        return await self._fetch(
            "SELECT * FROM postbacks WHERE is_test = 1 AND link_id = ? AND received_at >= ? "
            "ORDER BY id DESC LIMIT ?",
            link_id,
            since,
            limit,
        )

    async def unmatched_postbacks(
        self, since: int, token: str, refid: str, limit: int
    ) -> list[dict[str, Any]]:
        """The newest postbacks received since `since` whose RefID named no link (lost,
        cut short, garbled), originals only, that carried `token` (the advertiser's), a
        RefID cut from `refid` or `refid` with more after it: looked for among the newest
        `UNMATCHED_SCAN` of the ledger (it has no index but its id)."""
        quoted = orjson.dumps(token).decode().translate(_LIKE_ESCAPES)
        sent = f'%"token":{quoted}%' if token else None
        return await self._fetch(
            "SELECT id, refid, errors FROM (SELECT id, link_id, replay_of, received_at, refid,"
            f" params, errors FROM postbacks ORDER BY id DESC LIMIT {UNMATCHED_SCAN}) AS p"
            " WHERE link_id IS NULL AND replay_of IS NULL AND received_at >= ?"
            " AND (params LIKE ? ESCAPE '\\' OR (length(refid) >= 8 AND"
            " (substr(CAST(? AS TEXT), 1, length(refid)) = refid"
            " OR substr(refid, 1, length(CAST(? AS TEXT))) = CAST(? AS TEXT))))"
            " ORDER BY id DESC LIMIT ?",
            *(since, sent, refid, refid, refid, limit),
        )

    # -- reads ----------------------------------------------------------------------

    async def get_row(self, table: str, row_id: int) -> dict[str, Any] | None:
        spec = LISTS[table]
        return await self._fetchone(f"SELECT * FROM {table} WHERE {spec.key} = ?", row_id)

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
    ) -> Page:
        """A page of rows, newest first (or oldest, `ascending`). `nulls` maps a column to
        True (must be NULL) or False (must not be); `flag` keeps rows whose comma-separated
        `flags` hold it."""
        spec = LISTS[table]
        where: list[str] = []
        args: list[Any] = []
        for name, value in filters.items():
            where.append(f"{name} = ?")
            args.append(value)
        for name, is_null in (nulls or {}).items():
            where.append(f"{name} IS {'' if is_null else 'NOT '}NULL")
        if flag:
            where.append("(',' || flags || ',') LIKE ?")
            args.append(f"%,{flag},%")
        if since is not None:
            where.append(f"{spec.time} >= ?")
            args.append(since)
        if until is not None:
            where.append(f"{spec.time} < ?")
            args.append(until)
        if cursor:
            where.append(f"{spec.key} {'>' if ascending else '<'} ?")
            kind = spec.filters[spec.key]
            assert isinstance(kind, type)  # keys are ids or RefIDs
            args.append(decode_cursor(cursor, kind))
        sql = f"SELECT * FROM {table}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {spec.key} {'ASC' if ascending else 'DESC'} LIMIT ?"
        rows = await self._fetch(sql, *args, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(rows, encode_cursor(rows[-1][spec.key]) if more else None)

    # -- conversion lifecycle ---------------------------------------------------------

    async def conversion_with_history(
        self, conversion_id: int
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """A conversion and its status history, read together: a change and its history
        row commit in one transaction, so neither is seen without the other."""
        return await self._row_with_children(
            "conversions", conversion_id, "conversion_events", "conversion_id"
        )

    async def stored_order(
        self, advertiser_id: int, ordernumber: str, is_test: int
    ) -> StoredOrder | None:
        """The advertiser's conversion of an order (a real or a test one), as a duplicate
        of it is compared with; None when the order was never counted."""
        row = await self._fetchone(
            "SELECT id, orderamount, currency, refid, commissionid, coupon, geo FROM conversions"
            " WHERE advertiser_id = ? AND ordernumber = ? AND is_test = ?",
            advertiser_id,
            ordernumber,
            is_test,
        )
        if row is None:
            return None
        return StoredOrder(
            int(row["id"]),
            int(row["orderamount"]),
            row["currency"],
            row["refid"],
            row["commissionid"],
            row["coupon"],
            row["geo"],
        )

    async def find_conversion(self, advertiser_id: int, ordernumber: str) -> dict[str, Any] | None:
        """The advertiser's conversion of an order: the real one where an integration
        test's conversion has the same order number (they are deduplicated apart)."""
        return await self._fetchone(
            "SELECT * FROM conversions WHERE advertiser_id = ? AND ordernumber = ?"
            " ORDER BY is_test LIMIT 1",
            advertiser_id,
            ordernumber,
        )

    async def conversion_totals(
        self, filters: Mapping[str, Any], since: int | None, until: int | None
    ) -> list[dict[str, Any]]:
        """Per status: count, and sums of the stored base-currency amounts."""
        where = [f"{name} = ?" for name in filters]
        args: list[Any] = list(filters.values())
        if since is not None:
            where.append("created_at >= ?")
            args.append(since)
        if until is not None:
            where.append("created_at < ?")
            args.append(until)
        sql = (
            "SELECT status, count(*) AS conversions, coalesce(sum(base_amount), 0) AS base_amount,"
            " coalesce(sum(base_commission), 0) AS base_commission,"
            " sum(CASE WHEN base_amount IS NULL THEN 1 ELSE 0 END) AS missing_rate FROM conversions"
        )
        if where:
            sql += " WHERE " + " AND ".join(where)
        return await self._fetch(sql + " GROUP BY status ORDER BY status", *args)

    # -- commission rules and rates ---------------------------------------------------

    async def create_rule(self, values: Mapping[str, Any]) -> int:
        t = now_us()
        return int(
            await self._write(
                "INSERT INTO commission_rules (offer_id, affiliate_id, commissionid, payout_type, "
                "payout_amount, payout_percent, currency, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                values["offer_id"],
                values["affiliate_id"],
                values["commissionid"],
                values["payout_type"],
                values["payout_amount"],
                values["payout_percent"],
                values["currency"],
                t,
                t,
                bump=True,
            )
        )

    # -- tokens ---------------------------------------------------------------------

    async def create_token(
        self, name: str, token_hash: str, role: str, affiliate_id: int | None = None
    ) -> int:
        return int(
            await self._write(
                "INSERT INTO api_tokens (name, token_hash, role, affiliate_id, created_at)"
                " VALUES (?, ?, ?, ?, ?) RETURNING id",
                name,
                token_hash,
                role,
                affiliate_id,
                now_us(),
            )
        )

    async def find_token(self, token_hash: str) -> dict[str, Any] | None:
        """An active token, with when its affiliate (an affiliate token's) was archived."""
        return await self._fetchone(
            "SELECT t.*, f.archived_at AS affiliate_archived_at FROM api_tokens AS t "
            "LEFT JOIN affiliates AS f ON f.id = t.affiliate_id "
            "WHERE t.token_hash = ? AND t.revoked_at IS NULL",
            token_hash,
        )

    async def revoke_token(self, token_id: int) -> bool:
        found = await self._write(
            "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL RETURNING id",
            now_us(),
            token_id,
        )
        return found is not None

    # -- dashboard sessions ------------------------------------------------------------

    async def end_session(self, session_id: str, expires_at: int) -> None:
        await self._write_all(
            [
                (
                    "INSERT INTO ui_logouts (session_id, expires_at) VALUES (?, ?) "
                    "ON CONFLICT (session_id) DO NOTHING",
                    (session_id, expires_at),
                ),
                # a session past its expiry is refused anyway: its id need not be kept
                ("DELETE FROM ui_logouts WHERE expires_at < ?", (now_us(),)),
            ],
            check=False,
        )

    async def session_ended(self, session_id: str) -> bool:
        row = await self._fetchone(
            "SELECT 1 AS ended FROM ui_logouts WHERE session_id = ?", session_id
        )
        return row is not None
