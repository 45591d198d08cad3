"""Engines and transactions for SQLite (embedded default) and PostgreSQL.

A database that cannot be reached (PostgreSQL down or restarting, the connection lost;
SQLite locked past its busy timeout, or an I/O error) fails the transaction with
Unavailable (DATABASE_UNAVAILABLE), which callers may retry; the outage is logged once when
it starts and once when it ends, not per call. Any other database error stays what it is.
"""

import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from signoff.domain.errors import ErrorReason, Unavailable
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
# PostgreSQL states that mean "not reachable now": class 08 (connection exception), and
# admin shutdown, crash shutdown, cannot connect now (starting up), too many connections.
_POSTGRES_UNAVAILABLE = {"57P01", "57P02", "57P03", "53300"}


def unreachable(error: DBAPIError) -> bool:
    """Whether `error` says the database cannot be reached now, rather than that the
    statement or the data is wrong (a bug, or a constraint: those are not retried)."""
    if error.connection_invalidated:
        return True
    cause = error.orig
    if isinstance(cause, sqlite3.Error):
        code = getattr(cause, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in _SQLITE_RETRYABLE
    if isinstance(cause, psycopg.OperationalError):
        state = cause.sqlstate  # None: the client lost or could not open the connection
        return state is None or state.startswith("08") or state in _POSTGRES_UNAVAILABLE
    return False


class Outage:
    """Whether the database answers. One WARNING line when an outage starts, one when it
    ends; the calls in between answer DATABASE_UNAVAILABLE without a line of their own."""

    def __init__(self) -> None:
        self.since: float | None = None

    def failed(self, error: DBAPIError) -> Unavailable:
        if self.since is None:
            self.since = time.monotonic()
            first_line = (str(error.orig).strip().splitlines() or [""])[0]
            log.warning(
                "database unavailable (%s: %s); calls answer UNAVAILABLE until it is back",
                type(error.orig).__name__,
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


def _sqlite_engine(url: URL, *, begin: str, pool_size: int) -> AsyncEngine:
    engine = create_async_engine(
        url, pool_size=pool_size, max_overflow=0, pool_timeout=120, hide_parameters=True
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" below open transactions, not the sqlite3 module.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "busy_timeout=10000",
            "foreign_keys=ON",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    return engine


class KeyConflict(Exception):
    """A unique key that a concurrent transaction committed first (see
    services/context.once_more_on_key_conflict)."""


class Database:
    """Where every transaction starts. Committed events are handed to the hub."""

    def __init__(self, url: str, hub: Hub | None = None, *, pool_size: int = 10) -> None:
        self.url = normalize_url(url)
        self.dialect = self.url.get_backend_name()
        # SQLite serves one process: every commit then passes through this hub.
        self.hub = hub or Hub(sole_writer=self.dialect == "sqlite")
        # Run in every write transaction just before it commits, so that what they write
        # (the webhook outbox) commits or rolls back with the change. Installed by the server.
        self.before_commit: list[Callable[[Tx], Awaitable[None]]] = []
        self.outage = Outage()
        if self.dialect == "sqlite":
            # One writer connection: SQLite has one writer anyway, and BEGIN IMMEDIATE
            # takes the write lock up front so transactions never deadlock on upgrade.
            self._writer = _sqlite_engine(self.url, begin="BEGIN IMMEDIATE", pool_size=1)
            self._reader = _sqlite_engine(self.url, begin="BEGIN", pool_size=4)
        else:
            self._writer = create_async_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=True,
                hide_parameters=True,  # errors that are logged never quote the values
            )
            self._reader = self._writer

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Tx]:
        """One transaction; its events reach watchers only after it commits."""
        # A span per write transaction when tracing is on (nothing in the way when off).
        transaction = tracing.traced(
            self._writer.begin(), "signoff db transaction", **{"db.system.name": self.dialect}
        )
        committing: set[str] = set()
        try:
            async with self._unavailable(), transaction as connection:
                tx = Tx(connection, self.dialect)
                yield tx
                for hook in self.before_commit:
                    await hook(tx)
                committing = self.hub.committing(tx.events, tx.approval_changes)
                if tx.events and self.dialect == "postgresql":
                    # One wake-up per transaction for the other replicas, sent at commit.
                    await connection.execute(
                        text("SELECT pg_notify(:channel, :payload)"),
                        {"channel": CHANNEL, "payload": payload(committing)},
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
    async def read(self) -> AsyncIterator[Tx]:
        async with self._unavailable(), self._reader.begin() as connection:
            yield Tx(connection, self.dialect)
        self.outage.answered()

    @asynccontextmanager
    async def _unavailable(self) -> AsyncIterator[None]:
        """Turns "the database cannot be reached" into Unavailable (without its traceback),
        and a unique key taken by another transaction into KeyConflict."""
        try:
            yield
        except IntegrityError as error:
            raise KeyConflict(str(error.orig)) from error
        except DBAPIError as error:
            if not unreachable(error):
                raise
            raise self.outage.failed(error) from None

    @property
    def engine(self) -> AsyncEngine:
        return self._writer

    async def close(self) -> None:
        await self._writer.dispose()
        if self._reader is not self._writer:
            await self._reader.dispose()
