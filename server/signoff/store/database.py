"""Engines and transactions for SQLite (embedded default) and PostgreSQL."""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from signoff.store.hub import Hub
from signoff.store.notify import CHANNEL, payload
from signoff.store.repository import Tx
from signoff.telemetry import tracing
from signoff.telemetry.logs import log_transitions

DEFAULT_DATABASE_URL = "sqlite:///signoff.db"


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
            async with transaction as connection:
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
        self.hub.publish(tx.events, tx.approval_changes)
        log_transitions(tx.events)
        for record in tx.after_commit:
            record()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        async with self._reader.begin() as connection:
            yield Tx(connection, self.dialect)

    @property
    def engine(self) -> AsyncEngine:
        return self._writer

    async def close(self) -> None:
        await self._writer.dispose()
        if self._reader is not self._writer:
            await self._reader.dispose()
