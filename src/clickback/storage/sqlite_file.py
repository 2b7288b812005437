"""The SQLite database file itself, beside what is stored in it: its WAL checkpoints, in
a thread of their own, and whether the file at its path is still the one the server
opened."""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

log = logging.getLogger("clickback.storage")


class Checkpointer:
    """WAL checkpoints in a thread of their own, off the event loop: left to the writer,
    SQLite checkpoints inside the commit that crosses 1,000 pages of WAL, 8-18 ms during
    which no request is answered. Every `every` seconds a PASSIVE checkpoint copies what
    it can without blocking anyone (sqlite3 lets go of the GIL meanwhile).

    Under a steady load a passive checkpoint never quite catches up (the writer commits
    more while it copies), and SQLite writes the WAL from its start again only once every
    frame in it has been copied: so past `restart_pages` of WAL the thread holds the
    group-commit writer's next commit back (`hold`, a context manager the store gives)
    while one more PASSIVE copies the frames committed during the last, and the writer's
    next transaction starts the WAL over. The hold lasts that copy and two fsyncs (WAL,
    database): 9-15 ms at most per run measured under a steady write load, about twice
    a second at 1,024 pages (larger thresholds made longer holds), where the TRUNCATE
    that kept the WAL short before held every writer for 330-440 ms every 20 s or so on
    the same machine (it truncates a 256 MB file; `bench/wal_stall.py`). A WAL that
    still grows past `truncate_pages` (a reader kept the restarts from happening) is
    checkpointed with TRUNCATE, as the last resort."""

    def __init__(
        self,
        path: str,
        every: float = 0.5,
        truncate_pages: int = 65_536,
        restart_pages: int = 1_024,
        hold: Callable[[], AbstractContextManager[None]] | None = None,
    ):
        self.path = path
        self.every = every
        self.truncate_pages = truncate_pages
        self.restart_pages = restart_pages
        self.hold = hold
        self.passes = 0
        self.truncates = 0
        self.restarts = 0  # holds after which every frame had been copied
        self.held_s = 0.0  # the longest hold
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clickback-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            # TRUNCATE waits for readers (a report's snapshot) while it holds writers
            # back: it gives up after 20 ms, so a commit waits no longer, and is tried
            # again on the next pass
            conn.execute("PRAGMA busy_timeout = 20")
        except sqlite3.Error:
            log.exception("WAL checkpoints cannot start: the WAL grows until restart")
            return
        try:
            while not self._stop.wait(self.every):
                try:
                    self._pass(conn)
                except sqlite3.Error as e:  # busy, or the file went away: try next time
                    log.warning("WAL checkpoint failed: %s", e)
        finally:
            conn.close()

    def _pass(self, conn: sqlite3.Connection) -> None:
        passive = "PRAGMA wal_checkpoint(PASSIVE)"
        busy, pages, done = conn.execute(passive).fetchone()
        self.passes += 1
        if busy or pages < 0:  # another connection is checkpointing: next time
            return
        if pages > self.truncate_pages:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            self.truncates += 1
        elif pages >= self.restart_pages and self.hold is not None:
            # each pass copies what was there when it began: passes without the hold
            # until one finds little committed during the one before, so that the pass
            # under the hold copies only a little (its two fsyncs are the rest)
            for _ in range(4):
                busy, now, done = conn.execute(passive).fetchone()
                if busy or now < 0:
                    return
                new, pages = now - pages, now
                if new + (now - done) <= _CLOSE_PAGES:  # committed since, and left over
                    break
            start = time.perf_counter()
            with self.hold():
                busy, pages, done = conn.execute(passive).fetchone()
            self.held_s = max(self.held_s, time.perf_counter() - start)
            self.restarts += not busy and pages == done > 0

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


_CLOSE_PAGES = 128  # frames left for the pass under the hold, at most, when it can


def file_identity(path: str) -> tuple[int, int] | None:
    """The file at `path` (its device and inode); None when there is none (or a network
    file system says the handle is stale: not the file opened either). Another error (a
    permission, an I/O error) says nothing of which file is there: raised."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ESTALE:
            return None
        raise
    return st.st_dev, st.st_ino


class FileGone(sqlite3.OperationalError):
    """The database file was removed or replaced while open. What would be written goes
    to a file no one opens again (lost at the next start), or, through the WAL file
    still at the path, into the file moved there (corrupting it); a connection opened
    now would open that other file. So nothing more is read or written: the server must
    be restarted on the file that is there."""


def no_writes(action: int, *_: object) -> int:
    """An authorizer that refuses every write (set once the file is gone, so that none
    gets through a way the checks do not cover)."""
    return sqlite3.SQLITE_DENY if action in _WRITES else sqlite3.SQLITE_OK


_WRITES = frozenset((sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE))
