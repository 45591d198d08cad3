"""The SQLite file behind a database URL: one server process at a time, and never created by
a command that only reads.

SQLite is the embedded database of one server process: two servers writing one file would
each keep their own watch hub and timers, so a second `signoff serve` on the same file is
refused. The file is marked taken by an exclusive flock(2) on FILE.lock beside it, held as
long as the server process lives (the kernel drops it when the process ends, however it
ends), with the holder's pid written inside for the message.
"""

import fcntl
import os
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


class DatabaseFileError(Exception):
    """The database file cannot be used as asked; the message says why, in one line."""


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL; None for other databases and for in-memory SQLite."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if parsed.query.get("uri") in ("true", "1") and database.startswith("file:"):
        database = database.removeprefix("file:").partition("?")[0]
    if database in ("", ":memory:") or parsed.query.get("mode") == "memory":
        return None
    return Path(database)


def lock_path(database: Path) -> Path:
    return database.with_name(database.name + ".lock")


def hold(url: str) -> Callable[[], None]:
    """Takes the SQLite file of `url` for this process and returns what lets it go;
    DatabaseFileError when another process holds it. Other databases (PostgreSQL, which
    replicas share) are not held."""
    database = sqlite_file(url)
    if database is None:
        return lambda: None
    lock = lock_path(database)
    try:
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as error:
        raise DatabaseFileError(
            f"cannot open {lock}, the lock file of the SQLite database {database}: {error.strerror}"
        ) from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip()
        os.close(descriptor)
        by = f" (pid {holder})" if holder.isdigit() else ""
        raise DatabaseFileError(
            f"the SQLite database {database} is in use by another signoff server{by}: "
            "one server per SQLite file (stop the other one, or give this one another "
            "--database-url; several servers share a PostgreSQL database)"
        ) from None
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
    return lambda: os.close(descriptor)  # closing drops the lock


def require_existing(url: str) -> None:
    """For commands that only read: a SQLite file that does not exist is an error, not a new,
    empty database."""
    database = sqlite_file(url)
    if database is not None and not database.is_file():
        raise DatabaseFileError(f"no SQLite database at {database} (from {url})")
