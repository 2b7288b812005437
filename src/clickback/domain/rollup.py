"""The rollup job: folds new clicks, conversions, status changes and late exchange rates
into the hourly report tables, in the background of `clickback serve`.

The hot paths only insert raw rows, as before. Every `interval` seconds one process
(the holder of a lease row; any other node takes over when a lease lapses) reads what
is new after its watermarks, enriches it (`domain.enrich`), and applies the sums in one
transaction that also moves the watermarks, and only if they are still where it read
them (so a job whose lease lapsed mid-tick changes nothing). What moves them:

- clicks by RefID (time-ordered), up to `settle` seconds ago and, in `clickback serve`,
  no further than the fraud screening has flagged them (it takes clicks two seconds
  old, every `jobs_poll_seconds`): a write batch commits within milliseconds, so a click
  is in the reports, with its flags, about `settle + interval` (3 s by default) and at
  most about 4 s after it was made, within the 5 s promised;
- conversions and status changes (`conversion_events`) by id, at once; an id skipped
  over (a PostgreSQL batch of another process still committing it, or one that never
  will) is kept as a gap and re-checked each tick for ten minutes;
- a conversion valued by a late exchange rate: found through its `report_facts` row,
  which records what the rollups hold of it.

While passes keep filling their batch with clicks or conversions (a backlog: they come
faster than a pass takes them), what they fold (clicks, conversions, status changes) is
held in memory for up to `coalesce` seconds (and up to HELD_PASSES batches of
conversions) and applied together: a rollup key that comes again meanwhile (the same
link, sub-IDs, country, device and hour) is then written once, not once a pass, and the
report file is committed once. What is held is not yet under the watermarks, so a crash
loses nothing (the next job reads it again); a pass that fills its batch with neither
applies what is held at once, so an idle job holds nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from clickback.domain import pacing
from clickback.domain.commission import revenue, revenue_terms
from clickback.domain.enrich import Enricher, visitor_key
from clickback.domain.fraud import fraud_flags
from clickback.domain.pacing import USUAL_SETTLE_US
from clickback.domain.refid import floor
from clickback.domain.rollup_delta import (
    CLICK_READ,
    FACT_COLUMNS,
    Delta,
    Fact,
    Mark,
)
from clickback.memory import give_back

log = logging.getLogger("clickback.rollup")

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
GAP_TTL_US = 600_000_000
MAX_GAP_SCAN = 100_000
REVALUE_US = 60_000_000  # late rates are looked for when rates change, and this often
NO_CAP = "~"  # sorts after every RefID (URL-safe characters)
# rollup keys held at most before they are applied: about half a second of clicks from
# new visitors at full load. 50,000 kept a click worker 25-40 MB larger (RSS 168-184 MB
# against 143-155 after the hot-path runs), for the same CPU a click within the noise
# and a catch-up after a burst of 2.7-4.3 s against 3.2-4.5 (docs/performance-log.md)
HELD_KEYS = 15_000
HELD_PASSES = 4  # batches of conversions held at most
# an apply of this many keys or more hands its memory back after (chosen, not tuned: a
# third of HELD_KEYS, so that a backlog's applies do and a keeping-up job's small ones not)
GIVE_BACK_KEYS = 5_000


_CLICK_REFID, _CLICK_OFFER, _CLICK_AT = map(CLICK_READ.index, ("refid", "offer_id", "created_at"))


@dataclass(slots=True)
class Held:
    """What passes of a backlog folded but did not apply yet (`RollupJob.coalesce`): the
    stored watermarks they follow, how far they read, since when, and their sums."""

    base: Mark
    mark: Mark
    since: float
    delta: Delta


class RollupStore(Protocol):
    def unavailable(self, exc: BaseException) -> bool: ...
    def damaged(self, exc: BaseException) -> str: ...
    @property
    def click_settle_us(self) -> int:
        """How long after its RefID was stamped a click may still commit: how old the
        job lets clicks be before it passes them, unless told (`settle`)."""
        ...

    async def rollup_claim(self, owner: str, now_us: int, lease_us: int) -> Mark | None: ...
    async def rollup_release(self, owner: str) -> None: ...
    async def rollup_clicks(
        self, after: str, before: str, limit: int, through: str = NO_CAP
    ) -> list[tuple[Any, ...]]:
        """Clicks after `after`, before `before` and through `through`, in RefID order,
        each a tuple of the `CLICK_READ` columns."""
        ...

    async def job_watermark(self, name: str) -> str: ...
    async def rollup_conversions(
        self, after: int, limit: int, ids: Sequence[int] = ()
    ) -> list[dict[str, Any]]: ...
    async def rollup_events(
        self, after: int, limit: int, ids: Sequence[int] = ()
    ) -> list[dict[str, Any]]: ...
    async def rollup_gaps(self, limit: int) -> list[dict[str, Any]]: ...
    async def rollup_facts(self, ids: Sequence[int]) -> list[dict[str, Any]]: ...
    async def rollup_unvalued(self, limit: int) -> list[dict[str, Any]]: ...
    async def rollup_known_visitors(
        self, keys: Sequence[tuple[int, int, int]]
    ) -> set[tuple[int, int, int]]: ...
    async def rollup_offers(self) -> dict[int, dict[str, Any]]: ...
    async def config_version(self) -> int: ...
    async def rollup_apply(self, owner: str, old: Mark, new: Mark, delta: Delta) -> bool: ...


class RollupJob:
    def __init__(
        self,
        store: RollupStore,
        enricher: Enricher | None = None,
        *,
        mmdb_path: str = "",
        interval: float = 1.0,
        settle: float | None = None,
        batch: int = 1000,
        share: float = 1.0,
        max_lag: float = 0.0,
        coalesce: float = 0.0,
        busy: Callable[[], bool] | None = None,
        lease: float = 15.0,
        clock: Any = None,
        after_screening: bool = False,
        base_currency: str = "USD",
    ):
        # with the fraud screening running, clicks wait for it (its watermark) so that
        # they are rolled up with their flags
        self.store = store
        self.enricher = enricher
        self.mmdb_path = mmdb_path
        self.interval = interval
        # clicks are passed by RefID: not before the store may still commit one (None:
        # as long as the store says it may take)
        self.settle_us = store.click_settle_us if settle is None else int(settle * 1_000_000)
        self.waited_us = max(0, self.settle_us - USUAL_SETTLE_US)  # not "behind" (pacing)
        self.batch = batch
        self.share = share
        self.max_lag_us = int(max_lag * 1_000_000)
        self.coalesce = coalesce  # seconds a backlog's passes may be held (module doc)
        self.max_held = max(batch, HELD_KEYS)
        self._held: Held | None = None
        self._applied = 0  # keys the last tick applied
        self.busy = busy  # whether requests are being answered (None: assume so)
        self.clicks_mark = ""  # the newest click rolled up, once a tick has run
        self.behind_us = 0  # after a tick: how old the backlog it left is
        self.rested = 0.0  # seconds rested between batches, in all
        self.lease_us = int(lease * 1_000_000)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._now = clock or (lambda: time.time_ns() // 1000)
        self.after_screening = after_screening
        self.base_currency = base_currency
        self._offers: dict[int, dict[str, Any]] = {}  # advertiser and revenue terms
        self._offers_version = -1
        self._version, self._valued_at = -1, 0
        self._look_again = False  # after the next apply (`_valuations`)
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one tick at a time, whoever calls

    # -- running --------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stops the job if it runs, and hands its lease back (one taken by `catch_up`
        too, as `clickback rollup` does), so that another process takes over at once."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.store.rollup_release(self.owner)

    async def _run(self) -> None:
        while True:
            try:
                await self.catch_up(share=self.share)
            except Exception as exc:
                pacing.say_failed(log, self.store, "rollup tick", exc)
            await asyncio.sleep(self.interval)

    async def catch_up(self, max_ticks: int = 1000, share: float = 1.0) -> int:
        """Ticks until nothing is left (or `max_ticks`); the rows folded in. With `share`
        below 1 it rests between batches so that it takes at most that share of the
        event loop, unless it is more than `max_lag` behind or no request is being
        answered (`domain.pacing`)."""
        total = 0
        for _ in range(max_ticks):
            started = time.monotonic()
            done, full = await self.tick()
            total += done
            if not full:
                break
            worked = time.monotonic() - started
            busy = self.busy is None or self.busy()
            pause = pacing.rest(worked, share, self.behind_us, self.max_lag_us, busy)
            self.rested += pause
            await asyncio.sleep(pause)  # let requests in between batches
        return total

    async def _enricher(self) -> Enricher:
        if self.enricher is None:
            self.enricher = await asyncio.to_thread(shared_enricher, self.mmdb_path)
        return self.enricher

    # -- one tick -------------------------------------------------------------------

    async def tick(self) -> tuple[int, bool]:
        """One batch of each kind: (rows folded in, whether a batch was full)."""
        async with self._lock:
            self._applied = 0
            try:
                done = await self._tick()
            except BaseException:
                self._held = None  # what it held is read again from the watermark
                self._look_next_tick()  # and the late values it held
                raise
            if self._applied >= GIVE_BACK_KEYS:
                # what a backlog's passes held is freed now: hand it back (in a thread:
                # glibc walks its heaps), or the worker stays as large as the burst made it
                await asyncio.to_thread(give_back)
            return done

    async def _tick(self) -> tuple[int, bool]:
        store = self.store
        enricher = await self._enricher()
        now = self._now()
        mark = await store.rollup_claim(self.owner, now, self.lease_us)
        if mark is None:
            return 0, False  # another process holds the lease
        before = floor(max(0, now - self.settle_us) // 1000)
        through = await store.job_watermark("screening") if self.after_screening else NO_CAP
        held = self._holding(mark)
        delta, at = held.delta, held.mark
        clicks = await store.rollup_clicks(at.clicks_after, before, self.batch, through)
        await self._fold_clicks(clicks, held, enricher)
        # on SQLite nothing above yielded (its reads are synchronous): let the requests
        # that queued meanwhile in, so that a tick stops the event loop in short steps
        await asyncio.sleep(0)
        late = await self._late(delta, now)
        conversions = await store.rollup_conversions(at.conversions_after, self.batch)
        found = await store.rollup_conversions(0, len(late["conversion"]), late["conversion"])
        conversions_after = self._gaps(
            "conversion", at.conversions_after, conversions, found, late, delta, now
        )
        offers = await self._offers_of({r["offer_id"] for r in found + conversions})
        for row in found + conversions:
            fact = fact_from_row(row, enricher)
            if fact is not None:
                self._value_revenue(fact, row["revenue_terms"], offers.get(fact.offer_id))
                delta.facts[fact.conversion_id] = fact
                delta.contribute(fact, 1)
        events = await store.rollup_events(at.events_after, self.batch)
        found_events = await store.rollup_events(0, len(late["event"]), late["event"])
        events_after = self._gaps("event", at.events_after, events, found_events, late, delta, now)
        await self._fold_events(sorted(found_events + events, key=lambda e: e["id"]), delta)
        unvalued = await self._valuations(now, delta)
        await self._fold_valuations(unvalued, delta)
        last = clicks[-1][_CLICK_REFID] if clicks else at.clicks_after
        new = Mark(last, conversions_after, events_after, mark.applied)
        held.mark = new
        self.behind_us = pacing.behind_us(
            now,
            self.batch,
            pacing.newest(clicks, _CLICK_AT, self.waited_us),
            pacing.newest(conversions),
        )
        done = len(clicks) + len(conversions) + len(events) + len(found) + len(found_events)
        full = max(len(clicks), len(conversions), len(events), len(unvalued)) >= self.batch
        # held while clicks or conversions back up (late values are read from what is
        # stored, so the same again until applied: a full batch of them is applied)
        backlog = len(clicks) >= self.batch or len(conversions) >= self.batch
        if backlog and len(unvalued) < self.batch and self._keep(held):
            return done + len(unvalued), full
        self._held = None
        self._applied = len(delta.clicks) + len(delta.conversions)
        changed = new != mark or not delta.empty()
        if changed and not await store.rollup_apply(self.owner, mark, new, delta):
            log.warning("rollup watermarks moved under this job; its batch is dropped")
            self._look_next_tick()
            return 0, False
        if self._look_again:
            self._look_again = False
            self._look_next_tick()
        self.clicks_mark = new.clicks_after
        return done + len(unvalued), full

    def _holding(self, base: Mark) -> Held:
        """What passes of a backlog hold since the watermarks `base`; nothing if they
        moved meanwhile, or another process applied meanwhile without moving them (late
        values or gaps it found, which what is held may hold too: counted twice else)."""
        held = self._held
        if held is None or held.base != base:
            if held is not None:
                log.warning(
                    "rollup watermarks moved or rollups applied meanwhile; what it held is dropped"
                )
                self._look_next_tick()
            held = self._held = Held(base, base, time.monotonic(), Delta())
        return held

    def _keep(self, held: Held) -> bool:
        """Whether a pass full of clicks or conversions holds on to what it folded
        (module doc): for up to `coalesce` seconds, up to `max_held` keys, and up to
        HELD_PASSES batches of conversions. Each conversion is a row of its own
        (`report_facts`) and some at the sub-ID levels however many are held, so
        holding them saves less than holding clicks: what it saves is the report file's
        commits, each writing the pages a few rows dirtied (a conversion's rollup 124 ->
        94 us of CPU measured, docs/performance.md). Held without a
        cap of passes, a second of them in one apply once stopped the event loop for a
        quarter of a second (postback p99 70 -> 263 ms, before the apply's rows were
        made in a thread)."""
        delta = held.delta
        return (
            time.monotonic() - held.since < self.coalesce
            and len(delta.clicks) + len(delta.conversions) < self.max_held
            and len(delta.facts) < HELD_PASSES * self.batch
        )

    async def _fold_clicks(
        self, clicks: list[tuple[Any, ...]], held: Held, enricher: Enricher
    ) -> None:
        delta = held.delta
        rows = []
        for c in clicks:
            _, link_id, _, _, _, _, _, _, _, ip, user_agent, created_at, is_test, _ = c
            if is_test:
                continue
            agent = enricher.agent(user_agent)
            visitor = (
                None if agent.bot else (created_at // DAY_US, link_id, visitor_key(ip, user_agent))
            )
            rows.append((c, agent, visitor))
        candidates = sorted({v for _, _, v in rows if v is not None})
        known = await self.store.rollup_known_visitors(candidates) if candidates else set()
        known |= delta.visitors.intersection(candidates)  # held, so not stored yet
        offers = await self._offers_of({c[_CLICK_OFFER] for c, _, _ in rows})
        for c, agent, visitor in rows:
            _, link_id, offer_id, affiliate_id, s1, s2, s3, s4, s5, ip, _, at, _, flags = c
            unique = visitor is not None and visitor not in known
            if unique:
                assert visitor is not None
                known.add(visitor)
                delta.visitors.add(visitor)
            key = (
                at // HOUR_US,
                link_id,
                s1,
                s2,
                s3,
                s4,
                s5,
                enricher.country(ip),
                agent.device,
                agent.os,
                agent.browser,
                fraud_flags(flags),
                offer_id,
                affiliate_id,
                offers.get(offer_id, {}).get("advertiser_id", 0),
            )
            sums = delta.clicks.setdefault(key, [0, 0, 0])
            sums[0] += 1
            sums[1] += int(unique)
            sums[2] += int(agent.bot)
        if clicks:
            delta.prune_before_day = clicks[-1][_CLICK_AT] // DAY_US - 1

    async def _offers_of(self, ids: set[int]) -> dict[int, dict[str, Any]]:
        """Each offer's advertiser and revenue terms, read again when an offer is new
        to the job or the configuration changed."""
        if not ids:
            return self._offers
        version = await self.store.config_version()
        if not ids.issubset(self._offers) or version != self._offers_version:
            self._offers, self._offers_version = await self.store.rollup_offers(), version
        return self._offers

    def _value_revenue(self, fact: Fact, terms: str | None, offer: dict[str, Any] | None) -> None:
        """The fact's revenue under the revenue terms its conversion kept from when it was
        recorded (0 until the conversion is valued, as its sale and commission). Migration
        27 gave the conversions from before they were kept their offer's terms; one with
        none (`terms` None: written by a node of an earlier version during an upgrade)
        is valued under its offer's terms of now."""
        if terms is None:
            terms = (
                revenue_terms(
                    offer["revenue_type"], offer["revenue_amount"], offer["revenue_percent"]
                )
                if offer is not None
                else ""
            )
        fact.has_revenue = int(terms != "")
        fact.revenue = revenue(terms, fact.sale, self.base_currency) if fact.valued else 0

    async def _late(self, delta: Delta, now: int) -> dict[str, list[int]]:
        """The skipped ids to look for this tick, by kind: the stored ones `rollup_gaps`
        reads, and the newest of those that passes held noted (not stored yet). One
        older than GAP_TTL_US is looked for a last time and given up."""
        stored = [
            (g["kind"], g["id"], g["noted_at"]) for g in await self.store.rollup_gaps(self.batch)
        ]
        held = sorted(delta.gaps_add, key=lambda g: g[1], reverse=True)
        late: dict[str, list[int]] = {"conversion": [], "event": []}
        done = set(delta.gaps_drop)  # by passes held: still stored, but done with
        for kind, gap_id, noted_at in (
            stored
            + [g for g in held if g[0] == "conversion"][: self.batch]
            + [g for g in held if g[0] == "event"][: self.batch]
        ):
            if (kind, gap_id) in done:
                continue
            done.add((kind, gap_id))
            late[kind].append(gap_id)
            if noted_at < now - GAP_TTL_US:
                delta.gaps_drop.append((kind, gap_id))
        return late

    def _gaps(
        self,
        kind: str,
        after: int,
        rows: list[dict[str, Any]],
        found: list[dict[str, Any]],
        late: dict[str, list[int]],
        delta: Delta,
        now: int,
    ) -> int:
        """Notes the ids skipped over by a batch, drops the gaps that filled; the new mark."""
        for row in found:
            delta.gaps_drop.append((kind, row["id"]))
        if not rows:
            return after
        seen = {r["id"] for r in rows}
        pending = set(late[kind])
        if rows[-1]["id"] - after > MAX_GAP_SCAN:
            return int(rows[-1]["id"])  # ids jumped (a restored sequence): nothing to wait for
        for missing in range(after + 1, rows[-1]["id"]):
            if missing not in seen and missing not in pending:
                delta.gaps_add.append((kind, missing, now))
        return int(rows[-1]["id"])

    async def _fold_events(self, events: list[dict[str, Any]], delta: Delta) -> None:
        wanted = sorted({e["conversion_id"] for e in events} - set(delta.facts))
        for row in await self.store.rollup_facts(wanted) if wanted else []:
            delta.facts[row["conversion_id"]] = Fact(**{c: row[c] for c in FACT_COLUMNS})
        for e in events:
            fact = delta.facts.get(e["conversion_id"])
            if fact is None:
                continue  # test traffic, never rolled up
            # a change moves the conversion to the status and flags it has when read, not
            # by the change's own from and to: changes found late (an id committed after
            # a higher one) then land right whatever order they are read in
            status = e["status"]
            flags = fraud_flags(e["flags"])
            if status == fact.status and flags == fact.flags:
                continue
            delta.contribute(fact, -1)
            fact.status, fact.flags = status, flags
            delta.contribute(fact, 1)

    def _look_next_tick(self) -> None:
        """The next tick looks for late values whatever the version (`_valuations`): the
        ones folded into a delta that was dropped, or not stored when last looked."""
        self._valued_at = 0

    async def _valuations(self, now: int, delta: Delta) -> list[dict[str, Any]]:
        """Conversions rolled up without a base value that have one now: looked for when
        the config version (bumped by every rate import) changes, and every minute.
        What is looked at is what is stored: conversions folded without a value into
        `delta` (this pass, and passes held) are not, and a rate may have come since
        they were read; so a look at a new version while such are in `delta` is made
        again after `delta` is applied (else they wait for the minute's look). Applies
        that fail, and held passes dropped, are looked after again too."""
        version = await self.store.config_version()
        if version == self._version and now - self._valued_at < REVALUE_US:
            return []
        rows = await self.store.rollup_unvalued(self.batch)
        if len(rows) < self.batch:
            if version != self._version and any(not f.valued for f in delta.facts.values()):
                self._look_again = True
            self._version, self._valued_at = version, now
        return rows

    async def _fold_valuations(self, rows: list[dict[str, Any]], delta: Delta) -> None:
        offers = await self._offers_of({r["offer_id"] for r in rows})
        for row in rows:
            fact = delta.facts.get(row["conversion_id"])
            if fact is None:
                fact = Fact(**{c: row[c] for c in FACT_COLUMNS})
                delta.facts[fact.conversion_id] = fact
            if fact.valued:
                continue
            delta.contribute(fact, -1)
            fact.valued, fact.sale, fact.commission = 1, row["base_amount"], row["base_commission"]
            self._value_revenue(fact, row["revenue_terms"], offers.get(fact.offer_id))
            delta.contribute(fact, 1)


