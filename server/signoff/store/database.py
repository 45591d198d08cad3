"""Engines and transactions for SQLite (embedded default) and PostgreSQL.

A database that cannot be reached (PostgreSQL down or restarting, the connection lost;
SQLite locked past its busy timeout, or an I/O error) fails the transaction with
Unavailable (DATABASE_UNAVAILABLE), which callers may retry; the outage is logged once when
it starts and once when it ends, not per call. Any other database error stays what it is.
"""

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from sqlalchemy import bindparam, create_engine, event, func, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from signoff.domain.errors import ErrorReason, Unavailable
from signoff.store.execution import (
    SQLITE_BUSY_TIMEOUT,
    SQLITE_PRAGMAS,
    Compiler,
    PostgresPool,
    PostgresUnit,
    SQLiteConnection,
    SQLiteReaders,
    begin_immediate,
    connect_sqlite,
    connection_lost,
)
from signoff.store.hub import Hub
from signoff.store.notify import CHANNEL, payload
from signoff.store.repository import Tx
from signoff.telemetry import tracing
from signoff.telemetry.logs import log_transitions

DEFAULT_DATABASE_URL = "sqlite:///signoff.db"

log = logging.getLogger("signoff.database")

# SQLite primary result codes after which the same transaction may well succeed: BUSY and
# LOCKED (another writer held the lock past busy_timeout), IOERR, CANTOPEN.
_SQLITE_RETRYABLE = {5, 6, 10, 14}
# PostgreSQL's "too many connections": not reachable now, though the connection is not lost.
_TOO_MANY_CONNECTIONS = "53300"


