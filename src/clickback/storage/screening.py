"""SQL for the background jobs: a lease so one process runs a job at a time, the fraud
screening of clicks and conversions, and the affiliates' daily caps it screens by.
Mixed into `SqlStore`."""

from __future__ import annotations

from typing import Any

from clickback.domain.ports import Screening
from clickback.storage.primitives import SqlPrimitives, Steps, padded_chunks

# every process's cache reloads (the caps reached are part of what it holds)
_BUMP = (
    "UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'config_version'"
)
_HOLDER = "UPDATE jobs SET owner = owner WHERE name = 'screening' AND owner = ? RETURNING name"
_REACH = (
    "INSERT INTO caps_reached (day, offer_id, affiliate_id, reached_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (day, offer_id, affiliate_id) DO NOTHING"
)

# this screening's own update of the conversion took (same time and status)
_TOOK = "SELECT 1 FROM conversions WHERE id = ? AND updated_at = ? AND status = ?"


class ScreeningSql(SqlPrimitives):
    async def acquire_job(self, name: str, owner: str, now: int, lease_until: int) -> str | None:
        """The job's watermark when this owner holds (or just took) its lease; None when
        another owner's lease is still running."""
        rows = await self._fetch(
            "INSERT INTO jobs (name, watermark, lease_until, owner) VALUES (?, '', ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET lease_until = excluded.lease_until, "
            "owner = excluded.owner WHERE jobs.lease_until < ? OR jobs.owner = excluded.owner "
            "RETURNING watermark",
            name,
            lease_until,
            owner,
            now,
        )
        return str(rows[0]["watermark"]) if rows else None

    async def job_watermark(self, name: str) -> str:
        """Where the job has got to ('' before its first pass)."""
        rows = await self._fetch("SELECT watermark FROM jobs WHERE name = ?", name)
        return str(rows[0]["watermark"]) if rows else ""

    async def clicks_after(self, refid: str, below: str, limit: int) -> list[dict[str, Any]]:
        """Clicks with RefIDs after `refid` and before `below`, in RefID order."""
        return await self._fetch(
            "SELECT refid, link_id, ip, user_agent, created_at FROM clicks "
            "WHERE refid > ? AND refid < ? ORDER BY refid LIMIT ?",
            refid,
            below,
            limit,
        )

    async def screened_clicks(self, after: str, through: str, limit: int) -> list[tuple[Any, ...]]:
        """(refid, link_id, ip, created_at) of the clicks with RefIDs after `after` and at or
        before `through`, in RefID order: the screened clicks of a window, counted again."""
        return await self._fetch_tuples(
            "SELECT refid, link_id, ip, created_at FROM clicks "
            "WHERE refid > ? AND refid <= ? ORDER BY refid LIMIT ?",
            after,
            through,
            limit,
        )

    async def screened_conversions(self, before: int, limit: int) -> list[tuple[Any, ...]]:
        """(id, the click's IP ('' if its click is not stored), created_at, offer_id,
        affiliate_id, is_test, status, flags, recorded_at) of screened conversions with ids
        below `before`, newest first: the screened conversions of a window, counted again
        (read back from the newest, by id, as no index is kept on their time)."""
        return await self._fetch_tuples(
            "SELECT c.id, coalesce(k.ip, ''), c.created_at, c.offer_id, c.affiliate_id, "
            "c.is_test, c.status, c.flags, coalesce(c.recorded_at, c.created_at) "
            "FROM conversions AS c LEFT JOIN clicks AS k ON k.refid = c.refid "
            "WHERE c.screened = 1 AND c.id < ? ORDER BY c.id DESC LIMIT ?",
            before,
            limit,
        )

    async def newest_conversion_event(self) -> int:
        """The id of the newest conversion event (0 for none)."""
        rows = await self._fetch_tuples("SELECT coalesce(max(id), 0) FROM conversion_events")
        return int(rows[0][0])

    async def decisions_after(self, after: int, since: int) -> tuple[int, bool]:
        """(the newest conversion event's id, whether an event after `after` made by
        anyone but the screening, on a conversion that is not an integration test's,
        recorded at or after `since`, moved a screened one into or out of `rejected`, or
        decided one not screened yet): a decision by hand that changes what the daily caps
        count, or that came while the screening had the conversion in hand (its screening
        then did not take, and the conversion is screened again). Reads the events by
        their key."""
        rows = await self._fetch_tuples(
            "SELECT coalesce(max(e.id), ?), coalesce(max(CASE WHEN e.actor <> "
            "'fraud_screening' AND c.is_test = 0 AND c.created_at >= ? AND (c.screened = 0 "
            "OR e.from_status = 'rejected' OR e.to_status = 'rejected') THEN 1 ELSE 0 END), 0) "
            "FROM conversion_events AS e JOIN conversions AS c ON c.id = e.conversion_id "
            "WHERE e.id > ?",
            after,
            since,
            after,
        )
        newest, moved = rows[0]
        return int(newest), bool(moved)

    async def flag_clicks(self, flagged: list[tuple[str, str]], owner: str, watermark: str) -> bool:
        """Sets (flags, refid) pairs and moves the screening's watermark, in one
        transaction, if `owner` still holds the job (its row is locked meanwhile, so the
        lease cannot pass to another process half way); False, and nothing done, if not."""
        guard = (
            "UPDATE jobs SET watermark = ? WHERE name = 'screening' AND owner = ? RETURNING name",
            (watermark, owner),
        )
        steps = [("UPDATE clicks SET flags = ? WHERE refid = ?", flagged)]
        return await self._guarded_many(guard, steps) is not None

    async def unscreened_conversions(self, through: str, limit: int) -> list[dict[str, Any]]:
        """Unscreened conversions whose RefIDs (so their clicks) come at or before
        `through`, oldest first: what the screening reads of them (not every column: a
        row of each is made per conversion, on the event loop)."""
        return await self._fetch(
            "SELECT c.id, c.flags, c.status, c.offer_id, c.affiliate_id, c.is_test, "
            "c.created_at, c.clicked_at, c.geo, "
            "k.flags AS click_flags, k.ip AS click_ip, o.fraud_rules, o.daily_cap, "
            "ac.daily_cap AS affiliate_daily_cap, "
            "(k.refid IS NOT NULL) AS has_click, EXISTS (SELECT 1 FROM conversion_events AS e "
            "WHERE e.conversion_id = c.id) AS changed FROM conversions AS c "
            "JOIN offers AS o ON o.id = c.offer_id LEFT JOIN clicks AS k ON k.refid = c.refid "
            "LEFT JOIN affiliate_caps AS ac "
            "ON ac.offer_id = c.offer_id AND ac.affiliate_id = c.affiliate_id "
            "WHERE c.screened = 0 AND c.refid <= ? ORDER BY c.id LIMIT ?",
            through,
            limit,
        )

    async def screen_conversions(self, screenings: list[Screening], owner: str, now: int) -> bool:
        """Stores screenings in one transaction, if `owner` still holds the screening's
        lease (as `flag_clicks`: a process that lost it keeps its counts to itself, and the
        holder, which may have counted again from the store already, screens them); False,
        and nothing done, if not. Flags, the status the offer's rules give
        (with an audit event), and outbound postbacks brought in line. Each kind of
        statement runs once over all its rows (`executemany`: one round trip on
        PostgreSQL, where a statement per row cost a round trip each); a conversion's own
        statements still run in their order (its update before its event and deliveries,
        which check that the update took), and conversions do not touch each other's
        rows."""
        if not screenings:
            return True
        steps: Steps = []
        # most conversions carry no flag and keep their status: one statement marks them
        plain = [
            s.conversion_id for s in screenings if not s.flags and s.to_status == s.from_status
        ]
        for chunk in padded_chunks(plain, 512):
            marks = ", ".join("?" * len(chunk))
            steps.append(
                (
                    f"UPDATE conversions SET screened = 1 WHERE id IN ({marks}) AND screened = 0",
                    [tuple(chunk)],
                )
            )
        updates: list[tuple[Any, ...]] = []
        events: list[tuple[Any, ...]] = []
        cancels: list[tuple[Any, ...]] = []
        restated: list[tuple[Any, ...]] = []
        deliveries: list[tuple[Any, ...]] = []
        for s in screenings:
            if not s.flags and s.to_status == s.from_status:
                continue
            # guarded: a conversion screened elsewhere meanwhile, or changed by hand, is
            # left as it is, and nothing follows from this screening of it
            updates.append((s.flags, s.to_status, now, s.conversion_id, s.from_status))
            # an event for every flagged screening, its status changed or not: the audit
            # trail, and what tells the rollups to move the conversion to its flags
            took = (s.conversion_id, now, s.to_status)
            events.append((s.conversion_id, s.from_status, s.to_status, s.reason, now, *took))
            if s.to_status == s.from_status:
                continue
            if s.to_status == "rejected":
                # a conversion rejected on screening is not posted back at all: nothing of
                # it went out yet (a delivery waits for its conversion's screening), and
                # what was queued (its conversion, an approval made by hand) is cancelled
                cancels.append((now, s.conversion_id, *took))
            else:
                # the conversion postback waited for this screening: it tells the status
                # the screening gave (an automatic approval held back says `pending`)
                restated.append((s.to_status, now, s.conversion_id, *took))
            if s.delivery:
                deliveries.append(
                    (s.to_status, s.delivery, now, now, now, s.to_status, s.conversion_id, *took)
                )
        steps += [
            (
                "UPDATE conversions SET flags = ?, status = ?, screened = 1, updated_at = ? "
                "WHERE id = ? AND screened = 0 AND status = ?",
                updates,
            ),
            (
                "INSERT INTO conversion_events (conversion_id, from_status, to_status, reason, "
                "actor, created_at) SELECT ?, ?, ?, ?, 'fraud_screening', ? "
                f"WHERE EXISTS ({_TOOK})",
                events,
            ),
            (
                "UPDATE deliveries SET state = 'cancelled', updated_at = ? WHERE "
                "conversion_id = ? "
                f"AND state IN ('queued', 'held') AND EXISTS ({_TOOK})",
                cancels,
            ),
            (
                "UPDATE deliveries SET conversion_status = ?, updated_at = ? WHERE "
                "conversion_id = ? AND event = 'conversion' AND conversion_status IS NOT NULL "
                f"AND EXISTS ({_TOOK})",
                restated,
            ),
            (
                "INSERT INTO deliveries (conversion_id, affiliate_id, offer_id, event, "
                "state, next_at, created_at, updated_at, conversion_status) "
                "SELECT id, affiliate_id, offer_id, ?, ?, ?, ?, ?, ? "
                f"FROM conversions WHERE id = ? AND EXISTS ({_TOOK})",
                deliveries,
            ),
        ]
        guard = (
            "UPDATE jobs SET owner = owner WHERE name = 'screening' AND owner = ? RETURNING name",
            (owner,),
        )
        return await self._guarded_many(guard, steps) is not None

    async def affiliate_caps(
        self, offer_id: int, affiliate_id: int | None = None
    ) -> list[dict[str, Any]]:
        """An offer's per-affiliate daily caps, by affiliate (or the one affiliate's)."""
        sql, args = "SELECT * FROM affiliate_caps WHERE offer_id = ?", [offer_id]
        if affiliate_id is not None:
            sql, args = sql + " AND affiliate_id = ?", [offer_id, affiliate_id]
        return await self._fetch(sql + " ORDER BY affiliate_id", *args)

    async def set_affiliate_cap(self, offer_id: int, affiliate_id: int, cap: int, now: int) -> None:
        await self._write(
            "INSERT INTO affiliate_caps (offer_id, affiliate_id, daily_cap, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (offer_id, affiliate_id) DO UPDATE "
            "SET daily_cap = excluded.daily_cap, updated_at = excluded.updated_at",
            offer_id,
            affiliate_id,
            cap,
            now,
            now,
            bump=True,  # the caps reached are matched to it (`Screener`), and caches reload
        )

    async def delete_affiliate_cap(self, offer_id: int, affiliate_id: int) -> bool:
        """False when there was none."""
        found = await self._write(
            "DELETE FROM affiliate_caps WHERE offer_id = ? AND affiliate_id = ? RETURNING offer_id",
            offer_id,
            affiliate_id,
            bump=True,
        )
        return found is not None

    async def daily_caps(self) -> dict[tuple[int, int], int]:
        """Every daily cap: (offer, 0) the offer's own, (offer, affiliate) an affiliate's."""
        caps = {
            (int(o), 0): int(cap)
            for o, cap in await self._fetch_tuples(
                "SELECT id, daily_cap FROM offers WHERE daily_cap IS NOT NULL"
            )
        }
        for o, a, cap in await self._fetch_tuples(
            "SELECT offer_id, affiliate_id, daily_cap FROM affiliate_caps"
        ):
            caps[(int(o), int(a))] = int(cap)
        return caps

    async def caps_reached(self, from_day: int) -> set[tuple[int, int, int]]:
        """(offer, affiliate or 0, day) of the daily caps reached on `from_day` or since."""
        rows = await self._fetch_tuples(
            "SELECT offer_id, affiliate_id, day FROM caps_reached WHERE day >= ?", from_day
        )
        return {(int(o), int(a), int(d)) for o, a, d in rows}

    async def caps_reached_on(self, offer_id: int, day: int) -> list[tuple[int, int]]:
        """(affiliate or 0, reached_at) of the offer's daily caps reached on `day`."""
        rows = await self._fetch_tuples(
            "SELECT affiliate_id, reached_at FROM caps_reached WHERE day = ? AND offer_id = ?"
            " ORDER BY affiliate_id",
            day,
            offer_id,
        )
        return [(int(a), int(at)) for a, at in rows]

    async def reach_caps(self, reached: list[tuple[int, int, int]], owner: str, now: int) -> bool:
        """Stores (offer, affiliate or 0, day) as caps reached (those stored already stay
        as they are) and bumps the config version, if `owner` holds the screening; False,
        and nothing done, if not."""
        rows = [(day, offer, affiliate, now) for offer, affiliate, day in reached]
        steps: Steps = [(_REACH, rows), (_BUMP, [()])]
        return await self._guarded_many((_HOLDER, (owner,)), steps) is not None

    async def match_caps_reached(
        self, from_day: int, reached: set[tuple[int, int, int]], owner: str, now: int
    ) -> bool:
        """Makes the caps reached stored for `from_day` and since those of `reached` (the
        counts made again), if `owner` holds the screening; whether anything changed."""
        stored = await self.caps_reached(from_day)
        gone, new = stored - reached, reached - stored
        if not gone and not new:
            return False
        steps: Steps = [
            (
                "DELETE FROM caps_reached WHERE day = ? AND offer_id = ? AND affiliate_id = ?",
                [(d, o, a) for o, a, d in gone],
            ),
            (_REACH, [(d, o, a, now) for o, a, d in new]),
            (_BUMP, [()]),
        ]
        return await self._guarded_many((_HOLDER, (owner,)), steps) is not None

    async def date_unrecorded(self) -> None:
        """Pending conversions with no `recorded_at` (written by a node still running the
        code from before migration 20, during a rolling upgrade) are dated by their
        arrival, so that their validation period ends (the pending index finds them)."""
        await self._write(
            "UPDATE conversions SET recorded_at = created_at "
            "WHERE status = 'pending' AND recorded_at IS NULL"
        )

    async def due_for_approval(
        self, now: int, after: tuple[int, int], limit: int
    ) -> list[dict[str, Any]]:
        """Pending conversions (screened, not an integration test's) recorded longer ago
        than their offer's validation period (`auto_approve_days`), the oldest first,
        after `after` (recorded_at, id): id, recorded_at, flags and the period. A
        replayed postback's conversion is recorded at the replay, though it carries the
        original arrival (`created_at`): its period runs from the replay."""
        return await self._fetch(
            "SELECT c.id, c.recorded_at, c.flags, o.auto_approve_days FROM conversions AS c "
            "JOIN offers AS o ON o.id = c.offer_id "
            "WHERE c.status = 'pending' AND c.screened = 1 AND c.is_test = 0 "
            "AND o.auto_approve_days IS NOT NULL "
            "AND c.recorded_at <= ? - o.auto_approve_days * CAST(86400000000 AS BIGINT) "
            "AND (c.recorded_at > ? OR (c.recorded_at = ? AND c.id > ?)) "
            "ORDER BY c.recorded_at, c.id LIMIT ?",
            now,
            after[0],
            after[0],
            after[1],
            limit,
        )
