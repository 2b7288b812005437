"""A watchdog for the event loop that answers clicks and postbacks: every request waits
while the loop runs something long (a job's pass, a sort, a large apply), and nothing
in the request's own figures says why. A callback the loop runs every quarter of the
threshold marks that it turned; a thread of its own checks the mark, and when the loop
has not turned for the threshold, reads where the loop's thread is (its Python stack)
and, once the loop turns again, logs one warning with how long it was stopped and that
stack (`CLICKBACK_LOOP_STALL_MS`).

The stack is taken while the loop is stopped, so it names what stopped it, or what it
was waiting for: a thread that holds the GIL for long (a sort, a C call that never lets
go) shows as the loop's thread waiting in whatever call it made last. When the
watchdog's own thread could not run during the stop (it waits for the GIL too), the
loop notes the stop itself, once it turns, without a stack."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback

log = logging.getLogger("clickback.loop")

STACK_DEPTH = 12  # innermost frames logged


class LoopWatchdog:
    def __init__(self, threshold: float, logger: logging.Logger = log):
        self.threshold = threshold  # seconds
        self.every = threshold / 4
        self.log = logger
        self.stops = 0  # stops logged
        self.longest = 0.0  # seconds
        self._beat_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._thread: threading.Thread | None = None
        self._loop_thread = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._caught = -1.0  # the mark whose stop the watchdog's thread logs

    def start(self) -> None:
        """Watches the running loop from now on."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._beat_at = time.monotonic()
        self._beat()
        self._thread = threading.Thread(
            target=self._watch, name="clickback-loop-watchdog", daemon=True
        )
        self._thread.start()
        self.log.info(
            "event loop watched: stops of %.0f ms or more are logged", self.threshold * 1000
        )

    def stop(self) -> None:
        self._stop.set()
        if self._handle is not None:
            self._handle.cancel()
        if self._thread is not None:
            self._thread.join()

    def _beat(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = self._beat_at + self.every
            caught = self._caught == self._beat_at  # the watchdog's thread logs it
            self._beat_at = now
        assert self._loop is not None
        self._handle = self._loop.call_later(self.every, self._beat)
        if not caught and now - due >= self.threshold:
            # the watchdog's thread could not run meanwhile: something held the GIL
            self._note(now - due, "no stack: the watchdog's thread could not run meanwhile")

    def _note(self, stopped: float, where: str) -> None:
        self.stops += 1
        self.longest = max(self.longest, stopped)
        self.log.warning(
            "event loop stopped for %.0f ms (every request waited); %s", stopped * 1000, where
        )

    def _watch(self) -> None:
        while not self._stop.wait(self.every):
            last = self._beat_at
            due = last + self.every  # when the next mark should have come
            if time.monotonic() - due < self.threshold:
                continue
            frame = sys._current_frames().get(self._loop_thread)
            stack = traceback.format_list(traceback.extract_stack(frame, limit=STACK_DEPTH))
            with self._lock:
                if self._beat_at != last:
                    continue  # it turned meanwhile (and noted the stop itself)
                self._caught = last
            while self._beat_at == last and not self._stop.wait(self.every / 4):
                pass
            if self._beat_at == last:
                return  # stopped while the loop was
            where = "its thread was at:\n" + "".join(stack).rstrip()
            self._note(self._beat_at - due, where)
