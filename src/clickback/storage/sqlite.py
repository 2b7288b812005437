"""SQLite store: WAL, one connection, and a group-commit writer on the event loop.

The writer is the shape measured fastest here: a request appends its row to a list,
the first row of a batch schedules a flush with `call_soon`, and the flush commits
every row queued by then in one transaction (`executemany` for clicks), then resolves
each waiting request. It never waits to fill a batch: under load batches fill by
themselves while the previous one commits. Flushes run on the loop itself, so no
other statement can interleave with a batch's transaction.
One writer per database: several processes on one file fight over its lock.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from clickback.domain import attribution
from clickback.domain.models import Outcome
from clickback.domain.ports import (
    CLICK_COLUMNS,
    ClickRow,
    ConversionRow,
    LedgerRow,
    PostbackWritten,
    StoredOrder,
)
from clickback.errors import ConfigError, UnavailableError
from clickback.storage import schema
from clickback.storage.base import SqlStore
from clickback.storage.primitives import WRITE_BEGIN, Steps, now_us, sqlite_guarded
from clickback.storage.reports import STAGE
from clickback.storage.sqlite_file import Checkpointer, FileGone, file_identity, no_writes
from clickback.storage.sqlite_reports import place_reports
from clickback.storage.writer import OutageLog, fail, settle

log = logging.getLogger("clickback.storage")

_CLICK_MARKS = ", ".join("?" * len(CLICK_COLUMNS))
INSERT_CLICK = f"INSERT INTO clicks ({', '.join(CLICK_COLUMNS)}) VALUES ({_CLICK_MARKS})"
# what a duplicate is compared with (`attribution.duplicate`): an order of its own kind,
# test or real, which are deduplicated apart
SELECT_STORED = (
    "SELECT id, orderamount, currency, refid, commissionid, coupon, geo FROM conversions"
    " WHERE advertiser_id = ? AND ordernumber = ? AND is_test = ?"
)
# The conversion takes its sub-IDs from its click when the click row is stored (its test
# flag is its link's, as decided); when it is not (lost in async mode, or in another
# node's batch), the signed RefID still names link, offer and affiliate, and the row is
# flagged click_missing.
INSERT_CONVERSION = """
INSERT INTO conversions (
    refid, offer_id, affiliate_id, advertiser_id, link_id, ordernumber, orderamount,
    currency, commission, commission_currency, coupon, geo, commissionid, status,
    created_at, recorded_at, clicked_at, rule, flags, base_currency, rate, base_amount,
    base_commission, ip, revenue_terms, sub1, sub2, sub3, sub4, sub5, is_test, click_missing)
SELECT x.r, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,
    coalesce(c.sub1, ''), coalesce(c.sub2, ''), coalesce(c.sub3, ''), coalesce(c.sub4, ''),
    coalesce(c.sub5, ''), ?, c.refid IS NULL
FROM (SELECT ? AS r) AS x LEFT JOIN clicks AS c ON c.refid = x.r
WHERE true
ON CONFLICT (advertiser_id, ordernumber, is_test) DO NOTHING
"""
# the outbound postback is queued in the same transaction as the conversion that causes it
INSERT_DELIVERY = """
INSERT INTO deliveries (conversion_id, affiliate_id, offer_id, event, state, next_at, created_at,
    updated_at, conversion_status)
SELECT ?, a.id, ?, 'conversion', CASE WHEN a.postback_disabled_at IS NULL THEN 'queued'
    ELSE 'held' END, ?, ?, ?, ? FROM affiliates AS a WHERE a.id = ?
"""
INSERT_LEDGER = """
INSERT INTO postbacks (received_at, method, ip, params, refid, ordernumber, advertiser_id,
    outcome, http_status, errors, conversion_id, code, link_id, is_test, replay_of)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

BUMP_VERSION = (
    "UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'config_version'"
)
_CLICK = 0
_POSTBACK = 1


def conversion_args(c: ConversionRow) -> tuple[Any, ...]:
    return (
        c.offer_id,
        c.affiliate_id,
        c.advertiser_id,
        c.link_id,
        c.ordernumber,
        c.orderamount,
        c.currency,
        c.commission,
        c.commission_currency,
        c.coupon,
        c.geo,
        c.commissionid,
        c.status,
        c.created_at,
        c.recorded_at,
        c.clicked_at,
        c.rule,
        c.flags,
        c.base_currency,
        c.rate,
        c.base_amount,
        c.base_commission,
        c.ip,
        c.revenue_terms,
        c.is_test,
        c.refid,
    )


