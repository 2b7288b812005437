"""PostgreSQL store: asyncpg, a read pool, and one group-commit writer per process.

The writer owns a connection and commits whatever requests queued while the previous
batch committed: clicks by COPY, conversions and ledger rows by `unnest` inserts, one
transaction per batch. Dedupe of (advertiser, ordernumber, is_test) is the table's
unique index (an integration test's orders apart from real ones), so it is exact across
batches, processes and nodes; inside a batch only the first row per key is offered to
it. Keys are inserted in sorted order so two processes' batches cannot deadlock on each
other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

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
from clickback.storage.primitives import now_us
from clickback.storage.writer import OutageLog, fail, settle

READ_WORK_MEM = "32MB"  # per sort or hash step of a read (a hash may take twice that)

log = logging.getLogger("clickback.storage")

MIGRATION_LOCK = 0x636C6B62  # "clkb": one node migrates at a time

# an id is drawn only for an order number not stored yet: one drawn for a duplicate would
# be skipped over for good, and the rollup job waits for what it skips (`report_gaps`)
INSERT_CONVERSIONS = """
INSERT INTO conversions (
    id, refid, offer_id, affiliate_id, advertiser_id, link_id, ordernumber, orderamount,
    currency, commission, commission_currency, coupon, geo, commissionid, status,
    created_at, clicked_at, rule, flags, base_currency, rate, base_amount, base_commission, ip,
    sub1, sub2, sub3, sub4, sub5, is_test, click_missing, recorded_at, revenue_terms)
SELECT nextval(pg_get_serial_sequence('conversions', 'id')), x.refid, x.offer_id,
    x.affiliate_id, x.advertiser_id, x.link_id, x.ordernumber,
    x.orderamount, x.currency, x.commission, x.commission_currency, x.coupon, x.geo,
    x.commissionid, x.status, x.created_at, x.clicked_at, x.rule, x.flags, x.base_currency,
    x.rate, x.base_amount, x.base_commission, x.ip,
    coalesce(c.sub1, ''), coalesce(c.sub2, ''), coalesce(c.sub3, ''), coalesce(c.sub4, ''),
    coalesce(c.sub5, ''), x.is_test, (c.refid IS NULL)::int, x.recorded_at, x.revenue_terms
FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[],
            $6::text[], $7::bigint[], $8::text[], $9::bigint[], $10::text[], $11::text[],
            $12::text[], $13::text[], $14::text[], $15::bigint[], $16::bigint[], $17::smallint[],
            $18::text[], $19::text[], $20::text[], $21::text[], $22::bigint[], $23::bigint[],
            $24::text[], $25::bigint[], $26::text[])
    AS x(refid, offer_id, affiliate_id, advertiser_id, link_id, ordernumber, orderamount,
         currency, commission, commission_currency, coupon, geo, commissionid, status,
         created_at, clicked_at, is_test, rule, flags, base_currency, rate, base_amount,
         base_commission, ip, recorded_at, revenue_terms)
LEFT JOIN clicks AS c ON c.refid = x.refid
WHERE NOT EXISTS (
    SELECT 1 FROM conversions AS e
    WHERE e.advertiser_id = x.advertiser_id AND e.ordernumber = x.ordernumber
    AND e.is_test = x.is_test)
ORDER BY x.advertiser_id, x.ordernumber, x.is_test
ON CONFLICT (advertiser_id, ordernumber, is_test) DO NOTHING
RETURNING id, advertiser_id, ordernumber, is_test
"""
SELECT_EXISTING = """
SELECT c.id, c.advertiser_id, c.ordernumber, c.is_test, c.orderamount, c.currency, c.refid,
    c.commissionid, c.coupon, c.geo
FROM conversions AS c
JOIN unnest($1::bigint[], $2::text[], $3::smallint[]) AS k(advertiser_id, ordernumber, is_test)
  ON c.advertiser_id = k.advertiser_id AND c.ordernumber = k.ordernumber
  AND c.is_test = k.is_test