def unreachable(error: BaseException) -> bool:
    """Whether `error` says the database cannot be reached now, rather than that the
    statement or the data is wrong (a bug, or a constraint: those are not retried).
    `error` is the driver's (sqlite3, psycopg) or SQLAlchemy's wrapping of it."""
    cause: BaseException | None = error
    if isinstance(error, DBAPIError):
        if error.connection_invalidated:
            return True
        cause = error.orig
    if isinstance(cause, sqlite3.Error):
        code = getattr(cause, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in _SQLITE_RETRYABLE
    if isinstance(cause, psycopg.OperationalError):
        return connection_lost(cause) or cause.sqlstate == _TOO_MANY_CONNECTIONS
    return False


class Outage:
    """Whether the database answers. One WARNING line when an outage starts, one when it
    ends; the calls in between answer DATABASE_UNAVAILABLE without a line of their own."""

    def __init__(self) -> None:
        self.since: float | None = None

    def failed(self, error: BaseException) -> Unavailable:
        if self.since is None:
            self.since = time.monotonic()
            cause = error.orig if isinstance(error, DBAPIError) else error
            first_line = (str(cause).strip().splitlines() or [""])[0]
            log.warning(
                "database unavailable (%s: %s); calls answer UNAVAILABLE until it is back",
                type(cause).__name__,
                first_line,
            )
        return Unavailable(
            ErrorReason.DATABASE_UNAVAILABLE,
            "the database is unavailable; retry (with the same request id) shortly",
        )

    def answered(self) -> None:
        if self.since is not None:
            log.warning("database available again after %.1fs", time.monotonic() - self.since)
            self.since = None


def normalize_url(url: str) -> URL:
    """Accepts sqlite:///file and postgresql://… and picks the async drivers signoff uses."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    raise ValueError(
        f"unsupported database {backend!r}: use sqlite:///FILE or postgresql+psycopg://…"
    )


def _sqlite_engine(url: URL, *, pool_size: int) -> AsyncEngine:
    """An engine for migrations and tests (aiosqlite): the server's own transactions run on
    sqlite3 directly (store/execution.py)."""
    engine = create_async_engine(
        url, pool_size=pool_size, max_overflow=0, pool_timeout=120, hide_parameters=True
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" below open transactions, not the sqlite3 module.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (*SQLITE_PRAGMAS, f"busy_timeout={int(SQLITE_BUSY_TIMEOUT * 1000)}"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class KeyConflict(Exception):
    """A unique key that a concurrent transaction committed first (see
    services/context.once_more_on_key_conflict)."""


class Database:
    """Where every transaction starts. Committed events are handed to the hub.

    Transactions run on the drivers directly (store/execution.py): on SQLite one writer
    connection, used on the event loop's thread by one unit of work at a time (SQLite has
    one writer anyway; BEGIN IMMEDIATE takes the write lock up front so transactions never
    deadlock on upgrade), and reader connections of their own (WAL: readers never wait for
    the writer); on PostgreSQL a pool of psycopg connections."""

    def __init__(self, url: str, hub: Hub | None = None, *, pool_size: int = 10) -> None:
        self.url = normalize_url(url)
        self.dialect = self.url.get_backend_name()
        # SQLite serves one process: every commit then passes through this hub.
        self.hub = hub or Hub(sole_writer=self.dialect == "sqlite")
        # Run in every write transaction just before it commits, so that what they write
        # (the webhook outbox) commits or rolls back with the change. Installed by the server.
        self.before_commit: list[Callable[[Tx], Awaitable[None]]] = []
        self.outage = Outage()
        self._pool_size = pool_size
        self._engine: AsyncEngine | None = None
        # The dialect compiles statements; its engine never connects.
        sync_url = self.url.set(
            drivername="sqlite" if self.dialect == "sqlite" else "postgresql+psycopg"
        )
        self._compiler = Compiler(create_engine(sync_url).dialect)
        if self.dialect == "sqlite":
            self._path = self.url.database or ":memory:"
            self._writer: SQLiteConnection | None = None
            self._write_lock = asyncio.Lock()
            self._readers = SQLiteReaders(self._path, self._compiler)
        else:
            dsn = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._pool = PostgresPool(dsn, self._compiler, size=2 * pool_size)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Tx]:
        """One transaction; its events reach watchers only after it commits."""
        # A span per write transaction when tracing is on (nothing in the way when off).
        transaction = tracing.traced(
            self._transaction(), "signoff db transaction", **{"db.system.name": self.dialect}
        )
        committing: set[str] = set()
        try:
            async with self._unavailable(), transaction as tx:
                yield tx
                for hook in self.before_commit:
                    await hook(tx)
                committing = self.hub.committing(tx.events, tx.approval_changes)
                if tx.events and isinstance(tx.connection, PostgresUnit):
                    # One wake-up per transaction for the other replicas, sent at commit
                    # (with the deferred writes, in one statement).
                    await tx.connection.defer(
                        _NOTIFY, {"channel": CHANNEL, "payload": payload(committing)}
                    )
        except BaseException:
            # A commit that failed or was cancelled may have happened: its watchers re-read.
            self.hub.unsure(committing)
            raise
        self.outage.answered()
        self.hub.publish(tx.events, tx.approval_changes)
        log_transitions(tx.events)
        for record in tx.after_commit:
            record()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Tx]:
        """A write transaction, committed when the block ends, rolled back if it raises."""
        if self.dialect == "sqlite":
            async with self._write_lock:
                writer = self._sqlite_writer()
                await begin_immediate(writer, SQLITE_BUSY_TIMEOUT)
                try:
                    yield Tx(writer, self.dialect)
                    writer.command("COMMIT")
                except BaseException:
                    self._sqlite_rollback(writer)
                    raise
            return
        unit = PostgresUnit(self._pool, transaction=True)
        try:
            yield Tx(unit, self.dialect)
            await unit.commit()
        except BaseException:
            await unit.close(failed=True)
            raise
        await unit.close(failed=False)

    def _sqlite_rollback(self, writer: SQLiteConnection) -> None:
        try:
            if writer.raw.in_transaction:
                writer.command("ROLLBACK")
        except sqlite3.Error:
            # The connection is in no state to go on (an I/O error): the next write opens
            # another.
            writer.raw.close()
            self._writer = None

    def _sqlite_writer(self) -> SQLiteConnection:
        if self._writer is None:
            # No busy timeout: begin_immediate waits for another process's lock by polling,
            # so that the event loop never blocks on it.
            raw = connect_sqlite(self._path, busy_timeout=0)
            self._writer = SQLiteConnection(raw, self._compiler)
        return self._writer

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        async with self._unavailable():
            if self.dialect == "sqlite":
                reader = self._readers.take()
                healthy = False
                try:
                    # A snapshot for the whole read: WAL readers do not wait for the writer.
                    reader.command("BEGIN")
                    yield Tx(reader, self.dialect)
                    healthy = True
                finally:
                    try:
                        if reader.raw.in_transaction:
                            reader.command("ROLLBACK")
                    except sqlite3.Error:
                        healthy = False
                    self._readers.give(reader, healthy=healthy)
            else:
                # Without BEGIN: at READ COMMITTED each statement has a snapshot of its own
                # whether or not a transaction holds them together.
                unit = PostgresUnit(self._pool, transaction=False)
                failed = True
                try:
                    yield Tx(unit, self.dialect)
                    failed = False
                finally:
                    await unit.close(failed=failed)
        self.outage.answered()

    @asynccontextmanager
    async def _unavailable(self) -> AsyncIterator[None]:
        """Turns "the database cannot be reached" into Unavailable (without its traceback),
        and a unique key taken by another transaction into KeyConflict. Any other error of
        the driver reaches callers as SQLAlchemy's wrapping of it (DBAPIError, as when an
        engine ran the statements), and so does the cause of an Unavailable."""
        failure: BaseException | None = None
        try:
            yield
        except (sqlite3.IntegrityError, psycopg.IntegrityError) as error:
            raise KeyConflict(str(error)) from error
        except IntegrityError as error:
            raise KeyConflict(str(error.orig)) from error
        except DBAPIError as error:
            if not unreachable(error):
                raise
            raise self.outage.failed(error) from None
        except (sqlite3.Error, psycopg.Error) as error:
            failure = error
        if failure is None:
            return
        base = sqlite3.Error if isinstance(failure, sqlite3.Error) else psycopg.Error
        wrapped = DBAPIError.instance(None, None, failure, base, hide_parameters=True)  # type: ignore[arg-type]
        if not unreachable(failure):
            raise wrapped from failure
        unavailable = self.outage.failed(failure)
        unavailable.__context__ = wrapped  # what the CLI quotes (cli._on_database)
        raise unavailable from None

    @property
    def engine(self) -> AsyncEngine:
        """A SQLAlchemy engine on the same database, for migrations and tests: made when
        first asked for, so the server's calls never pay for it."""
        if self._engine is None:
            if self.dialect == "sqlite":
                self._engine = _sqlite_engine(self.url, pool_size=1)
            else:
                self._engine = create_async_engine(
                    self.url,
                    pool_size=1,
                    max_overflow=self._pool_size,
                    pool_pre_ping=True,
                    hide_parameters=True,  # errors that are logged never quote the values
                )
        return self._engine

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
        if self.dialect == "sqlite":
            if self._writer is not None:
                self._writer.raw.close()
                self._writer = None
            self._readers.close()
        else:
            await self._pool.close()


_NOTIFY = select(func.pg_notify(bindparam("channel"), bindparam("payload")))