def fact_from_row(c: dict[str, Any], enricher: Enricher) -> Fact | None:
    """A new conversion's fact; None for test traffic, which reports leave out."""
    if c["is_test"]:
        return None
    if c["ip"] is None:  # its click row is not stored: the postback's geo stands in
        geo = (c["geo"] or "").upper()
        country, device, os_name, browser = (geo if len(geo) == 2 else ""), "", "", ""
    else:
        agent = enricher.agent(c["user_agent"])
        country, device, os_name, browser = (
            enricher.country(c["ip"]),
            agent.device,
            agent.os,
            agent.browser,
        )
    valued = c["base_amount"] is not None and c["base_commission"] is not None
    return Fact(
        conversion_id=c["id"],
        status=c["status"],
        valued=int(valued),
        sale=c["base_amount"] if valued else 0,
        commission=c["base_commission"] if valued else 0,
        click_hour=c["clicked_at"] // HOUR_US,
        conversion_hour=c["created_at"] // HOUR_US,
        link_id=c["link_id"],
        sub1=c["sub1"],
        sub2=c["sub2"],
        sub3=c["sub3"],
        sub4=c["sub4"],
        sub5=c["sub5"],
        country=country,
        device=device,
        os=os_name,
        browser=browser,
        flags=fraud_flags(c["flags"]),
        offer_id=c["offer_id"],
        affiliate_id=c["affiliate_id"],
        advertiser_id=c["advertiser_id"],
    )


_ENRICHERS: dict[str, Enricher] = {}


def shared_enricher(mmdb_path: str = "") -> Enricher:
    """One Enricher per data source and process: loading the data takes a moment."""
    if mmdb_path not in _ENRICHERS:
        _ENRICHERS[mmdb_path] = Enricher(mmdb_path)
    return _ENRICHERS[mmdb_path]
