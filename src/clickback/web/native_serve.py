"""The native front's server (`clickback serve --server native`): the listening socket,
the connections' timeouts, the stop, and several worker processes on one port.

- a request not received whole (its line and headers within
  CLICKBACK_HTTP_REQUEST_SECONDS of its first byte, its body with no pause that long) is
  answered 408 and its connection closed; a connection idle past
  CLICKBACK_HTTP_IDLE_SECONDS is closed;
- on SIGTERM or SIGINT: no new connections; the requests that came are answered (up
  to `STOP_GRACE`), idle connections closed, then the app's shutdown (the writer's
  last batch);
- `serve_workers`: N processes on one port (SO_REUSEPORT), each started again if it
  dies.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from clickback.web.app import ClickbackApp
from clickback.web.native import Connection, clock

log = logging.getLogger("clickback")

STOP_GRACE = 10.0


class NativeServer:
    """Listens on one socket and serves `app` on this process's event loop."""

    def __init__(self, app: ClickbackApp, sock: socket.socket):
        self.app = app
        self.sock = sock
        name = sock.getsockname()
        self.address = (name[0], name[1])
        self.connections: set[Connection] = set()  # open
        self.tasks: set[asyncio.Task[None]] = set()  # requests answered in a task of their own
        self.stopping = False
        self.loop = asyncio.get_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._sweep: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.app.startup()
        self._server = await self.loop.create_server(
            lambda: Connection(self), sock=self.sock, backlog=2048
        )
        self._tick()

    def _tick(self) -> None:
        """Each second: the Date line, and the connections past their timeouts."""
        clock.tick()
        now = time.monotonic()
        settings = self.app.settings
        limit = settings.http_request_seconds
        for conn in list(self.connections):
            if conn.writable is not None and now - conn.stalled > settings.http_idle_seconds:
                conn.transport.abort()  # its answers unread: dropped, not flushed for ever
                continue
            if conn.closing:
                continue
            if conn.request is not None:
                if conn.paused:  # the server holds it (its upload unread, a queue): not late
                    continue
                since = now - (conn.last if conn.headed else conn.started)
                if since > limit:
                    conn.refuse(408, b"request not received in time")
            elif not conn.busy and not conn.queue and now - conn.last > settings.http_idle_seconds:
                conn.closing = True
                conn.transport.close()
                if conn.transport.get_write_buffer_size():
                    conn.transport.abort()
        self._sweep = self.loop.call_later(1.0, self._tick)

    async def stop(self) -> None:
        """No new connections; what came is answered (up to STOP_GRACE), idle
        connections closed, then the app's own shutdown."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        deadline = time.monotonic() + STOP_GRACE
        while time.monotonic() < deadline:
            for conn in list(self.connections):
                if not conn.busy and not conn.queue and conn.request is None:
                    conn.closing = True
                    conn.transport.close()
            if not self.connections:
                break
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.transport.abort()  # a postback being received is still kept, cut
        # the answers still being made (a postback a closed connection handed over) end
        # before the app's shutdown closes the store
        deadline = time.monotonic() + 2
        while self.tasks and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self._sweep is not None:
            self._sweep.cancel()
        await self.app.shutdown()


def listening_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def serve(app_factory: Callable[[], ClickbackApp], sock: socket.socket) -> None:
    """Run the server on `sock` until SIGTERM or SIGINT; exits 1 if start-up fails."""
    import uvloop

    async def main() -> None:
        server = NativeServer(app_factory(), sock)
        try:
            await server.start()
        except Exception:
            log.exception("start-up failed")
            raise SystemExit(1) from None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop()

    uvloop.run(main())


def _worker(host: str, port: int) -> None:
    """One worker process of `serve_workers`: its own socket on the shared port."""
    from clickback.web.app import app_from_env

    serve(app_from_env, listening_socket(host, port, reuse_port=True))


# a worker that exits 1 this soon after it started failed to start: the others would too
START_FAILURE_SECONDS = 5.0


def serve_workers(host: str, port: int, workers: int) -> int:
    """`workers` processes serving one port (SO_REUSEPORT: the kernel spreads the
    connections), until SIGTERM or SIGINT, passed on to each. A worker that dies is
    started again; one that fails as it starts (exit 1) stops them all. Returns the exit code."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no state forked
    procs: dict[int, Any] = {}
    started: dict[int, float] = {}
    waiting: dict[int, float] = {}  # slot: when its worker may be started again
    stopping = False

    def start(slot: int) -> None:
        proc = ctx.Process(target=_worker, args=(host, port), name=f"clickback-worker-{slot}")
        proc.start()
        procs[slot], started[slot] = proc, time.monotonic()

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    for slot in range(workers):
        start(slot)
    code = 0
    while not stopping:
        time.sleep(0.2)
        now = time.monotonic()
        for slot, proc in list(procs.items()):
            if proc.is_alive() or stopping:
                continue
            if slot in waiting:
                if now >= waiting[slot]:
                    del waiting[slot]
                    start(slot)
                continue
            quick = now - started[slot] < START_FAILURE_SECONDS
            if proc.exitcode == 1 and quick:
                log.error("worker %d failed as it started (exit %s): stopping", slot, proc.exitcode)
                stopping, code = True, 1
                break
            if quick:  # dying again and again (out of memory, say): not in a tight loop
                log.error("worker %d ended (exit %s) as it started: another in %.0f s",
                          slot, proc.exitcode, START_FAILURE_SECONDS)  # fmt: skip
                waiting[slot] = now + START_FAILURE_SECONDS
                continue
            log.error("worker %d ended (exit %s): starting another", slot, proc.exitcode)
            start(slot)
    for proc in procs.values():
        if proc.is_alive():
            proc.terminate()  # SIGTERM: answers what began, then its shutdown
    deadline = time.monotonic() + STOP_GRACE + 30
    for proc in procs.values():
        proc.join(max(0.1, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join()
    return code