def ledger_args(x: LedgerRow, outcome: Outcome, conversion_id: int | None) -> tuple[Any, ...]:
    return (
        x.received_at,
        x.method,
        x.ip,
        x.params,
        x.refid,
        x.ordernumber,
        x.advertiser_id,
        outcome.value,
        x.http_status,
        x.errors,
        conversion_id,
        x.code,
        x.link_id,
        x.is_test,
        x.replay_of,
    )


# what SQLite says of a file whose pages it cannot read as its own
_DAMAGED = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


def path_from_url(url: str) -> str:
    path = url.removeprefix("sqlite://")
    if path.startswith("/"):
        path = path[1:]  # sqlite:///rel.db -> rel.db ; sqlite:////abs.db -> /abs.db
    return path or ":memory:"


def reports_path(path: str) -> str:
    """The file of the report tables (rollups, their watermarks and lease) beside the
    database: written by the rollup job only, so its transactions never hold back the
    group-commit writer's (SQLite locks a whole file for a write)."""
    return path if path == ":memory:" else f"{path}-reports"


# The report file's page size, set when the file is made. The rollup upserts its keys
# all over the level tables (a conversion lands at its click's hour, keys vary in their
# sub-IDs), so a pass dirties pages across them; with 16 KB pages for 4 KB, a
# conversion's rollup took 98.6 -> 83.8 µs of CPU, a click's 23.8 -> 23.1
# (`bench/deferred_cost.py`; 1 and 2 KB were slower, 32 and 64 KB a few µs less
# again). A file made before keeps its pages (changing them means rewriting it, in
# rollback mode).
REPORTS_PAGE_SIZE = 16_384


def unreadable(path: str, exc: sqlite3.DatabaseError) -> ConfigError:
    """A file that is no SQLite database (or not one this SQLite reads), named; the
    reports file said to be one to move away, as it is made again from the raw rows."""
    said = f"{path} is not a SQLite database that can be read: {exc}"
    if path.endswith("-reports"):
        said += (
            "; it holds only the reports, made again from the database's rows: move it"
            " away (with its -wal and -shm) and start again"
        )
    return ConfigError(said)


def unopenable(path: str, exc: sqlite3.Error) -> ConfigError:
    """A database file that cannot be opened or made, with where it was looked for and
    why, when that can be told (SQLite says only "unable to open database file")."""
    where = os.path.abspath(path)
    said = f"cannot open the SQLite database {where}: {exc}"
    folder = os.path.dirname(where)
    if os.path.isdir(where):
        said += "; that is a directory, not a file"
    elif not os.path.isdir(folder):
        said += f"; the directory {folder} does not exist"
        if not os.path.isabs(path):
            said += (
                f" (a path after sqlite:/// is relative to the working directory, {os.getcwd()};"
                f" an absolute one takes four slashes: sqlite:////{path} for /{path})"
            )
    elif not os.access(folder, os.W_OK | os.X_OK):
        said += f"; this user may not write in {folder}"
    return ConfigError(said)


def connect(path: str) -> sqlite3.Connection:
    """A connection to the database with the report tables' file attached (`reports`):
    both are read and written by their unqualified table names."""
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.OperationalError as exc:
        raise unopenable(path, exc) from None
    conn.execute("PRAGMA busy_timeout = 10000")
    reading = path
    try:
        conn.execute("SELECT count(*) FROM main.sqlite_master").fetchone()
        reading = reports_path(path)
        conn.execute("ATTACH DATABASE ? AS reports", (reading,))
        conn.execute(f"PRAGMA reports.page_size = {REPORTS_PAGE_SIZE}")  # a new file's only
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise unreadable(reading, exc) from None
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA reports.synchronous = NORMAL")
    return with_functions(conn)


def with_functions(conn: sqlite3.Connection) -> sqlite3.Connection:
    """The SQL functions the migrations use (every connection that runs them needs
    them): `nfc`, for migration 26."""
    conn.create_function("nfc", 1, _nfc, deterministic=True)
    return conn


def _nfc(text: str | None) -> str | None:
    """Text in Unicode's composed form (NFC), as order numbers are compared."""
    if text is not None and not text.isascii():
        return unicodedata.normalize("NFC", text)
    return text


def stage_tables(conn: sqlite3.Connection) -> sqlite3.Connection:
    """The rollup's staging tables (`reports.staged`), in memory, on this connection."""
    conn.execute("PRAGMA temp_store = MEMORY")
    for ddl in STAGE:
        conn.execute(ddl)
    return conn


_UNAVAILABLE_FILE = frozenset(
    (
        "database is locked",
        "disk I/O error",
        "database or disk is full",
        "unable to open database file",
    )
)


