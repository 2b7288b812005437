"""SQL for the outbound postback outbox: a conversion's status change with the postbacks
it queues, claiming due deliveries with a lease, recording attempts, holding and
releasing an affiliate's deliveries. Mixed into `SqlStore`."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from clickback.domain.outbound import DELIVERED, FAILED, HELD, QUEUED, Attempt
from clickback.storage.primitives import SqlPrimitives, now_us, padded

# Settings: an offer+affiliate override wins over the affiliate's own postback.
_CONFIG = """
    coalesce(op.postback_url, a.postback_url) AS postback_url,
    coalesce(op.postback_method, a.postback_method) AS postback_method,
    coalesce(op.postback_events, a.postback_events) AS postback_events,
    a.postback_secret, a.postback_disabled_at
"""


class OutboxSql(SqlPrimitives):
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
    ) -> bool:
        """Moves a conversion from one status to another, with its audit event and (when
        `delivery` names a state) the outbound postback of the change, in one transaction;
        False when its status was no longer `from_status`. With `announce` (a state), a
        `conversion` postback is queued first unless one was queued and neither cancelled
        nor failed: the affiliate hears of the sale before its change."""
        t = now_us()
        steps: list[tuple[str, tuple[Any, ...]]] = [
            (
                "UPDATE conversions SET status = ?, updated_at = ? WHERE id = ? AND status = ? "
                "RETURNING id",
                (to_status, t, conversion_id, from_status),
            ),
            (
                "INSERT INTO conversion_events (conversion_id, from_status, to_status, reason, "
                "actor, created_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (conversion_id, from_status, to_status, reason, actor, t),
            ),
        ]
        queue = (
            "INSERT INTO deliveries (conversion_id, affiliate_id, offer_id, event, state, "
            "next_at, created_at, updated_at, conversion_status) SELECT id, affiliate_id, "
            "offer_id, ?, ?, ?, ?, ?, ? FROM conversions AS c WHERE id = ?"
        )
        if announce:
            steps.append(
                (
                    queue + " AND NOT EXISTS (SELECT 1 FROM deliveries AS d WHERE "
                    "d.conversion_id = c.id AND d.event = 'conversion' AND "
                    "d.state NOT IN ('cancelled', 'failed')) RETURNING id",
                    ("conversion", announce, t, t, t, to_status, conversion_id),
                )
            )
        if delivery:
            steps.append(
                (queue + " RETURNING id", (to_status, delivery, t, t, t, to_status, conversion_id))
            )
        return await self._write_all(steps, guards=2)

    async def claim_deliveries(
        self,
        now: int,
        lease_until: int,
        limit: int,
        in_flight: Mapping[int, int] | None = None,
        per_affiliate: int = 0,
    ) -> list[dict[str, Any]]:
        """Leases up to `limit` due deliveries of screened conversions to this sender; a
        sender that dies loses its lease and another takes the delivery over. A delivery
        waits while an earlier one of the same conversion to the same affiliate is still
        to be sent (queued, in flight or held): an affiliate hears of a reversal after the
        conversion it reverses, even when the conversion's postback is being retried.
        With `per_affiliate`, an affiliate gets no more than that less its sends
        `in_flight` (affiliate: how many): its share of the sender's sends."""
        # (a delivery of a disabled affiliate stays put: it is held, or about to be; one
        # held while its affiliate is enabled, queued by a process that had not yet seen
        # the postback enabled again, is taken as queued)
        due = (
            " FROM deliveries AS d JOIN conversions AS c ON c.id = d.conversion_id"
            " JOIN affiliates AS a ON a.id = d.affiliate_id"
            " WHERE d.state IN ('queued', 'held') AND d.next_at <= ? AND c.screened = 1"
            " AND a.postback_disabled_at IS NULL"
            " AND (d.lease_until IS NULL OR d.lease_until < ?)"
            " AND NOT EXISTS (SELECT 1 FROM deliveries AS e WHERE e.conversion_id ="
            " d.conversion_id AND e.affiliate_id = d.affiliate_id AND e.id < d.id"
            " AND e.state IN ('queued', 'held'))"
        )
        if per_affiliate:
            sending = in_flight or {}
            full = padded([a for a, n in sending.items() if n >= per_affiliate] or [0])
            some = padded([(a, n) for a, n in sending.items() if n < per_affiliate] or [(0, 0)])
            # the oldest due deliveries (a few times as many as asked for: numbering every
            # one due would cost a backlog's whole length each claim) but for those of an
            # affiliate with its share in flight, numbered oldest first by affiliate, and
            # as many taken as each affiliate has room for
            room = " ".join("WHEN ? THEN CAST(? AS INTEGER)" for _ in some)
            chosen = (
                "SELECT w.id FROM (SELECT o.id, o.next_at, row_number() OVER (PARTITION BY"
                " o.affiliate_id ORDER BY o.next_at, o.id) AS n, o.affiliate_id FROM"
                f" (SELECT d.id, d.next_at, d.affiliate_id{due} AND d.affiliate_id NOT IN"
                f" ({', '.join('?' * len(full))}) ORDER BY d.next_at LIMIT ?) AS o) AS w"
                f" WHERE w.n <= CAST(? AS INTEGER) - CASE w.affiliate_id {room} ELSE 0 END"
                " ORDER BY w.next_at LIMIT ?"
            )
            args: list[Any] = [now, now, *full, 4 * limit, per_affiliate]
            args += [*itertools.chain(*some), limit]
        else:
            chosen = f"SELECT d.id{due} ORDER BY d.next_at LIMIT ?"
            args = [now, now, limit]
        if self.engine == "postgres":
            # what another sender is taking meanwhile is passed; and the rows chosen are
            # looked at again as they are once locked, since the choice read them as they
            # were when the statement began: one that another sender claimed, sent and
            # finished meanwhile (its lease cleared) is no longer due, and is not sent twice
            chosen = (
                f"SELECT l.id FROM deliveries AS l WHERE l.id IN ({chosen}) AND"
                " l.state IN ('queued', 'held') AND l.next_at <= ? AND"
                " (l.lease_until IS NULL OR l.lease_until < ?) FOR UPDATE SKIP LOCKED"
            )
            args += [now, now]
        rows = await self._fetch(
            f"UPDATE deliveries SET lease_until = ? WHERE id IN ({chosen}) RETURNING id",
            lease_until,
            *args,
        )
        if not rows:
            return []
        ids = padded([r["id"] for r in rows])
        marks = ", ".join("?" * len(ids))
        return await self._fetch(
            "SELECT d.id AS delivery_id, d.event, d.attempts, d.conversion_status, "
            "coalesce(d.retry_from, d.created_at) AS queued_at, "
            # the attempts since it was queued again by hand: its backoff starts again
            "CASE WHEN d.retry_from IS NULL THEN d.attempts ELSE (SELECT count(*) FROM "
            "delivery_attempts AS t WHERE t.delivery_id = d.id AND t.at >= d.retry_from) "
            "END AS tries, "
            f"d.affiliate_id AS delivery_affiliate, c.*, {_CONFIG} "
            "FROM deliveries AS d JOIN conversions AS c ON c.id = d.conversion_id "
            "JOIN affiliates AS a ON a.id = d.affiliate_id "
            "LEFT JOIN offer_postbacks AS op ON op.offer_id = d.offer_id "
            f"AND op.affiliate_id = d.affiliate_id WHERE d.id IN ({marks}) ORDER BY d.next_at",
            *ids,
        )

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
    ) -> bool:
        """Records an attempt and its consequence in one transaction: the delivery's new
        state, the affiliate's failure run, and holding its deliveries after too many.
        False (nothing written) when the sender's lease on the delivery has run out, for
        then another sender owns it."""
        steps: list[tuple[str, tuple[Any, ...]]] = [
            (
                "UPDATE deliveries SET state = ?, attempts = attempts + 1, next_at = ?, "
                "lease_until = NULL, last_status = ?, last_error = ?, updated_at = ? "
                "WHERE id = ? AND lease_until = ? RETURNING id",
                (state, next_at, attempt.status_code, attempt.error, now, delivery_id, lease),
            ),
            (
                "INSERT INTO delivery_attempts (delivery_id, at, method, url, status_code, "
                "excerpt, latency_ms, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    delivery_id,
                    now,
                    method,
                    url,
                    attempt.status_code,
                    attempt.excerpt,
                    attempt.latency_ms,
                    attempt.error,
                ),
            ),
        ]
        if state in (DELIVERED, FAILED):
            # the postbacks of its conversion to the affiliate that waited for it (a
            # `reversed` behind its `conversion`) may go now: the time they are retried
            # for runs from now, not from when they were queued (a reversal held behind a
            # sale retried for 72 hours had one attempt left, and failed at its first 5xx)
            steps.append(
                (
                    "UPDATE deliveries SET retry_from = ? WHERE conversion_id = (SELECT"
                    " d.conversion_id FROM deliveries AS d WHERE d.id = ?) AND affiliate_id = ?"
                    " AND id > ? AND attempts = 0 AND state IN ('queued', 'held')",
                    (now, delivery_id, affiliate_id, delivery_id),
                )
            )
        if state == DELIVERED:
            steps.append(
                ("UPDATE affiliates SET postback_failures = 0 WHERE id = ?", (affiliate_id,))
            )
        else:
            steps += [
                (
                    "UPDATE affiliates SET postback_failures = postback_failures + 1 WHERE id = ?",
                    (affiliate_id,),
                ),
                (
                    "UPDATE affiliates SET postback_disabled_at = ? WHERE id = ? AND "
                    "postback_disabled_at IS NULL AND postback_failures >= ?",
                    (now, affiliate_id, disable_after),
                ),
                (
                    "UPDATE deliveries SET state = 'held', updated_at = ? "
                    "WHERE affiliate_id = ? AND state = 'queued' AND EXISTS "
                    "(SELECT 1 FROM affiliates WHERE id = ? AND postback_disabled_at IS NOT NULL)",
                    (now, affiliate_id, affiliate_id),
                ),
                # caches learn of a postback disabled just now, so new deliveries are held
                (
                    "UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) "
                    "WHERE key = 'config_version' AND EXISTS (SELECT 1 FROM affiliates "
                    "WHERE id = ? AND postback_disabled_at = ?)",
                    (affiliate_id, now),
                ),
            ]
        return await self._write_all(steps, guards=1)

    async def enable_postbacks(self, affiliate_id: int, now: int) -> int:
        """Re-enables an affiliate's postback and re-queues what was held; how many."""
        held = await self._fetch(
            "SELECT count(*) AS n FROM deliveries WHERE affiliate_id = ? AND state = ?",
            affiliate_id,
            HELD,
        )
        await self._write_all(
            [
                (
                    "UPDATE affiliates SET postback_disabled_at = NULL, postback_failures = 0 "
                    "WHERE id = ?",
                    (affiliate_id,),
                ),
                (
                    "UPDATE deliveries SET state = ?, next_at = ?, retry_from = ?, updated_at = ? "
                    "WHERE affiliate_id = ? AND state = ?",
                    (QUEUED, now, now, now, affiliate_id, HELD),
                ),
            ],
            bump=True,
            check=False,
        )
        return int(held[0]["n"])

    async def disable_postbacks(self, affiliate_id: int, now: int) -> int:
        """Disables an affiliate's postback by hand, as failures do: its deliveries are
        held until it is enabled again; how many were held."""
        queued = await self._fetch(
            "SELECT count(*) AS n FROM deliveries WHERE affiliate_id = ? AND state = ?",
            affiliate_id,
            QUEUED,
        )
        await self._write_all(
            [
                (
                    "UPDATE affiliates SET postback_disabled_at = ? "
                    "WHERE id = ? AND postback_disabled_at IS NULL",
                    (now, affiliate_id),
                ),
                (
                    "UPDATE deliveries SET state = ?, updated_at = ? "
                    "WHERE affiliate_id = ? AND state = ?",
                    (HELD, now, affiliate_id, QUEUED),
                ),
            ],
            bump=True,
            check=False,
        )
        return int(queued[0]["n"])

    async def resend_delivery(self, delivery_id: int, now: int) -> dict[str, Any] | None:
        """Queues a delivery again now, with the give-up time counted from now: `queued`
        true. Otherwise it is left as it is, and the answer says why (None: there is no
        such delivery): its `state` `cancelled` (not to be sent); `in_flight` while a
        sender holds a live lease on it (queued again, another sender would send it a
        second time, and the first attempt could not be recorded); `disabled_at` when
        its affiliate's postback is disabled (it would wait unsent); `later_id` and
        `later_event` when a later delivery of its conversion to the affiliate was
        delivered or is being sent (sent now, this older status would arrive after it),
        or tells the same event and is not cancelled (it would be told twice).
        Every condition is on the updated row's own WHERE, so that PostgreSQL checks
        them again on the row a concurrent claim committed (a condition in a subquery of
        the row's id is not checked again)."""
        later = (
            "FROM deliveries AS e WHERE e.conversion_id = {d}.conversion_id"
            " AND e.affiliate_id = {d}.affiliate_id AND e.id > {d}.id"
            f" AND (e.state = '{DELIVERED}' OR e.lease_until >= ?"
            # or one of the same event, not cancelled: a sale told anew after its
            # re-approval (`transition`), which this one would tell twice
            " OR (e.event = {d}.event AND e.state <> 'cancelled'))"
        )
        rows = await self._fetch(
            "UPDATE deliveries SET state = ?, next_at = ?, retry_from = ?, lease_until = NULL, "
            "updated_at = ? WHERE id = ? AND state <> 'cancelled'"
            " AND (lease_until IS NULL OR lease_until < ?)"
            " AND NOT EXISTS (SELECT 1 FROM affiliates AS a WHERE a.id = deliveries.affiliate_id"
            " AND a.postback_disabled_at IS NOT NULL)"
            f" AND NOT EXISTS (SELECT 1 {later.format(d='deliveries')}) RETURNING id",
            QUEUED,
            now,
            now,
            now,
            delivery_id,
            now,
            now,
        )
        if rows:
            # the later postbacks of its conversion to the affiliate that failed too (a
            # `reversed` after its sale) go again after it, in their order: the sale sent
            # alone would leave the affiliate a sale that was reversed
            later_failed = await self._fetch(
                "UPDATE deliveries SET state = ?, next_at = ?, retry_from = ?, updated_at = ?"
                " WHERE conversion_id = (SELECT d.conversion_id FROM deliveries AS d WHERE"
                " d.id = ?) AND affiliate_id = (SELECT d.affiliate_id FROM deliveries AS d"
                " WHERE d.id = ?) AND id > ? AND state = 'failed' RETURNING id",
                QUEUED,
                now,
                now,
                now,
                delivery_id,
                delivery_id,
                delivery_id,
            )
            return {"queued": True, "later": len(later_failed)}
        found = await self._fetch(
            "SELECT d.affiliate_id, d.conversion_id, d.event, d.state,"
            " a.postback_disabled_at AS disabled_at,"
            " d.lease_until IS NOT NULL AND d.lease_until >= ? AS in_flight,"
            f" (SELECT min(e.id) {later.format(d='d')}) AS later_id"
            " FROM deliveries AS d JOIN affiliates AS a ON a.id = d.affiliate_id WHERE d.id = ?",
            now,
            now,
            delivery_id,
        )
        if not found:
            return None
        row = {**found[0], "queued": False, "later_event": None}
        if row["later_id"] is not None:
            event = await self._fetch("SELECT event FROM deliveries WHERE id = ?", row["later_id"])
            row["later_event"] = event[0]["event"] if event else None
        return row

    async def cancel_delivery(self, delivery_id: int, lease: int, now: int) -> bool:
        """Cancels a delivery this sender holds the lease of (its affiliate no longer
        takes its event); False when the lease ran out."""
        rows = await self._fetch(
            "UPDATE deliveries SET state = 'cancelled', lease_until = NULL, updated_at = ? "
            "WHERE id = ? AND lease_until = ? RETURNING id",
            now,
            delivery_id,
            lease,
        )
        return bool(rows)

    async def delivery_with_attempts(
        self, delivery_id: int
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """A delivery and its attempts; an attempt and the delivery's new state commit
        together, and are read together."""
        return await self._row_with_children(
            "deliveries", delivery_id, "delivery_attempts", "delivery_id"
        )

    async def offer_postbacks(
        self, offer_id: int | None = None, affiliate_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Per-offer postback overrides: an offer's, an affiliate's, or one (both given)."""
        where = [
            (c, v)
            for c, v in (("offer_id", offer_id), ("affiliate_id", affiliate_id))
            if v is not None
        ]
        sql = "SELECT * FROM offer_postbacks"
        if where:
            sql += " WHERE " + " AND ".join(f"{c} = ?" for c, _ in where)
        return await self._fetch(sql + " ORDER BY offer_id, affiliate_id", *(v for _, v in where))

    async def delete_offer_postback(self, offer_id: int, affiliate_id: int) -> bool:
        """Removes an override (the affiliate's own postback applies again); False when
        there was none."""
        found = await self._write(
            "DELETE FROM offer_postbacks WHERE offer_id = ? AND affiliate_id = ? "
            "RETURNING offer_id",
            offer_id,
            affiliate_id,
            bump=True,
        )
        return found is not None

    async def set_offer_postback(
        self, offer_id: int, affiliate_id: int, url: str, method: str, events: str, now: int
    ) -> None:
        await self._write_all(
            [
                (
                    "INSERT INTO offer_postbacks (offer_id, affiliate_id, postback_url, "
                    "postback_method, postback_events, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (offer_id, affiliate_id) DO UPDATE SET postback_url = excluded."
                    "postback_url, postback_method = excluded.postback_method, postback_events = "
                    "excluded.postback_events, updated_at = excluded.updated_at",
                    (offer_id, affiliate_id, url, method, events, now, now),
                )
            ],
            bump=True,
            check=False,
        )
