"""PostgreSQL: a batch whose COMMIT reached the server but whose answer never came back
(the connection lost right then) may be stored. Its requests are told so (503, the write
may or may not be recorded, retry), not written again one by one: that answered a
postback its own batch counted `duplicate` of itself, with a second ledger row. A retry
of the postback is a duplicate, once."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import pytest

from clickback.domain.models import Outcome
from clickback.errors import UnavailableError
from clickback.storage.postgres import LOST_AT_COMMIT, PostgresStore
from tests.conftest import PG_URL
from tests.storage.test_group_commit import click_row, conv, ledger, setup

SERVER = ("127.0.0.1", 5432)


class CommitCutter:
    """A TCP relay to PostgreSQL on loopback that, armed, passes the writer's next COMMIT
    on to the server and then closes the connection without passing the answer back."""

    def __init__(self) -> None:
        self.armed = False
        self.cut = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(*SERVER)
        writer = False  # the group-commit writer's connection (its startup names its settings)
        silenced = asyncio.Event()

        async def upstream() -> None:
            nonlocal writer
            while data := await client_r.read(65536):
                writer = writer or b"plan_cache_mode" in data
                server_w.write(data)
                await server_w.drain()
                if writer and self.armed and b"COMMIT" in data:
                    self.armed = False
                    self.cut += 1
                    silenced.set()
                    await asyncio.sleep(0.3)  # the server commits; its answer goes nowhere
                    break

        async def downstream() -> None:
            while data := await server_r.read(65536):
                if not silenced.is_set():
                    client_w.write(data)
                    await client_w.drain()

        with contextlib.suppress(Exception):
            await asyncio.wait(
                [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())],
                return_when=asyncio.FIRST_COMPLETED,
            )
        for w in (client_w, server_w):
            w.close()


async def test_a_commit_whose_answer_is_lost_is_not_written_again(
    store: PostgresStore,
) -> None:
    if not isinstance(store, PostgresStore):
        pytest.skip("SQLite commits in the process: no answer to lose")
    cutter = CommitCutter()
    port = await cutter.start()
    url = PG_URL.replace("127.0.0.1:5432", f"127.0.0.1:{port}")
    assert url != PG_URL
    relayed = PostgresStore(f"{url}?schema={store.schema_name}")
    await relayed.open()
    try:
        adv, link = await setup(store)
        await relayed.write_click(click_row("BEFORE", link))  # the writer is connected
        cutter.armed = True
        with pytest.raises(UnavailableError) as lost:
            await relayed.write_postback(ledger("LOST-1"), conv(adv, link, "LOST-1"))
        assert cutter.cut == 1 and lost.value.message == LOST_AT_COMMIT
        # the server committed the batch: stored once, with one ledger row
        check = await asyncpg.connect(
            PG_URL, server_settings={"search_path": store.schema_name or ""}
        )
        try:
            assert await check.fetchval("SELECT count(*) FROM conversions") == 1
            outcomes = await check.fetch("SELECT outcome FROM postbacks")
            assert [r["outcome"] for r in outcomes] == ["accepted"]
        finally:
            await check.close()
        # the advertiser's retry, on a new writer connection: a duplicate of it, not counted
        again = await relayed.write_postback(ledger("LOST-1"), conv(adv, link, "LOST-1"))
        assert again.outcome is Outcome.DUPLICATE
    finally:
        await relayed.close()
        await cutter.stop()


class Unplugged(CommitCutter):
    """The relay, which `unplug` closes with every connection through it: the server is
    then out of reach, a new connection refused."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[asyncio.StreamWriter] = []

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.open.append(client_w)
        await super()._relay(client_r, client_w)

    async def unplug(self) -> None:
        await self.stop()
        for w in self.open:
            w.close()


async def test_a_server_out_of_reach_fails_the_batch_at_once_with_one_log_line(
    store: PostgresStore, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL down: a batch is answered 503 at once, not retried row by row (each row
    failed again, with a traceback of its own: a thousand in seven seconds of an outage
    under load), and the log says so once, not once a batch."""
    if not isinstance(store, PostgresStore):
        pytest.skip("a PostgreSQL server to lose")
    relay = Unplugged()
    port = await relay.start()
    url = PG_URL.replace("127.0.0.1:5432", f"127.0.0.1:{port}")
    relayed = PostgresStore(f"{url}?schema={store.schema_name}")
    await relayed.open()
    try:
        adv, link = await setup(store)
        await relayed.write_click(click_row("BEFORE", link))  # the writer is connected
        await relay.unplug()
        for round_ in range(3):
            answers = await asyncio.gather(
                *(
                    relayed.write_postback(ledger(f"D{round_}-{i}"), conv(adv, link, f"D{i}"))
                    for i in range(5)
                ),
                return_exceptions=True,
            )
            assert all(isinstance(a, UnavailableError) for a in answers), answers
        said = [r for r in caplog.records if r.name == "clickback.storage"]
        assert not any("one by one" in r.getMessage() for r in said), said
        [line] = [r for r in said if "out of reach" in r.getMessage()]
        assert line.exc_info is None  # a line, not a traceback
        assert relayed.writes_failing(10.0) is not None  # `/readyz` says not ready
    finally:
        await relayed.close()
