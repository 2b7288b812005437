"""What both engines' group-commit writers share: answering the requests of a batch.

A batch item is `(kind, payload, future)`; the future is None for a click written
asynchronously (nobody waits for it). When a batch fails, the writers retry its items one
by one, so a single bad row fails only its own request.
"""

from __future__ import annotations

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
