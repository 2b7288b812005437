"""The background sender of outbound postbacks, one per serve process.

It claims due deliveries with a lease (so processes and nodes share the work and a
crashed sender's deliveries are taken over when its lease ends), keeps up to
`concurrency` sends in flight, taking more as sends end (`refill` at a time: each claim
is a query, on SQLite on the event loop), and records each attempt with its
consequence. An affiliate has at most `per_affiliate` of them (a quarter): one whose
receiver stalls until the timeout leaves the others three quarters of the sends, and a
backlog of one affiliate alone still goes out `per_affiliate` at a time. The HTTP call
is injected, so this module stays free of I/O libraries.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from clickback.domain import outbound, pacing
from clickback.domain.ports import Store

log = logging.getLogger("clickback.sender")

Send = Callable[[outbound.OutboundRequest], Awaitable[outbound.Attempt]]


class Sender:
    def __init__(
        self,
        store: Store,
        send: Send,
        policy: outbound.RetryPolicy,
        lease_seconds: float = 30.0,
        poll_seconds: float = 0.5,
        concurrency: int = 64,
        grace_seconds: float = 11.0,
    ):
        self.store = store
        self.send = send
        self.policy = policy
        self.lease_us = int(lease_seconds * 1_000_000)
        self.poll_seconds = poll_seconds
        self.concurrency = concurrency
        self.per_affiliate = max(1, concurrency // 4)
        # sends that end before more are claimed, while some are in flight
        self.refill = max(1, self.per_affiliate // 2)
        self._sending: set[asyncio.Task[None]] = set()
        self._in_flight: dict[int, int] = {}  # affiliate: its sends in flight
        self._ended = 0  # sends that ended since the last claim
        self._wake = asyncio.Event()  # `refill` sends ended, or a stop
        # how long `stop` waits for the sends in flight (the outbound timeout, and the
        # attempt's write): one cancelled mid-send would be sent again once its lease ends
        self.grace_seconds = grace_seconds
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def run_once(self) -> int:
        """Claims what is due now, as far as there is room, and waits for those sends to
        end; how many deliveries were attempted."""
        started = await self._claim()
        await asyncio.gather(*started)
        return len(started)

    async def _claim(self) -> list[asyncio.Task[None]]:
        """Starts sending what is due, as far as there is room (in all, and for each
        affiliate); the sends. It takes no more than it starts at once, so every send
        starts, and ends, well inside its lease. A claim reads the oldest due deliveries
        only, so one affiliate's backlog can fill what it reads: when the claim gave an
        affiliate the last of its share and there is room left, it claims again without
        that affiliate (a few times at the most)."""
        self._ended = 0
        started: list[asyncio.Task[None]] = []
        for _ in range(4):
            room = self.concurrency - len(self._sending)
            if room <= 0:
                break
            full = {a for a, n in self._in_flight.items() if n >= self.per_affiliate}
            now = time.time_ns() // 1000
            lease = now + self.lease_us
            claimed = await self.store.claim_deliveries(
                now, lease, room, dict(self._in_flight), self.per_affiliate
            )
            for row in claimed:
                affiliate = int(row["delivery_affiliate"])
                self._in_flight[affiliate] = self._in_flight.get(affiliate, 0) + 1
                task = asyncio.get_running_loop().create_task(self._deliver(row, lease))
                task.add_done_callback(functools.partial(self._ended_one, affiliate))
                self._sending.add(task)
                started.append(task)
            filled = {a for a, n in self._in_flight.items() if n >= self.per_affiliate}
            if len(claimed) >= room or filled <= full:
                break
        return started

    def _ended_one(self, affiliate: int, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        left = self._in_flight.pop(affiliate) - 1
        if left:
            self._in_flight[affiliate] = left
        self._ended += 1
        if self._ended >= self.refill or not self._sending:
            self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            # the attempt could not be recorded (the database): sent again after its lease
            log.error("outbound postback not recorded", exc_info=task.exception())

    async def _deliver(self, row: dict[str, Any], lease: int) -> None:
        config = outbound.config_from_row(row)
        now = time.time_ns() // 1000
        if not config.state_for(row["event"]):
            # the affiliate's URL was removed, or the event dropped from what it takes,
            # since the delivery was queued: it is not sent (nor counted as a failure)
            if not await self.store.cancel_delivery(row["delivery_id"], lease, now):
                log.warning("outbound postback %s outlived its lease", row["delivery_id"])
            return
        if row["conversion_status"] is not None:
            # as of the event that queued it, on every retry and resend: a conversion
            # postback retried past a reversal does not say `reversed` (NULL: queued before
            # deliveries kept it, and says the status it finds)
            row = {**row, "status": row["conversion_status"]}
        started = time.monotonic()
        method, url = config.method, config.url
        try:
            request = outbound.build_request(
                config, row, row["event"], row["delivery_id"], now // 1_000_000
            )
            method, url = request.method, request.url
            attempt = await self.send(request)
        except Exception as exc:  # a bad URL or a bug must not stall the delivery forever
            log.exception("outbound postback %s failed to send", row["delivery_id"])
            elapsed = int((time.monotonic() - started) * 1000)
            attempt = outbound.Attempt(None, "", elapsed, f"{type(exc).__name__}: {exc}"[:500])
        done = time.time_ns() // 1000
        state, next_at = outbound.next_state(
            attempt, int(row["tries"]) + 1, row["queued_at"], done, self.policy
        )
        kept = await self.store.finish_attempt(
            row["delivery_id"],
            row["delivery_affiliate"],
            attempt,
            method,
            url,
            state,
            next_at,
            done,
            self.policy.disable_after,
            lease,
        )
        if not kept:
            log.warning("outbound postback %s outlived its lease", row["delivery_id"])
        elif state != outbound.DELIVERED:
            await self._say_failed(row, attempt, state, done)

    async def _say_failed(
        self, row: dict[str, Any], attempt: outbound.Attempt, state: str, done: int
    ) -> None:
        """A failed attempt in the log (the URL left out: it may hold a password), a
        warning when it ends the delivery or disables the affiliate's postback."""
        answer = (
            f"answered {attempt.status_code}"
            if attempt.status_code is not None
            else attempt.error or "no answer"
        )
        what = (
            f"outbound postback {row['delivery_id']} ({row['event']} of conversion"
            f" {row['id']}) to affiliate {row['delivery_affiliate']}: {answer}"
        )
        affiliate = await self.store.get_row("affiliates", row["delivery_affiliate"])
        if state == outbound.FAILED:
            log.warning(
                "%s; failed, not retried (clickback deliveries show %s)", what, row["delivery_id"]
            )
        elif affiliate is not None and affiliate["postback_disabled_at"] is not None:
            # disabled by this failure or another's at the same time: the delivery is held
            log.info("%s; held while the affiliate's postback is disabled", what)
        else:
            log.info("%s; to be retried", what)
        if affiliate is not None and affiliate["postback_disabled_at"] == done:
            log.warning(
                "affiliate %s's postback is disabled after %s failures in a row: its"
                " deliveries are held until it is enabled (clickback affiliate"
                " enable-postback %s)",
                row["delivery_affiliate"],
                affiliate["postback_failures"],
                row["delivery_affiliate"],
            )

    def start(self) -> None:
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Claims nothing more, and waits for the sends in flight to end and be recorded
        (`grace_seconds` at the most; what is still running then is cancelled, and sent
        again once its lease ends)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), self.grace_seconds)
        except TimeoutError:
            log.warning("outbound sends still running after %s s; cancelled", self.grace_seconds)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                try:
                    await self._claim()
                except Exception as exc:
                    pacing.say_failed(log, self.store, "outbound sender pass", exc)
                # until `refill` sends ended (room again, for more of a backlog or of an
                # affiliate at its share), or the next look at what is due
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
        finally:
            # a stop waits for the sends in flight; cancelled, so are they
            await asyncio.gather(*self._sending, return_exceptions=True)
