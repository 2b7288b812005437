"""`clickback backup` on SQLite: the database and its report file copied while it is
in use, from one snapshot (`SqliteStore.backup`)."""

from __future__ import annotations

import os
import sqlite3
from contextlib import suppress

from clickback.errors import InputError
from clickback.storage.sqlite import connect, reports_path


def backup_files(path: str, dest: str) -> list[tuple[str, int]]:
    """`SqliteStore.backup`'s work, on a connection of its own."""
    targets = (("main", dest), ("reports", reports_path(dest)))
    for _, target in targets:
        if os.path.lexists(target):
            raise InputError(f"{target} exists: a backup is written to new files", code="backup")
    if not os.path.isdir(os.path.dirname(os.path.abspath(dest))):
        raise InputError(f"{os.path.dirname(dest)} is not a directory", code="backup")
    src = connect(path)
    made: list[str] = []
    try:
        src.execute("BEGIN")  # one snapshot of both files: their rows and rollups agree
        # each file's snapshot is taken as it is first read: the report file's first, so
        # that the database's, as late or later, holds every row its rollups folded
        for schema_name in ("reports", "main"):
            src.execute(f"SELECT count(*) FROM {schema_name}.sqlite_master").fetchone()
        for schema_name, target in targets:
            out = sqlite3.connect(target)
            made.append(target)
            try:
                src.backup(out, name=schema_name)  # in one step: a paged one starts
                # again at every write of another connection, for ever under load
                found = out.execute("PRAGMA quick_check").fetchone()[0]
                if found != "ok":
                    raise InputError(f"the copy {target} failed its check: {found}", code="backup")
            finally:
                out.close()
        src.execute("COMMIT")
    except BaseException:
        for target in made:  # no half backup left to be mistaken for a whole one
            with suppress(FileNotFoundError):
                os.remove(target)
        raise
    finally:
        src.close()
    return [(target, os.path.getsize(target)) for _, target in targets]
