"""The primitives every SQL mixin of a store builds on; each engine implements them."""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from typing import Any, TypeVar

from clickback.errors import InputError

T = TypeVar("T")
Steps = list[tuple[str, list[tuple[Any, ...]]]]  # statements, each with its rows
# SQLite: a write transaction locks only the files it writes (the database, or the report
# tables' file attached beside it) when it begins deferred, with a write as its first
# statement (so the busy timeout applies to taking the lock); BEGIN IMMEDIATE would lock
# every attached file, and the writer's commits would wait for the rollup's
WRITE_BEGIN = "BEGIN"
CHUNK = 1024  # keys a statement looks up at most (a power of two: see `padded`)
FEWEST = 8  # the shortest padded list


def now_us() -> int:
    return time.time_ns() // 1000


def encode_cursor(key: Any) -> str:
    return base64.urlsafe_b64encode(str(key).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kind: type) -> Any:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if "\x00" in text:  # no key holds it, and PostgreSQL's text cannot
            raise ValueError(text)
        key = kind(text)
        if kind is int and not -(2**63) <= key < 2**63:
            raise ValueError(text)
        return key
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(
            "`cursor` is not one this server gave out", code="invalid_cursor", field="cursor"
        ) from exc


def padded(items: Sequence[T]) -> list[T]:
    """`items` (not empty) made as long as the next power of two (at least `FEWEST`) by
    repeating the last: for a statement written for a list's length (`IN (?, ?, …)`, a
    `VALUES` list joined to a table), where a repeated key finds nothing more, so that
    such statements come in a few lengths. Both engines keep what they run prepared:
    sqlite3 128 statements a connection, a lookup of 1,000 keys about 0.5 MB of SQLite's
    memory. With lists as long as they came, a rollup whose passes found 1 to 1,000 new
    clicks came to hold 39 MB there, 8 MB padded (`bench/rollup_memory.py`)."""
    shape = max(FEWEST, 1 << (len(items) - 1).bit_length())
    return [*items, *[items[-1]] * (shape - len(items))]


def padded_chunks(items: Sequence[T], size: int = CHUNK) -> list[list[T]]:
    """`items` in chunks of at most `size` (a power of two), each `padded`."""
    return [padded(items[i : i + size]) for i in range(0, len(items), size)]


class SqlPrimitives:
    engine = ""
    conn: Any  # SQLite: the one connection
    pool: Any  # PostgreSQL: the read pool

    def _sql(self, sql: str) -> str:
        raise NotImplementedError

    async def _fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        raise NotImplementedError

    async def _fetch_tuples(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """`_fetch`'s rows as tuples, in the select's order: for reads of many rows on
        the event loop, where a dict a row costs."""
        raise NotImplementedError

    async def _fetch_together(
        self, queries: list[tuple[str, tuple[Any, ...]]]
    ) -> list[list[dict[str, Any]]]:
        """Runs reads against one snapshot, so that rows one transaction wrote together
        are seen together (or not at all)."""
        raise NotImplementedError

    async def _fetch_at_once(
        self, queries: list[tuple[str, tuple[Any, ...]]]
    ) -> list[list[tuple[Any, ...]]]:
        """Runs independent reads side by side, each on a connection of its own and off
        the event loop where the engine allows (so not from one snapshot); each query's
        rows as tuples, in its select order."""
        raise NotImplementedError

    async def _row_with_children(
        self, table: str, row_id: int, children: str, parent: str
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """A row by id and the rows of `children` that point to it by `parent`, in id
        order, read together."""
        rows, kids = await self._fetch_together(
            [
                (f"SELECT * FROM {table} WHERE id = ?", (row_id,)),
                (f"SELECT * FROM {children} WHERE {parent} = ? ORDER BY id", (row_id,)),
            ]
        )
        return (rows[0] if rows else None), kids

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

    async def _reports_tx(
        self, guard: tuple[str, tuple[Any, ...]], steps: Steps
    ) -> dict[str, Any] | None:
        """`_guarded_many` on the report tables (the rollup's claim and apply); SQLite keeps
        those in a file of their own and runs this off the event loop."""
        return await self._guarded_many(guard, steps)

    async def _guarded_many(
        self, guard: tuple[str, tuple[Any, ...]], steps: Steps
    ) -> dict[str, Any] | None:
        """The guard (a statement with RETURNING), then each statement over its rows, in
        one transaction; the guard's row, or None (and nothing done) when it found none."""
        if self.engine == "sqlite":
            return sqlite_guarded(self.conn, guard, steps)
        async with self.pool.acquire() as pg, pg.transaction():
            record = await pg.fetchrow(self._sql(guard[0]), *guard[1])
            if record is None:
                return None
            for sql, rows in steps:
                if rows:
                    await pg.executemany(self._sql(sql), rows)
            return dict(record)


def sqlite_guarded(
    conn: Any, guard: tuple[str, tuple[Any, ...]] | None, steps: Steps
) -> dict[str, Any] | None:
    """`SqlPrimitives._guarded_many` on one SQLite connection (synchronous); with no
    guard, the steps alone (and an empty dict)."""
    conn.execute(WRITE_BEGIN)
    try:
        found: dict[str, Any] = {}
        if guard is not None:
            cur = conn.execute(guard[0], guard[1])
            row = cur.fetchone()
            if row is None:
                conn.execute("ROLLBACK")
                return None
            found = dict(zip([d[0] for d in cur.description], row, strict=True))
        for sql, rows in steps:
            if rows:
                conn.executemany(sql, rows)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return found