"""
INSERT_LEDGER = """
INSERT INTO postbacks (id, received_at, method, ip, params, refid, ordernumber, advertiser_id,
    outcome, http_status, errors, conversion_id, code, link_id, is_test, replay_of)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[],
    $6::text[], $7::text[], $8::bigint[], $9::text[], $10::int[], $11::text[], $12::bigint[],
    $13::text[], $14::bigint[], $15::smallint[], $16::bigint[])
"""
# the outbound postback is queued in the same transaction as the conversion that causes it
INSERT_DELIVERIES = """
INSERT INTO deliveries (conversion_id, affiliate_id, offer_id, event, state, next_at, created_at,
    updated_at, conversion_status)
SELECT x.c, x.a, x.o, 'conversion', CASE WHEN f.postback_disabled_at IS NULL THEN 'queued'
    ELSE 'held' END, x.t, x.t, x.t, x.s
FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[])
    AS x(c, a, o, t, s)
JOIN affiliates AS f ON f.id = x.a
"""
NEXT_IDS = "SELECT nextval(pg_get_serial_sequence($1, 'id')) FROM generate_series(1, $2)"

BUMP_VERSION = "UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'config_version'"
_CLICK = 0
_POSTBACK = 1


def split_url(url: str) -> tuple[str, str | None]:
    """The DSN for asyncpg, and the `schema` query parameter (tests use one per test)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    schema_name = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    scheme = "postgresql"
    return urlunsplit((scheme, parts.netloc, parts.path, rest, parts.fragment)), schema_name


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A pooled connection's reset on release, beyond the rollback of an open transaction
    that asyncpg always does: none. The default sends `RESET ALL`, `CLOSE ALL`, `UNLISTEN
    *` and an advisory unlock after every pooled read, a round trip each; the store sets
    nothing in a session, listens to nothing and takes advisory locks only on a
    connection of its own (`migrate`)."""


# the commit may have happened before the answer was lost: a retry of a postback that was
# stored is answered `duplicate`, never counted twice
TIMED_OUT = "storage did not answer in time; the write may or may not be recorded, retry"
# the connection lost once the batch's COMMIT was sent: the server may have committed it
LOST_AT_COMMIT = (
    "the connection to storage was lost as the write was committed; it may or may not be"
    " recorded, retry"
)


# the server's own time limits on the writer's session (`_writer_conn`)
SERVER_GAVE_UP = (asyncpg.exceptions.LockNotAvailableError, asyncpg.exceptions.QueryCanceledError)


def _answered(exc: BaseException) -> bool:
    """Whether the server answered with this error (so the transaction is rolled back),
    not the connection lost (`PostgresConnectionError` is a PostgresError too)."""
    return isinstance(exc, asyncpg.PostgresError) and not isinstance(
        exc, asyncpg.exceptions.PostgresConnectionError
    )


def _consume(task: asyncio.Future[Any]) -> None:
    """A batch given up on fails once its connection is closed: its error is known."""
    if not task.cancelled():
        task.exception()


class PostgresStore(SqlStore):
    engine = "postgres"
    unavailable_errors: tuple[type[BaseException], ...] = (
        ConnectionError,
        TimeoutError,
        asyncpg.PostgresConnectionError,  # refused, reset, closed mid-statement
        asyncpg.exceptions.OperatorInterventionError,  # shutting down, starting up
        asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full
        asyncpg.exceptions.ReadOnlySQLTransactionError,  # a standby, during a failover
    )

    def unavailable(self, exc: BaseException) -> bool:
        # a statement cancelled (its statement_timeout, a DBA's cancel) is a slow query to
        # be seen, with its traceback, not an outage to retry
        if isinstance(exc, asyncpg.exceptions.QueryCanceledError):
            return False
        return isinstance(exc, self.unavailable_errors)

    def __init__(
        self, url: str, pool_size: int = 4, batch_max: int = 512, write_timeout: float = 4.0
    ):
        self.dsn, self.schema_name = split_url(url)
        self.pool_size = pool_size
        self.batch_max = batch_max
        self.write_timeout = write_timeout
        # how long after its RefID was stamped a click may still commit: `_run` commits a
        # click within `write_timeout` of its coming or not at all; a second more covers a
        # commit that ends as it is given up on, and node clocks a little apart
        self.click_settle_us = int((write_timeout + 1.0) * 1_000_000)
        self._given_up = 0  # batches given up on (`_commit_within`)
        self.pool: asyncpg.Pool | None = None
        self._writer: asyncpg.Connection | None = None
        self._pending: list[tuple[int, Any, asyncio.Future[Any] | None]] = []
        self._queued_at: list[float] = []  # when each pending item came (monotonic)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False  # `close` ran: a write now would open a writer never closed
        self._committing = False  # the batch being written is at its commit (`_commit`)
        self._outage = OutageLog(log)

    def _settings(self) -> dict[str, str]:
        return {"search_path": self.schema_name} if self.schema_name else {}

    async def open(self) -> PostgresStore:
        # reads (reports above all) group tens of thousands of rollup rows: with the
        # default 4 MB a report's GROUP BY sorts on disk (measured: 71 ms, 33 ms hashed)
        self._closed = self._closing = False
        settings = {**self._settings(), "work_mem": READ_WORK_MEM}
        self.pool = await asyncpg.create_pool(
            self.dsn,
            min_size=1,
            max_size=self.pool_size,
            server_settings=settings,
            reset=_keep_session,
        )
        if self.schema_name and not await self.pool.fetchval(
            "SELECT 1 FROM pg_namespace WHERE nspname = $1", self.schema_name
        ):
            await self.pool.close()
            self.pool = None
            raise ConfigError(
                f"the database has no schema {self.schema_name!r} (the URL's ?schema=): "
                f'create it first (CREATE SCHEMA "{self.schema_name}"), or mend the name'
            )
        return self

    async def _writer_conn(self) -> asyncpg.Connection:
        if self._writer is None or self._writer.is_closed():
            # its statements are prepared once and reused for ever: plans cached while the
            # tables were small would scan them whole once they are not; the server gives
            # up a statement or a lock wait by itself a little before the batch is given
            # up on (`_commit_within`), so no server process waits on for a batch answered
            ms = f"{max(1, int(self.write_timeout * 900))}ms"
            settings = {
                **self._settings(),
                "plan_cache_mode": "force_custom_plan",
                "statement_timeout": ms,
                "lock_timeout": ms,
            }
            given_up = self._given_up
            conn = await asyncpg.connect(
                self.dsn, server_settings=settings, timeout=self.write_timeout
            )
            if given_up != self._given_up:  # its batch was given up on meanwhile
                conn.terminate()
                raise TimeoutError("the batch this connection was opened for was given up")
            self._writer = conn
        return self._writer

    # -- primitives ---------------------------------------------------------------

    async def _fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        assert self.pool is not None
        rows = await self.pool.fetch(self._sql(sql), *args)
        return [dict(r) for r in rows]

    async def _fetch_tuples(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        assert self.pool is not None
        return [tuple(r) for r in await self.pool.fetch(self._sql(sql), *args)]

    async def _fetch_together(
        self, queries: list[tuple[str, tuple[Any, ...]]]
    ) -> list[list[dict[str, Any]]]:
        assert self.pool is not None
        async with (
            self.pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            return [
                [dict(r) for r in await conn.fetch(self._sql(sql), *args)] for sql, args in queries
            ]

    async def _fetch_at_once(
        self, queries: list[tuple[str, tuple[Any, ...]]]
    ) -> list[list[tuple[Any, ...]]]:
        assert self.pool is not None
        pool = self.pool
        # a report of several time segments must not take every pooled connection
        room = asyncio.Semaphore(max(1, self.pool_size - 1))

        async def one(sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
            async with room, pool.acquire() as conn:
                return [tuple(r) for r in await conn.fetch(self._sql(sql), *args)]

        return list(await asyncio.gather(*(one(sql, args) for sql, args in queries)))

    async def _write(self, sql: str, *args: Any, bump: bool = False) -> Any:
        assert self.pool is not None
        async with self.pool.acquire() as conn, conn.transaction():
            value = await conn.fetchval(self._sql(sql), *args)
            if bump:
                await conn.execute(
                    "UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'config_version'"
                )
        return value

    async def _write_all(
        self,
        steps: list[tuple[str, tuple[Any, ...]]],
        *,
        bump: bool = False,
        check: bool = True,
        guards: int | None = None,
    ) -> bool:
        assert self.pool is not None
        async with self.pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            try:
                for i, (sql, args) in enumerate(steps):
                    must = check if guards is None else i < guards
                    if await conn.fetchrow(self._sql(sql), *args) is None and must:
                        await tx.rollback()
                        return False
                if bump:
                    await conn.execute(BUMP_VERSION)
            except BaseException:
                await tx.rollback()
                raise
            await tx.commit()
        return True

    async def migrate(self) -> int:
        conn = await asyncpg.connect(self.dsn, server_settings=self._settings())
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
            try:
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations "
                    "(version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)"
                )
                current = await conn.fetchval("SELECT max(version) FROM schema_migrations") or 0
                for version, _title, _sql in schema.MIGRATIONS:
                    if version > current:
                        async with conn.transaction():
                            for stmt in schema.statements("postgres", version):
                                await conn.execute(stmt)
                            await conn.execute(
                                "INSERT INTO schema_migrations VALUES ($1, $2)", version, now_us()
                            )
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
        finally:
            await conn.close()
        return schema.LATEST

    async def ping(self) -> bool:
        assert self.pool is not None
        version = await self.pool.fetchval("SELECT max(version) FROM schema_migrations")
        # a newer schema is ready too: the nodes not upgraded yet of a rolling upgrade,
        # beside the first that migrated it (migrations only add), keep serving
        return bool(version is not None and version >= schema.LATEST)

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:  # the writer drains what is pending, then ends
            self._closing = True
            self._wake.set()
            await self._task
            self._task = None
        if self._writer is not None:
            await self._writer.close()
        if self.pool is not None:
            await self.pool.close()

    # -- group commit -------------------------------------------------------------

    def _enqueue(self, kind: int, payload: Any, fut: asyncio.Future[Any] | None) -> None:
        if self._closed:
            raise UnavailableError("the store is closed; nothing was recorded")
        self._pending.append((kind, payload, fut))
        self._queued_at.append(time.monotonic())
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()

    def write_click(self, row: ClickRow) -> asyncio.Future[None]:
        fut = asyncio.get_running_loop().create_future()
        self._enqueue(_CLICK, row, fut)
        return fut

    def queue_click(self, row: ClickRow) -> None:
        self._enqueue(_CLICK, row, None)

    async def write_postback(
        self, ledger: LedgerRow, conversion: ConversionRow | None
    ) -> PostbackWritten:
        fut: asyncio.Future[PostbackWritten] = asyncio.get_running_loop().create_future()
        self._enqueue(_POSTBACK, (ledger, conversion), fut)
        return await fut

    async def _run(self) -> None:
        while self._pending or not self._closing:
            if not self._pending:
                await self._wake.wait()
                self._wake.clear()
                continue
            batch = self._pending[: self.batch_max]
            since = self._queued_at[: self.batch_max]
            del self._pending[: self.batch_max], self._queued_at[: self.batch_max]
            batch, since, left = self._in_time(batch, since)
            if not batch:
                continue
            try:
                results = await self._commit_within(batch, left)
            except (TimeoutError, *SERVER_GAVE_UP) as exc:
                # not the rows' fault: one by one, each would wait as long again
                self._outage.batch_failed(len(batch), exc)  # a server hung: `/readyz`
                fail(batch, exc, TIMED_OUT)
                await self._reset_writer()
                continue
            except Exception as exc:
                if self._committing and not _answered(exc):
                    # no answer to the COMMIT (the connection lost, or this code failing
                    # after it): the batch may be stored, and its rows written again one
                    # by one would answer a postback counted by it `duplicate` of itself,
                    # with a second ledger row, and clicks stored `nothing was recorded`
                    log.exception("write batch of %d: commit unanswered", len(batch))
                    fail(batch, exc, LOST_AT_COMMIT)
                    await self._reset_writer()
                    continue
                if self.unavailable(exc):
                    # the server out of reach (down, refusing connections): each row
                    # alone would fail as well, with a traceback of its own
                    self._outage.batch_failed(len(batch), exc)
                    fail(batch, exc)
                    await self._reset_writer()
                    continue
                log.exception("write batch of %d failed; writing its rows one by one", len(batch))
                await self._reset_writer()
                for n, item in enumerate(batch):  # one bad row must not fail the others
                    one, _, left = self._in_time([item], [since[n]])
                    try:
                        settle(one, await self._commit_within(one, left) if one else [])
                    except (TimeoutError, *SERVER_GAVE_UP) as exc:
                        fail(batch[n:], exc, TIMED_OUT)
                        await self._reset_writer()
                        break
                    except Exception as exc:
                        fail([item], exc)
                        await self._reset_writer()
                continue
            if self._outage.failed_at is not None:
                self._outage.recovered()
            settle(batch, results)

    def _in_time(
        self, batch: list[tuple[int, Any, Any]], since: list[float]
    ) -> tuple[list[tuple[int, Any, Any]], list[float], float]:
        """The batch (and when each item came) less the clicks that came `write_timeout`
        ago or more, answered 503 (or dropped, written asynchronously: their RefIDs still
        attribute), and the seconds the rest may take. A click is committed within
        `write_timeout` of its coming or not at all: the fraud screening and the rollup
        pass clicks by RefID once `click_settle_us` old, so one committed later would be
        screened and rolled up never (another process's later clicks moved their
        watermarks past it meanwhile)."""
        now = time.monotonic()
        keep = [
            n
            for n, ((k, _, _), at) in enumerate(zip(batch, since, strict=True))
            if k != _CLICK or now - at < self.write_timeout
        ]
        if len(keep) < len(batch):
            kept = set(keep)
            gone = [item for n, item in enumerate(batch) if n not in kept]
            log.error(
                "%d clicks waited %s s or more to be written; not written (%d asynchronous)",
                len(gone),
                self.write_timeout,
                sum(1 for _, _, fut in gone if fut is None),
            )
            fail(gone, TimeoutError("click not written in time"), TIMED_OUT)
            batch, since = [batch[n] for n in keep], [since[n] for n in keep]
        clicks = [at for (k, _, _), at in zip(batch, since, strict=True) if k == _CLICK]
        left = min(clicks, default=now) + self.write_timeout - now
        return batch, since, min(self.write_timeout, left)

    async def _commit_within(self, batch: list[tuple[int, Any, Any]], left: float) -> list[Any]:
        """`_commit`, or TimeoutError after `left` seconds: a server that hangs
        rather than fails must not hold the requests waiting on it for ever. The batch
        is not cancelled (a cancelled statement's rollback would wait on the same server):
        its connection is closed under it, and a new one opened for the next batch."""
        task = asyncio.ensure_future(self._commit(batch, left))
        done, _ = await asyncio.wait({task}, timeout=max(0.0, left))
        if done:
            return task.result()
        log.error("write batch of %d unanswered after %.1f s", len(batch), left)
        self._given_up += 1
        task.add_done_callback(_consume)
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.terminate()
        raise TimeoutError(f"no answer from PostgreSQL in {left:.1f} s")

    async def _reset_writer(self) -> None:
        if self._writer is not None and not self._writer.is_closed():
            with contextlib.suppress(Exception):
                await self._writer.close()
        self._writer = None

    async def _commit(self, batch: list[tuple[int, Any, Any]], left: float) -> list[Any]:
        self._committing = False  # set once nothing but the commit is left to do
        conn = await self._writer_conn()
        clicks = [p for k, p, _ in batch if k == _CLICK]
        postbacks: list[tuple[LedgerRow, ConversionRow | None]] = [
            p for k, p, _ in batch if k == _POSTBACK
        ]
        if not postbacks:  # a COPY is a transaction of its own: no BEGIN and COMMIT
            # nor any word from here after its rows: given up on, it would still commit,
            # so with less time left than usual the server is told to give up in time
            short = left < self.write_timeout * 0.9
            if short:
                await conn.execute(f"SET statement_timeout = {max(1, int(left * 900))}")
            self._committing = True  # the COPY commits by itself
            await self._copy_clicks(conn, clicks)
            if short:
                await conn.execute("RESET statement_timeout")
            return [None] * len(batch)
        async with conn.transaction():
            if clicks:
                await self._copy_clicks(conn, clicks)
            written = await self._commit_postbacks(conn, postbacks)
            self._committing = True
        it = iter(written)
        return [next(it) if k == _POSTBACK else None for k, _, _ in batch]

    async def _copy_clicks(self, conn: asyncpg.Connection, clicks: list[Any]) -> None:
        await conn.copy_records_to_table(
            "clicks", records=clicks, columns=CLICK_COLUMNS, schema_name=self.schema_name
        )

    async def _commit_postbacks(
        self, conn: asyncpg.Connection, postbacks: list[tuple[LedgerRow, ConversionRow | None]]
    ) -> list[PostbackWritten]:
        # first row per (advertiser, ordernumber, is_test) is offered to the unique index
        first: dict[tuple[int, str, int], ConversionRow] = {}
        for _, conv in postbacks:
            if conv is not None:
                first.setdefault((conv.advertiser_id, conv.ordernumber, conv.is_test), conv)
        ids: dict[tuple[int, str, int], tuple[int, bool]] = {}  # key -> (id, inserted here)
        stored: dict[tuple[int, str, int], StoredOrder] = {}  # key -> one of another batch
        if first:
            offered = [first[k] for k in sorted(first)]
            cols = list(
                zip(
                    *[
                        (
                            c.refid,
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
                            c.clicked_at,
                            c.is_test,
                            c.rule,
                            c.flags,
                            c.base_currency,
                            c.rate,
                            c.base_amount,
                            c.base_commission,
                            c.ip,
                            c.recorded_at,
                            c.revenue_terms,
                        )
                        for c in offered
                    ],
                    strict=True,
                )
            )
            inserted = {
                (r[1], r[2], r[3]): r[0] for r in await conn.fetch(INSERT_CONVERSIONS, *cols)
            }
            missing = []
            outbox = []
            for c in offered:
                key = (c.advertiser_id, c.ordernumber, c.is_test)
                i = inserted.get(key)
                if i is not None:
                    ids[key] = (i, True)
                    if c.delivery:
                        outbox.append((i, c.affiliate_id, c.offer_id, c.recorded_at, c.status))
                else:
                    missing.append(key)
            if outbox:
                await conn.execute(INSERT_DELIVERIES, *zip(*outbox, strict=True))
            if missing:
                rows = await conn.fetch(SELECT_EXISTING, *zip(*missing, strict=True))
                for r in rows:
                    ids[(r[1], r[2], r[3])] = (r[0], False)
                    stored[(r[1], r[2], r[3])] = StoredOrder(r[0], *r[4:])
        ledger_ids = [r[0] for r in await conn.fetch(NEXT_IDS, "postbacks", len(postbacks))]
        out: list[PostbackWritten] = []
        ledger_rows = []
        for lid, (ledger, conv) in zip(ledger_ids, postbacks, strict=True):
            outcome, conversion_id, repeats = ledger.outcome, ledger.conversion_id, None
            if conv is not None:
                key = (conv.advertiser_id, conv.ordernumber, conv.is_test)
                conversion_id, inserted_here = ids[key]
                if not (inserted_here and first[key] is conv):
                    outcome = Outcome.DUPLICATE
                    f = first[key]  # counted in this batch: compared with as written
                    repeats = stored.get(key) or StoredOrder(
                        conversion_id,
                        f.orderamount,
                        f.currency,
                        f.refid,
                        f.commissionid,
                        f.coupon,
                        f.geo,
                    )
                    ledger = attribution.ledger_duplicate(ledger, conv, repeats)
            out.append(PostbackWritten(outcome, conversion_id, lid, repeats))
            ledger_rows.append(
                (
                    lid,
                    ledger.received_at,
                    ledger.method,
                    ledger.ip,
                    ledger.params,
                    ledger.refid,
                    ledger.ordernumber,
                    ledger.advertiser_id,
                    outcome.value,
                    ledger.http_status,
                    ledger.errors,
                    conversion_id,
                    ledger.code,
                    ledger.link_id,
                    ledger.is_test,
                    ledger.replay_of,
                )
            )
        await conn.execute(INSERT_LEDGER, *zip(*ledger_rows, strict=True))
        return out
