"""The background sender of outbound postbacks, one per serve process.

It claims due deliveries with a lease (so processes and nodes share the work and a
crashed sender's deliveries are taken over when its lease ends), sends them a few at a
time, and records each attempt with its consequence. The HTTP call is injected, so this
module stays free of I/O libraries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from clickback.domain import outbound
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
        batch: int = 50,
        concurrency: int = 16,
    ):
        self.store = store
        self.send = send
        self.policy = policy
        self.lease_us = int(lease_seconds * 1_000_000)
        self.poll_seconds = poll_seconds
        self.batch = batch
        self._gate = asyncio.Semaphore(concurrency)
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> int:
        """Sends what is due now; how many deliveries were attempted."""
        now = time.time_ns() // 1000
        claimed = await self.store.claim_deliveries(now, now + self.lease_us, self.batch)
        await asyncio.gather(*(self._deliver(row) for row in claimed))
        return len(claimed)

    async def _deliver(self, row: dict[str, Any]) -> None:
        async with self._gate:
            config = outbound.config_from_row(row)
            now = time.time_ns() // 1000
            request = outbound.build_request(
                config, row, row["event"], row["delivery_id"], now // 1_000_000
            )
            attempt = await self.send(request)
            done = time.time_ns() // 1000
            state, next_at = outbound.next_state(
                attempt, row["attempts"] + 1, row["queued_at"], done, self.policy
            )
            await self.store.finish_attempt(
                row["delivery_id"],
                row["delivery_affiliate"],
                attempt,
                request.method,
                request.url,
                state,
                next_at,
                done,
                self.policy.disable_after,
            )

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                busy = await self.run_once()
            except Exception:
                log.exception("outbound sender pass failed; retrying")
                busy = 0
            if busy < self.batch:
                await asyncio.sleep(self.poll_seconds)
