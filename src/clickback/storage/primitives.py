"""The primitives every SQL mixin of a store builds on; each engine implements them."""

from __future__ import annotations

from typing import Any


class SqlPrimitives:
    engine = ""

    def _sql(self, sql: str) -> str:
        raise NotImplementedError

    async def _fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        raise NotImplementedError

    async def _write(self, sql: str, *args: Any, bump: bool = False) -> Any:
        """Runs one statement in its own transaction; returns the first column of its first
        row (for RETURNING). `bump` also bumps the config version, in the same transaction."""
        raise NotImplementedError

    async def _write_all(
        self,
        steps: list[tuple[str, tuple[Any, ...]]],
        *,
        bump: bool = False,
        check: bool = True,
        guards: int | None = None,
    ) -> bool:
        """Runs statements in one transaction. With `check` each has RETURNING, and if one
        returns no row the transaction is rolled back and the answer is False; `guards`
        applies that to the first so many steps only."""
        raise NotImplementedError
