"""The fraud screening job: one process at a time (a lease in the jobs table) flags new
clicks and screens new conversions, every `poll_seconds`.

Freshness: a conversion is screened within about a second of its commit, a click is
flagged within about three seconds of its creation (it is taken once two seconds old, so
that no click still committing elsewhere slips under the job's watermark; a click that
took longer than that to commit, from a node whose clock is off or an asynchronous
writer that stalled, is not flagged). Outbound conversion postbacks wait for the screening, so an
affiliate never hears of a conversion that the offer's rules reject. The holder of the
job also approves, every minute, the conversions still pending at the end of their
offer's validation period (`lifecycle.approve_due`).

Daily caps reached: the holder stores (offer, affiliate or 0, day) when a count reaches
its cap, and makes what is stored match its counts when they are made again and after
any change of the settings (a cap raised, lowered or removed), bumping the config
version each time: every process's cache then sends the clicks of an offer with
`cap_redirect` to its fallback URL (`domain.catalog`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from clickback.domain import fraud, fx, lifecycle, pacing, refid
from clickback.domain.lifecycle import DeliveryState
from clickback.domain.ports import Screening, Store

log = logging.getLogger("clickback.screening")
RECOUNT_PAGE = 2000  # rows a page of the recount reads (ip, link and time of each)
APPROVAL_EVERY_S = 60.0  # how often the validation periods are looked at
# approvals a time at the most: a backlog (a period just set on an offer's old pending
# conversions) is worked off a minute at a time, not in one stop of the screening
APPROVALS_MOST = 500
# how old stored rates are before the conversions still missing one are valued again:
# every process's cache has them by then (`CLICKBACK_CACHE_CHECK_SECONDS`, 1 s, and the
# batch that was deciding with the rates before)
RATES_SETTLE_US = 10_000_000
DAY_ONE = datetime.date(1970, 1, 1).toordinal()  # days are counted from 1970-01-01


class Screener:
    def __init__(
        self,
        store: Store,
        clicks: fraud.ClickScreen,
        conversions: fraud.ConversionScreen,
        delivery_state: DeliveryState,
        poll_seconds: float = 0.5,
        lease_seconds: float = 10.0,
        batch: int = 250,
        share: float = 1.0,
        max_lag: float = 0.0,
        busy: Callable[[], bool] | None = None,
        base_currency: str | None = None,
        settle: float | None = None,
    ):
        # clicks are taken once this old (None: as long as the store may take to commit
        # one): by then every click stamped before has committed, so none slips under the
        # mark (they are passed by RefID)
        self.settle_us = store.click_settle_us if settle is None else int(settle * 1_000_000)
        self.batch = batch  # rows per pass: a pass holds the event loop, keep it short
        self.share = share
        self.max_lag_us = int(max_lag * 1_000_000)
        self.busy = busy  # whether requests are being answered (None: assume so)
        self.base_currency = base_currency  # None: conversions are not valued late here
        self.rates_seen: int | None = None  # when the rates valued with were stored
        self.clicks_mark = ""  # the newest click flagged, once a pass found some
        self.events_mark = 0  # the newest conversion event when the counts were made
        self.behind_us = 0  # after a pass: how old the backlog it left is
        self.rested = 0.0  # seconds rested between passes, in all
        # until when this process holds the job with its counts as the store has them
        # (its last lease's end, by its clock; 0: counts to be made again first)
        self.held_until = 0
        # the caps reached as stored: matched to the counts from `caps_from_day` (the
        # first day the counts hold whole) at the config version `caps_version`
        self.caps_stored: set[tuple[int, int, int]] = set()
        self.caps_from_day = 0
        self.caps_version = -1
        self._reached: list[tuple[int, int, int]] = []  # newly by this pass's screenings
        self._reaching: set[tuple[int, int, int]] = set()  # to store
        self.store = store
        self.clicks = clicks
        self.conversions = conversions
        self.delivery_state = delivery_state
        self.poll_seconds = poll_seconds
        self.lease_us = int(lease_seconds * 1_000_000)
        self.owner = f"{os.uname().nodename}:{os.getpid()}:{id(self)}"
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> tuple[int, int]:
        """Flags new clicks and screens new conversions; (clicks, conversions) done, or
        (0, 0) when another process holds the job."""
        now = time.time_ns() // 1000
        mark = await self.store.acquire_job("screening", self.owner, now, now + self.lease_us)
        if mark is None:
            self.held_until = 0  # another process screens: what it counts, this one does not
            return 0, 0
        if now > self.held_until:
            # the job was just taken (at start, or from a process that stopped), or this
            # process's lease lapsed since its last pass and another may have screened
            # meanwhile: the counts over the windows are made again from the store
            await self._recount(mark)
            now = time.time_ns() // 1000  # the lease renewed after the recount's while
            again = await self.store.acquire_job("screening", self.owner, now, now + self.lease_us)
            if again != mark:  # the lease passed to another process meanwhile
                return 0, 0
        elif await self._decided_by_hand():
            await self._recount_conversions()
        if await self.store.config_version() != self.caps_version:
            await self._match_caps()  # a cap changed (or anything else did)
        self.held_until = now + self.lease_us
        waited = max(0, self.settle_us - pacing.USUAL_SETTLE_US)  # not "behind" (pacing)
        settled = refid.floor((now - self.settle_us) // 1000)
        batch = self.batch
        rows = await self.store.clicks_after(mark, settled, batch)
        # what a pass counts is kept only once its flags are stored: a pass whose write
        # failed (or that lost the lease) leaves the counts as they were, and the next
        # one counts its rows again, once
        self.clicks.begin()
        try:
            flagged = []
            for i, r in enumerate(rows):
                flags = self._click_flags(r)
                if flags:
                    flagged.append((",".join(flags), r["refid"]))
                if i % 200 == 199:
                    await asyncio.sleep(0)  # a new User-Agent costs a while: let requests in
            # the flags and the watermark move together, and only while this process
            # holds the job: one whose lease lapsed mid-pass writes nothing
            stored = not rows or await self.store.flag_clicks(
                flagged, self.owner, rows[-1]["refid"]
            )
        except BaseException:
            self.clicks.rollback()
            raise
        if not stored:
            self.clicks.rollback()
            log.warning("screening lease lost during a pass; its flags are dropped")
            self.held_until = 0
            return 0, 0
        self.clicks.commit()
        if rows:
            self.clicks.forget_before(rows[-1]["created_at"])
            self.clicks_mark = rows[-1]["refid"]
            await asyncio.sleep(0)  # requests in between the clicks' commit and the next
        # a conversion is screened once its click is flagged (or known to be missing), so
        # that rules on click flags apply to it
        through = rows[-1]["refid"] if len(rows) == batch else settled
        conversions = await self.store.unscreened_conversions(through, batch)
        now = time.time_ns() // 1000
        self.conversions.begin()
        self._reached = []
        try:
            screenings = [self._screen_safely(c) for c in conversions]
            stored = await self.store.screen_conversions(screenings, self.owner, now)
        except BaseException:
            self.conversions.rollback()
            raise
        if not stored:
            self.conversions.rollback()
            log.warning("screening lease lost during a pass; its conversions are left")
            self.held_until = 0
            return len(rows), 0
        self.conversions.commit()
        self._reaching.update(self._reached)
        await self._store_reached(now)
        self.behind_us = pacing.behind_us(
            now, batch, pacing.newest(rows, waited=waited), pacing.newest(conversions)
        )
        return len(rows), len(conversions)

    async def _store_reached(self, now: int) -> None:
        """Stores the caps this pass found reached (kept to try again on the next pass if
        the write fails; dropped if the lease was lost: the next holder counts again)."""
        if not self._reaching:
            return
        reached = sorted(self._reaching)
        if await self.store.reach_caps(reached, self.owner, now):
            self.caps_stored.update(reached)
            log.info("daily caps reached: %s", ", ".join(f"{o}/{a}/{d}" for o, a, d in reached))
        self._reaching.clear()

    async def _match_caps(self) -> None:
        """Makes the caps reached stored for the days the counts hold whole match the
        counts and the caps as they are now."""
        version = await self.store.config_version()
        caps = await self.store.daily_caps()
        from_day = max(self.caps_from_day, self.conversions.newest_day - 1)
        reached = set()
        for key, n in self.conversions.capped.items():
            cap = caps.get((key[0], key[1]))
            if key[2] >= from_day and cap is not None and n >= cap:
                reached.add(key)
        now = time.time_ns() // 1000
        if await self.store.match_caps_reached(from_day, reached, self.owner, now):
            log.info(
                "daily caps reached made to match the counts: %d, from %s (UTC)",
                len(reached),
                datetime.date.fromordinal(DAY_ONE + from_day).isoformat(),
            )
        self.caps_stored = reached
        self.caps_version = version

    async def _recount(self, mark: str) -> None:
        """Counts again, from what is stored, what the screens count over their windows
        (the screened clicks of the minute up to `mark`, the screened conversions of the
        day up to the newest), in the order the screening took them: the flags that
        follow are those of one process that screened everything so far. Read in pages,
        the event loop let go in between (the requests it answers wait meanwhile).

        Not quite: conversions are counted again in id order, where a process running
        throughout took a conversion that waited for its click's screening (one within
        seconds of its click) after later ones, and so keeps it in its day's count for
        as long as it waited (`SlidingCounts` drops events in the order they came). The
        counts differ only within those seconds after its day, which takes a conversion
        from the same IP then to change a flag: left so (docs/outbound.md)."""
        started = time.monotonic()
        self.clicks.reset()
        clicks = 0
        if mark:
            after = refid.floor(refid.created_ms(mark) - self.clicks.WINDOW_US // 1000)
            while True:
                rows = await self.store.screened_clicks(after, mark, RECOUNT_PAGE)
                for _, link_id, ip, created_at in rows:
                    self.clicks.count(ip, link_id, created_at)
                clicks += len(rows)
                if len(rows) < RECOUNT_PAGE:
                    break
                after = rows[-1][0]
                await asyncio.sleep(0)
        conversions = await self._recount_conversions()
        log.info(
            "screening: %d clicks and %d conversions of the counting windows read in %.2f s",
            clicks,
            conversions,
            time.monotonic() - started,
        )

    async def _decided_by_hand(self) -> bool:
        """Whether a conversion the daily caps count (or would) was rejected, or taken back
        from rejected, by someone other than the screening since the counts were made
        (in the API, the CLI, the dashboard), or one was decided so while a pass screened
        it (the pass counted it, but its screening did not take: the next pass screens and
        counts it again): then the counts are made again, of the screened ones."""
        since = (self.conversions.newest_day - 1) * fraud.DAY_US
        self.events_mark, moved = await self.store.decisions_after(self.events_mark, since)
        return moved

    async def _recount_conversions(self) -> int:
        """Counts the screened conversions of the day before the newest and since again
        (`_recount`); how many were counted."""
        # the events up to here are in what is read next: only later ones call for another
        self.events_mark = await self.store.newest_conversion_event()
        # conversions are read back from the newest (by id, as the screening takes them)
        # until a page was all recorded before the day before the newest: by when they
        # were recorded, not by their time, which a replay of an old postback keeps (a
        # page of replays is no sign that the window was read through)
        self.conversions.reset()
        window = self.conversions.WINDOW_US
        pages: list[list[tuple[Any, ...]]] = []
        newest, before = 0, 2**63 - 1
        while True:
            page = await self.store.screened_conversions(before, RECOUNT_PAGE)
            if not page:
                break
            pages.append(page)
            newest = max(newest, max(r[2] for r in page))
            # recorded at or after its time: a page all recorded before the window's
            # start holds nothing of it, nor does an older page
            if len(page) < RECOUNT_PAGE or max(r[8] for r in page) < newest - window:
                break
            before = page[-1][0]
            await asyncio.sleep(0)
        conversions = 0
        for page in reversed(pages):
            for _, ip, created_at, offer_id, affiliate_id, is_test, status, flags, _ in reversed(
                page
            ):
                if created_at >= newest - window:
                    self.conversions.count(ip, created_at)
                    counts = fraud.counts_for_caps(bool(is_test), status, flags.split(","))
                    self.conversions.count_capped(offer_id, affiliate_id, created_at, counts)
                    conversions += 1
            await asyncio.sleep(0)
        # the first UTC day wholly in the window is counted whole: the caps reached are
        # made to match from it
        self.caps_from_day = -(-(newest - window) // fraud.DAY_US)
        await self._match_caps()
        return conversions

    def _click_flags(self, r: dict[str, Any]) -> list[str]:
        """A click's flags; one that cannot be screened is flagged so and passed over, so
        that it holds up neither the screening nor the reports, which wait for it."""
        try:
            return self.clicks.flags(r["ip"], r["link_id"], r["user_agent"], r["created_at"])
        except Exception:
            log.exception("screening click %s failed; flagged and let through", r["refid"])
            return ["screening_failed"]

    def _screen_safely(self, c: dict[str, Any]) -> Screening:
        try:
            return self._screen(c)
        except Exception:  # one odd row must not stop the screening, nor outbound postbacks
            log.exception("screening conversion %s failed; flagged and let through", c["id"])
            kept = [f for f in str(c["flags"]).split(",") if f]
            flags = ",".join(dict.fromkeys([*kept, "screening_failed"]))
            return Screening(int(c["id"]), flags, str(c["status"]), str(c["status"]), "", "")

    def _screen(self, c: dict[str, Any]) -> Screening:
        """What the screening makes of one conversion."""
        click = {"flags": c["click_flags"], "ip": c["click_ip"]} if c["has_click"] else None
        found = self.conversions.flags(c, click)
        why_capped = self.conversions.over_cap(c)
        capped = ["over_cap"] if why_capped else []  # not fraud: said apart
        kept = [f for f in str(c["flags"]).split(",") if f]
        flags = ",".join(dict.fromkeys(kept + found + capped))
        action = fraud.decide(found + capped, fraud.parse_rules(c["fraud_rules"]))
        status = str(c["status"])
        to = {"reject": "rejected", "hold": "pending"}.get(action, status)
        if to == "pending" and (status != "approved" or c["changed"]):
            to = status  # only an automatic approval is held back, not one made by hand
        counts = fraud.counts_for_caps(bool(c["is_test"]), to, capped)
        self.conversions.count_capped(
            int(c["offer_id"]), int(c["affiliate_id"]), c["created_at"], counts
        )
        if counts or capped:  # a count that reached its cap, or one lowered under it
            self._reached += [k for k in self.conversions.reached(c) if k not in self.caps_stored]
        delivery = ""
        # a conversion the offer's rules reject was never posted back (its conversion
        # postback waits for the screening, and is cancelled): no `rejected` either
        if to != status and to != "rejected":
            delivery = self.delivery_state(
                int(c["offer_id"]), int(c["affiliate_id"]), to, int(c["is_test"])
            )
        if not found and not capped and to == status:
            # nothing new (flags the postback gave, `unknown_commissionid` say, are kept as
            # stored): marked screened, without an event in its history
            return Screening(int(c["id"]), "", status, status, "", "")
        reasons = [f"fraud: {', '.join(found)}"] if found else []
        reasons += [f"over_cap: {why_capped}"] * len(capped)
        reason = "; ".join(reasons)
        if to == status:  # flags noted, the status left as it was (decided by hand, say)
            reason = f"flagged, still {status}: {reason}"
        return Screening(int(c["id"]), flags, status, to, reason, delivery)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def catch_up(self, max_passes: int = 1000) -> tuple[int, int]:
        """Passes until one finds less than a batch of each (or `max_passes`); the clicks
        and conversions screened. Between full passes it rests so as to take at most
        `share` of the event loop, unless it is more than `max_lag` behind or no request
        is being answered (`domain.pacing`)."""
        done_clicks = done_conversions = 0
        for _ in range(max_passes):
            started = time.monotonic()
            clicks, conversions = await self.run_once()
            done_clicks, done_conversions = done_clicks + clicks, done_conversions + conversions
            if clicks < self.batch and conversions < self.batch:
                break
            worked = time.monotonic() - started
            busy = self.busy is None or self.busy()
            pause = pacing.rest(worked, self.share, self.behind_us, self.max_lag_us, busy)
            self.rested += pause
            await self._rest(pause)
        return done_clicks, done_conversions

    async def _rest(self, seconds: float) -> None:
        """Sleeps `seconds`, renewing the lease meanwhile (when a third of it is left)
        while this process holds the job: a rest longer than the lease (a small
        `share`, a long `poll_seconds`) would let another process take the job, and this
        one count its windows again from the store on its next pass."""
        end = time.monotonic() + seconds
        renewing = True
        while (left := end - time.monotonic()) > 0:
            now = time.time_ns() // 1000
            if renewing and self.held_until > now:
                renew_at = self.held_until - self.lease_us // 3
                if now >= renew_at:
                    try:
                        mark = await self.store.acquire_job(
                            "screening", self.owner, now, now + self.lease_us
                        )
                    except Exception:  # the lease runs out, and the next pass counts again
                        log.exception("screening lease not renewed")
                        renewing = False
                        continue
                    self.held_until = 0 if mark is None else now + self.lease_us
                    continue
                left = min(left, (renew_at - now) / 1_000_000)
            await asyncio.sleep(left)

    async def approve_due(self) -> int:
        """The offers' validation periods (`lifecycle.approve_due`), run by the holder of
        the screening's lease alone, after a pass: a conversion is approved only once
        screened. How many were approved."""
        now = time.time_ns() // 1000
        if self.held_until <= now:
            return 0
        approved = await lifecycle.approve_due(
            self.store, now, self.delivery_state, most=APPROVALS_MOST
        )
        if approved:
            log.info(
                "%d pending conversions approved at the end of their validation period", approved
            )
        return approved

    async def value_late(self) -> int:
        """Values the conversions still missing a rate once new rates were stored and
        every process has had the time to see them (`RATES_SETTLE_US`): an import values
        those recorded before it, but one recorded meanwhile, by a process that still had
        the rates before, would wait for the next import. Run by the holder of the
        screening's lease alone, at its start and after each change of the rates. How
        many were valued."""
        now = time.time_ns() // 1000
        if self.base_currency is None or self.held_until <= now:
            return 0
        changed = await self.store.rates_changed_at()
        if changed == self.rates_seen or now - changed < RATES_SETTLE_US:
            return 0
        self.rates_seen = changed
        valued, _ = await fx.value_missing(self.store, self.base_currency)
        if valued:
            log.info("%d conversions recorded without a rate valued with the rates stored", valued)
        return valued

    async def _loop(self) -> None:
        next_approval = 0.0
        while True:
            try:
                await self.catch_up()
                if time.monotonic() >= next_approval:
                    next_approval = time.monotonic() + APPROVAL_EVERY_S
                    await self.approve_due()
                    await self.value_late()
            except Exception as exc:
                pacing.say_failed(log, self.store, "screening pass", exc)
            await self._rest(self.poll_seconds)
