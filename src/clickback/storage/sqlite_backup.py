"""`clickback backup` on SQLite: the database and its report file copied while it is
in use, from one snapshot, on a read-only connection of its own (no store is opened:
the live files are read, never changed)."""

from __future__ import annotations

import os
import sqlite3
from contextlib import suppress
from urllib.parse import quote

from clickback.errors import InputError
from clickback.storage.sqlite import reports_path, unreadable


def _uri(path: str) -> str:
    return f"file:{quote(os.path.abspath(path))}?mode=ro"


def source(path: str) -> sqlite3.Connection:
    """The database, read-only, with its report file attached (`reports`) where it has
    one. A file that is no SQLite database (or not one this SQLite reads) is named."""
    conn = sqlite3.connect(_uri(path), uri=True, isolation_level=None)
    reading = path
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("SELECT count(*) FROM main.sqlite_master").fetchone()
        if os.path.isfile(reports_path(path)):
            reading = reports_path(path)
            conn.execute("ATTACH DATABASE ? AS reports", (_uri(reading),))
            conn.execute("SELECT count(*) FROM reports.sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise unreadable(reading, exc) from None
    except BaseException:
        conn.close()
        raise
    return conn


def _exists(target: str) -> InputError:
    return InputError(f"{target} exists: a backup is written to new files", code="backup")


def backup_files(path: str, dest: str) -> list[tuple[str, int]]:
    """Copies the database at `path` to `dest` and its report file to `dest`'s, as they
    were at one moment. Each is written under a temporary name (`….partial-PID`) and
    given its own name only once both are whole and checked: a copy cut short (an error,
    a kill) is never found under a backup's name. The files made: paths and sizes."""
    targets = [("main", dest), ("reports", reports_path(dest))]
    for _, target in targets:
        if os.path.lexists(target):
            raise _exists(target)
    if not os.path.isdir(os.path.dirname(os.path.abspath(dest))):
        raise InputError(f"{os.path.dirname(dest)} is not a directory", code="backup")
    src = source(path)
    schemas = {row[1] for row in src.execute("PRAGMA database_list")}
    targets = [(name, target) for name, target in targets if name in schemas]
    partial = {target: f"{target}.partial-{os.getpid()}" for _, target in targets}
    made: list[str] = []
    try:
        src.execute("BEGIN")  # one snapshot of both files: their rows and rollups agree
        # each file's snapshot is taken as it is first read: the report file's first, so
        # that the database's, as late or later, holds every row its rollups folded
        for schema_name, _ in reversed(targets):
            src.execute(f"SELECT count(*) FROM {schema_name}.sqlite_master").fetchone()
        for schema_name, target in targets:
            out = sqlite3.connect(partial[target])
            made.append(partial[target])
            try:
                src.backup(out, name=schema_name)  # in one step: a paged one starts
                # again at every write of another connection, for ever under load
                found = out.execute("PRAGMA quick_check").fetchone()[0]
                if found != "ok":
                    raise InputError(f"the copy {target} failed its check: {found}", code="backup")
            finally:
                out.close()
        src.execute("COMMIT")
        for _, target in reversed(targets):  # the database's name last: it is the backup
            _publish(partial[target], target)
            made.append(target)
        _sync_dir(os.path.dirname(os.path.abspath(dest)))
    except BaseException:
        for name in made:  # no half backup left to be mistaken for a whole one
            with suppress(FileNotFoundError):
                os.remove(name)
        raise
    finally:
        src.close()
        for name in partial.values():
            with suppress(FileNotFoundError):
                os.remove(name)
    return [(target, os.path.getsize(target)) for _, target in targets]


def _publish(partial: str, target: str) -> None:
    """Gives the copy its name: a hard link, which never replaces a file made there
    meanwhile; where the file system has none (FAT, some network mounts), a rename once
    the name is seen free."""
    try:
        os.link(partial, target)
        return
    except FileExistsError:
        pass
    except OSError:
        if not os.path.lexists(target):
            os.rename(partial, target)
            return
    raise _exists(target)


def _sync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