# how often the database file is looked at, at most, to see whether it is still the one
# opened: what is written within this after it is moved or deleted goes to the file gone
FILE_CHECK_S = 0.1


class SqliteStore(SqlStore):
    engine = "sqlite"
    unavailable_errors: tuple[type[BaseException], ...] = (
        ConnectionError,
        TimeoutError,
        sqlite3.OperationalError,
    )

    def unavailable(self, exc: BaseException) -> bool:
        # an OperationalError is also a statement SQLite could not run: only these are
        # the file out of reach for now
        if isinstance(exc, FileGone) or self._gone:
            return True
        if isinstance(exc, sqlite3.OperationalError):
            return str(exc) in _UNAVAILABLE_FILE
        return isinstance(exc, self.unavailable_errors)

    def damaged(self, exc: BaseException) -> str:
        code = getattr(exc, "sqlite_errorcode", None)
        if not isinstance(exc, sqlite3.DatabaseError) or code not in _DAMAGED:
            return ""
        reports = os.path.abspath(reports_path(self.path))
        return (
            f"a database file is damaged ({exc}). If clicks and postbacks are still answered,"
            f" it is the reports file {reports}, which holds nothing but what is made again"
            " from the database's rows: stop clickback, move that file away with its -wal and"
            " -shm, and start again. If not, restore the database from a backup (docs/deploy.md)"
        )

    def __init__(self, path: str, batch_max: int = 512):
        self.path = path
        self.batch_max = batch_max
        self._outage = OutageLog(log)
        self.conn = connect(path)
        for pragma in ("journal_mode = WAL", "reports.journal_mode = WAL", "foreign_keys = ON"):
            self.conn.execute(f"PRAGMA {pragma}")
        self.checkpointer: Checkpointer | None = None
        self._rollup_conn: sqlite3.Connection | None = None  # made at the first apply
        self._rollup_lock = threading.Lock()  # held by its thread while it writes
        self._pending: list[tuple[int, Any, asyncio.Future[Any] | None]] = []
        self._readers: list[sqlite3.Connection] = []  # for reads in threads, made as needed
        self._closed = False
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._commit_lock = threading.Lock()  # held by a batch's commit, or the checkpointer
        self._deferred = False  # a flush found the checkpointer holding commits back
        # where the file is and which it is (its path made absolute: a later change of
        # directory does not make it look gone)
        self._where = os.path.abspath(path)
        self._file = None if path == ":memory:" else file_identity(self._where)
        self._gone = False
        self._next_check = 0.0  # when the file is looked at again (time.monotonic)
        if path != ":memory:":
            self.conn.execute("PRAGMA wal_autocheckpoint = 0")  # the thread does it
            self.checkpointer = Checkpointer(path, hold=self._hold_commits)
        else:  # the one connection applies the rollups too
            stage_tables(self.conn)

    # -- primitives ---------------------------------------------------------------

    async def _fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        self._check_file()
        cur = self.conn.execute(sql, args)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    async def _fetch_tuples(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        self._check_file()
        rows: list[tuple[Any, ...]] = self.conn.execute(sql, args).fetchall()
        return rows

    async def _fetch_together(
        self, queries: list[tuple[str, tuple[Any, ...]]]
    ) -> list[list[dict[str, Any]]]:
        # one read transaction: another process's commit cannot land between the reads
        self._check_file()
        self.conn.execute("BEGIN")
        try:
            return [await self._fetch(sql, *args) for sql, args in queries]
        finally:
            self.conn.execute("COMMIT")

    async def _fetch_at_once(
        self, queries: list[tuple[str, tuple[Any, ...]]]
    ) -> list[list[tuple[Any, ...]]]:
        self._check_file()  # a reader opened now would open another file
        if self.path == ":memory:":  # nothing else can open it: the one connection reads
            return [self.conn.execute(sql, args).fetchall() for sql, args in queries]
        # sqlite3 lets go of the GIL while a statement runs: in threads, the reads run
        # on the other core and the event loop (clicks, postbacks) keeps going meanwhile
        return list(
            await asyncio.gather(*(asyncio.to_thread(self._read, sql, a) for sql, a in queries))
        )

    def _read(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """One read on a connection of the readers' pool (in a worker thread)."""
        try:
            conn = self._readers.pop()
        except IndexError:
            conn = connect(self.path)
            conn.execute("PRAGMA query_only = ON")
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            if self._closed:  # a read outlived the store (its caller was cancelled)
                conn.close()
            else:
                self._readers.append(conn)

    async def _reports_tx(
        self, guard: tuple[str, tuple[Any, ...]], steps: Steps
    ) -> dict[str, Any] | None:
        self._check_file()
        if self.path == ":memory:":
            return await self._guarded_many(guard, steps)
        # sqlite3 lets go of the GIL while a statement runs: the event loop goes on
        # answering meanwhile, and the writer's commits touch the other file
        return await asyncio.to_thread(self._reports_write, guard, steps)

    def _reports_write(
        self, guard: tuple[str, tuple[Any, ...]], steps: Steps
    ) -> dict[str, Any] | None:
        """In a worker thread; one at a time, and never past `close` (a caller cancelled
        does not stop the thread: `close` waits for it)."""
        with self._rollup_lock:
            if self._closed:
                raise UnavailableError("the store is closed")
            if self._rollup_conn is None:
                # its own WAL checkpoints (1,000 pages) run inside its commits, here
                self._rollup_conn = stage_tables(connect(self.path))
            return sqlite_guarded(self._rollup_conn, guard, steps)

    async def _write(self, sql: str, *args: Any, bump: bool = False) -> Any:
        self._check_file()
        conn = self.conn
        conn.execute(WRITE_BEGIN)
        try:
            row = conn.execute(sql, args).fetchone()
            if bump:
                conn.execute(BUMP_VERSION)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return row[0] if row else None

    async def _write_all(
        self,
        steps: list[tuple[str, tuple[Any, ...]]],
        *,
        bump: bool = False,
        check: bool = True,
        guards: int | None = None,
    ) -> bool:
        self._check_file()
        conn = self.conn
        conn.execute(WRITE_BEGIN)
        try:
            for i, (sql, args) in enumerate(steps):
                must = check if guards is None else i < guards
                if conn.execute(sql, args).fetchone() is None and must:
                    conn.execute("ROLLBACK")
                    return False
            if bump:
                conn.execute(BUMP_VERSION)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return True

    async def migrate(self) -> int:
        conn = self.conn
        # a migration that makes a table again (19) drops the table that others refer
        # to before the new one takes its name: SQLite's way is with foreign keys off
        # (which cannot change inside a transaction), every reference checked before
        # the commit
        conn.execute("PRAGMA foreign_keys = OFF")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations "
                    "(version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)"
                )
                current = (
                    conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] or 0
                )
                for version, _title, _sql in schema.MIGRATIONS:
                    if version > current:
                        for stmt in schema.statements("sqlite", version):
                            conn.execute(stmt)
                        conn.execute(
                            "INSERT INTO schema_migrations VALUES (?, ?)", (version, now_us())
                        )
                if current < schema.LATEST:
                    broken = conn.execute("PRAGMA main.foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"the migration broke references: {broken[:5]}")
                if self.path != ":memory:":
                    place_reports(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            conn.execute("PRAGMA foreign_keys = ON")
        return schema.LATEST

    def _check_file(self, now: bool = False) -> None:
        """Raises FileGone when the file opened is no longer at its path (deleted, or
        another moved over it: a backup restored under a running server), from then on
        at every read and write; said once in the log. Looked at (a `stat`, 1.5 µs)
        before a batch, statement or read at most every FILE_CHECK_S, or `now`: one
        before each batch of postbacks was 5 % of their CPU."""
        if self._file is None:
            return
        if not self._gone:
            at = time.monotonic()
            if at < self._next_check and not now:
                return
            self._next_check = at + FILE_CHECK_S
            try:
                if file_identity(self._where) == self._file:
                    return
            except OSError:  # which file is there cannot be told now: as it was
                return
        message = (
            f"the database file {self.path} was removed or replaced while the server had"
            " it open: nothing more is read or written; restart the server"
        )
        if not self._gone:
            self._gone = True
            self.conn.set_authorizer(no_writes)
            log.error("%s", message)
        raise FileGone(message)

    async def ping(self) -> bool:
        self._check_file(now=True)
        row = self.conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
        # a newer schema is ready too: a node of this version beside one that upgraded
        # it (migrations only add), as in a rolling upgrade
        return bool(row and row[0] is not None and row[0] >= schema.LATEST)

    async def close(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.stop()
        while self._pending:  # every row already answered for is written before closing
            self._flush()
        self._closed = True
        while self._readers:
            self._readers.pop().close()
        with self._rollup_lock:
            if self._rollup_conn is not None:
                self._rollup_conn.close()
        self.conn.close()  # the last connection out checkpoints what is left

    # -- group commit -------------------------------------------------------------

    def _enqueue(self, kind: int, payload: Any, fut: asyncio.Future[Any] | None) -> None:
        if self._closed:  # a request outliving the shutdown
            fail([(kind, payload, fut)], RuntimeError("the store is closed"))
            return
        self._pending.append((kind, payload, fut))
        if not self._scheduled:
            self._scheduled = True
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._loop.call_soon(self._flush)

    def write_click(self, row: ClickRow) -> asyncio.Future[None]:
        fut = (self._loop or asyncio.get_running_loop()).create_future()
        self._enqueue(_CLICK, row, fut)
        return fut

    def queue_click(self, row: ClickRow) -> None:
        self._enqueue(_CLICK, row, None)

    async def write_postback(
        self, ledger: LedgerRow, conversion: ConversionRow | None
    ) -> PostbackWritten:
        fut: asyncio.Future[PostbackWritten] = (
            self._loop or asyncio.get_running_loop()
        ).create_future()
        self._enqueue(_POSTBACK, (ledger, conversion), fut)
        return await fut

    @contextmanager
    def _hold_commits(self) -> Iterator[None]:
        """For the checkpointer's thread: no batch commits until the block is left; the
        loop goes on taking requests meanwhile, and a deferred flush runs after."""
        try:
            with self._commit_lock:
                yield
        finally:  # also when the held checkpoint failed: a deferred flush must not wait
            loop = self._loop
            if loop is not None:
                with suppress(RuntimeError):  # the loop is closed: nothing waits any more
                    loop.call_soon_threadsafe(self._resume)

    def _resume(self) -> None:
        if self._deferred:
            self._deferred = False
            if self._pending and not self._closed:  # `close` may have written them
                self._flush()

    def _flush(self) -> None:
        if self._closed:  # `close` wrote what was pending; this call was scheduled before
            self._scheduled = False
            return
        if not self._commit_lock.acquire(blocking=False):
            self._scheduled = self._deferred = True  # `_resume` flushes
            return
        try:
            self._flush_locked()
        finally:
            self._commit_lock.release()

    def _flush_locked(self) -> None:
        self._scheduled = False
        batch = self._pending[: self.batch_max]
        del self._pending[: self.batch_max]
        if self._pending:
            self._scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._flush)
        try:
            self._check_file()
            results = self._commit(batch)
        except FileGone as exc:
            fail(batch, exc)
            return
        except Exception as exc:
            if self.unavailable(exc):  # not the rows' fault: each would wait as long again
                self._outage.batch_failed(len(batch), exc)
                fail(batch, exc)
                return
            log.exception("write batch of %d failed; writing its rows one by one", len(batch))
            for item in batch:  # one bad row must not fail the others
                try:
                    settle([item], self._commit([item]))
                except Exception as exc:
                    fail([item], exc)
            return
        if self._outage.failed_at is not None:
            self._outage.recovered()
        settle(batch, results)

    def _commit(self, batch: list[tuple[int, Any, Any]]) -> list[Any]:
        conn = self.conn
        try:
            conn.execute(WRITE_BEGIN)
            clicks = [p for k, p, _ in batch if k == _CLICK]
            if clicks:
                conn.executemany(INSERT_CLICK, clicks)
            results = [
                self._write_postback(*payload) if kind == _POSTBACK else None
                for kind, payload, _ in batch
            ]
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results

    def _write_postback(self, ledger: LedgerRow, conv: ConversionRow | None) -> PostbackWritten:
        conn = self.conn
        outcome = ledger.outcome
        conversion_id, stored = ledger.conversion_id, None
        if conv is not None:
            cur = conn.execute(INSERT_CONVERSION, conversion_args(conv))
            if cur.rowcount == 1:
                conversion_id = cur.lastrowid
                if conv.delivery:  # from when it is recorded: a replay's retries run from then
                    t = conv.recorded_at
                    conn.execute(
                        INSERT_DELIVERY,
                        (conversion_id, conv.offer_id, t, t, t, conv.status, conv.affiliate_id),
                    )
            else:
                outcome = Outcome.DUPLICATE
                stored = StoredOrder(
                    *conn.execute(
                        SELECT_STORED, (conv.advertiser_id, conv.ordernumber, conv.is_test)
                    ).fetchone()
                )
                conversion_id = stored.conversion_id
                ledger = attribution.ledger_duplicate(ledger, conv, stored)
        cur = conn.execute(INSERT_LEDGER, ledger_args(ledger, outcome, conversion_id))
        assert cur.lastrowid is not None
        return PostbackWritten(outcome, conversion_id, cur.lastrowid, stored)
