"""A real `clickback serve` process on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest

from clickback.config import Settings
from clickback.domain.ports import Store
from clickback.domain.tracker import Tracker, open_tracker
from clickback.storage import open_store
from tests.conftest import PG_URL

T = TypeVar("T")

CLICKBACK = str(Path(sys.executable).parent / "clickback")


# Ports below the kernel's ephemeral range (32768-60999), a block of its own for each
# pytest-xdist worker: a port handed out here is never the local end of a connection, nor
# another worker's server (each worker runs its tests one at a time, on new ports)
_BLOCK = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0) % 24
_PORTS = itertools.cycle(range(20000 + 500 * _BLOCK, 20500 + 500 * _BLOCK))


def free_port() -> int:
    """A loopback port nothing listens on now, from this test process's block."""
    for _ in range(500):
        port = next(_PORTS)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in this test process's block")


def table_rows(out: str) -> list[dict[str, str]]:
    """A Rich table's records as printed, each cell's lines joined (a long value folded
    onto more lines comes back whole); a record starts where its first cell is filled."""
    lines = [x for x in out.splitlines() if x.startswith(("┃", "│"))]
    header = [c.strip() for c in lines[0].strip("┃").split("┃")]
    records: list[dict[str, str]] = []
    for line in lines[1:]:
        cells = [c.strip() for c in line.strip("│").split("│")]
        if cells[0]:
            records.append(dict.fromkeys(header, ""))
        for name, cell in zip(header, cells, strict=True):
            records[-1][name] += cell
    return records


def in_store(db: str, work: Callable[[Store], Awaitable[None]]) -> None:
    """`work` done on the database as another process (a server) would."""

    async def go() -> None:
        store = await open_store(db, Settings(database_url=db))
        try:
            await work(store)
        finally:
            await store.close()

    asyncio.run(go())


def in_tracker(db: str, work: Callable[[Tracker], Awaitable[T]]) -> T:
    """`work` done by the server's tracker over the same database."""

    async def go() -> T:
        store = await open_store(db, Settings(database_url=db))
        try:
            await store.migrate()
            return await work(await open_tracker(store))
        finally:
            await store.close()

    return asyncio.run(go())


def click(db: str, code: str, user_agent: str = "Firefox") -> str:
    """A click on the link; its RefID."""
    location = in_tracker(db, lambda t: t.click(code, "", "198.51.100.4", user_agent, ""))
    assert location is not None
    return parse_qs(urlsplit(location).query)["refid"][0]


def fire(db: str, *postbacks: dict[str, str]) -> list[int]:
    """Postbacks decided and stored as the server would; their ledger ids."""

    async def work(tracker: Tracker) -> list[int]:
        return [(await tracker.postback("GET", "198.51.100.4", p)).ledger_id for p in postbacks]

    return in_tracker(db, work)


def cli(*args: str, db: str, columns: int | None = None, exit_code: int = 0) -> str:
    """`clickback ARGS --db DB`'s output, once it exited `exit_code`; `columns`: the
    terminal's width it is told."""
    env = {**os.environ, "COLUMNS": str(columns)} if columns else None
    out = subprocess.run(
        [CLICKBACK, *args, "--db", db], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == exit_code, out.stdout + out.stderr
    return out.stdout


class Server:
    """`clickback serve` in its own process group, so SIGKILL takes its workers too."""

    def __init__(
        self, db: str, tmp: Path, env: dict[str, str] | None = None, cwd: Path | None = None
    ):
        self.db = db
        self.cwd = cwd
        self.kind = "native"  # the --server it was started with, where a test says
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"serve-{self.port}.log"
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: httpx.Client | None = None  # closed by stop()

    def start(self, *extra: str) -> None:
        for _ in range(3):
            if self._start(extra):
                return
            # the free port was taken meanwhile (another test's server, or the local end
            # of a connection, when tests run in parallel): another port
            self.port = free_port()
            self.base = f"http://127.0.0.1:{self.port}"
        raise RuntimeError(f"server did not become ready:\n{self.log.read_text()[-3000:]}")

    def _start(self, extra: tuple[str, ...]) -> bool:
        """False if it could not listen on its port; raises if it failed otherwise."""
        seen = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [CLICKBACK, "serve", "--db", self.db, "--port", str(self.port), *extra],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        said = self.log.read_bytes()[seen:].decode(errors="replace")
        if self.proc.poll() is not None and "cannot listen on" in said:
            return False
        raise RuntimeError(f"server did not become ready:\n{self.log.read_text()[-3000:]}")

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


@pytest.fixture
def sqlite_db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'e2e.db'}"


@pytest.fixture
def server(sqlite_db: str, tmp_path: Path) -> Iterator[Server]:
    srv = Server(sqlite_db, tmp_path)
    yield srv
    srv.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL on each engine: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cli.db'}"
        return
    schema = "c_" + uuid.uuid4().hex[:12]

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(PG_URL)
        await conn.execute(sql)
        await conn.close()

    asyncio.run(run(f"CREATE SCHEMA {schema}"))
    yield f"{PG_URL}?schema={schema}"
    asyncio.run(run(f"DROP SCHEMA {schema} CASCADE"))
