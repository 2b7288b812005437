"""What both engines' group-commit writers share: answering the requests of a batch.

A batch item is `(kind, payload, future)`; the future is None for a click written
asynchronously (nobody waits for it). When a batch fails, the writers retry its items one
by one, so a single bad row fails only its own request.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from clickback.errors import UnavailableError

Item = tuple[int, Any, Any]


def settle(batch: list[Item], results: list[Any]) -> None:
    for (_, _, fut), result in zip(batch, results, strict=True):
        if fut is not None and not fut.done():
            fut.set_result(result)


def fail(
    batch: list[Item],
    exc: BaseException,
    message: str = "storage write failed; nothing was recorded, retry",
) -> None:
    error = UnavailableError(message)
    error.__cause__ = exc
    for _, _, fut in batch:
        if fut is not None and not fut.done():
            fut.set_exception(error)


class OutageLog:
    """One error line for write batches failed for the database out of reach (down, the
    disk full), then at most one every `every` seconds, counting the batches failed
    since: an outage of a minute under load failed thousands, each with its own line."""

    def __init__(self, log: logging.Logger, every: float = 10.0) -> None:
        self.log = log
        self.every = every
        self._logged_at = -every
        self._failed = 0
        # when the last batch failed so, None once one committed since (`/readyz`)
        self.failed_at: float | None = None

    def failing(self, within: float) -> float | None:
        """Seconds since a batch last failed for the database out of reach, if one did
        within `within` seconds and none committed since."""
        if self.failed_at is None:
            return None
        ago = time.monotonic() - self.failed_at
        return ago if ago < within else None

    def recovered(self) -> None:
        """A write committed after batches failed so: said once, the count reset."""
        if self.failed_at is None:
            return
        self.log.warning(
            "writes commit again (%d batches failed since the last line said so)", self._failed
        )
        self.failed_at, self._failed, self._logged_at = None, 0, -self.every

    def batch_failed(self, size: int, exc: BaseException) -> None:
        self._failed += 1
        now = self.failed_at = time.monotonic()
        if now - self._logged_at < self.every:
            return
        since = f" ({self._failed} batches failed so)" if self._failed > 1 else ""
        self.log.error(
            "write batch of %d failed, the database out of reach%s: %s: %s",
            size,
            since,
            type(exc).__name__,
            exc,
        )
        self._logged_at, self._failed = now, 0
