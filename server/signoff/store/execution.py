"""SQLAlchemy Core statements run on the database driver directly: no SQLAlchemy engine,
pool or result machinery on the per-call path.

Each statement is compiled once per dialect (cached on the statement object, and by
SQLAlchemy's cache key for statements built per call) to SQL text plus what converts the
values: the compiled statement's bind processors on the way in and its result columns'
types on the way out, so UTCDateTime, JSON/JSONB and the rest convert exactly as they do
through an engine. Then:

- SQLite: stdlib sqlite3, run on the event-loop thread (a statement takes microseconds; a
  hop to a thread per statement cost more than the statement). Database serializes the
  units of work on the one writer connection; readers have connections of their own.
- PostgreSQL: psycopg's async connection, from a small pool of this module's. A pooled
  connection is not pinged before use: a broken one fails its first statement, and that
  statement (with the BEGIN before it) is sent again once on a fresh connection, which is
  the same as running the unit of work again since nothing of it reached the database yet.

Results are read whole (every query of signoff is bounded) into a Result with the part of
SQLAlchemy's Result API that signoff uses.
"""

import asyncio
import collections
import re
import sqlite3
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple, Protocol

import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy import Table
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement, TextClause, visitors

# How many statements (BEGIN and COMMIT included) this process has sent to its database:
# bench and tests read it to count the statements of a call.
statements = 0

_MISSING = object()
_SHARED_PLANS = 500  # plans of statements built per call, by SQLAlchemy's cache key


class Connection(Protocol):
    """What a transaction runs its statements on (SQLiteConnection, PostgresUnit)."""

    dialect: str

    async def execute(
        self,
        statement: ClauseElement,
        params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        *,
        touches: frozenset[str] | None = None,
    ) -> "Result": ...

    async def defer(
        self,
        statement: ClauseElement,
        params: Mapping[str, Any],
        check: Callable[[int], None] | None = None,
    ) -> None:
        """A write whose answer nothing waits for: PostgreSQL sends the deferred ones
        together as one statement, SQLite runs it now. `check(rowcount)` runs once it ran
        (it raises if the write did not do what it should)."""


class Row(tuple):  # type: ignore[type-arg]
    """A result row: by position, by attribute (`row.seq`) and by name (`row._mapping`)."""

    __slots__ = ()
    _index: ClassVar[dict[str, int]] = {}

    def __getattr__(self, name: str) -> Any:
        try:
            return self[self._index[name]]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def _mapping(self) -> dict[str, Any]:
        return {name: self[i] for name, i in self._index.items()}


def _row_type(names: Sequence[str]) -> type[Row]:
    # The first of two equal names wins, as it does in SQLAlchemy's rows.
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        index.setdefault(name, i)
    return type("Row", (Row,), {"__slots__": (), "_index": index})


class Result:
    """What a statement returned, read whole."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Row], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[Row]:
        return iter(self._rows)

    def all(self) -> list[Row]:
        return self._rows

    def first(self) -> Row | None:
        return self._rows[0] if self._rows else None

    def one(self) -> Row:
        if len(self._rows) != 1:
            raise LookupError(f"expected one row, got {len(self._rows)}")
        return self._rows[0]

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalars(self) -> "Scalars":
        return Scalars([row[0] for row in self._rows])


class Scalars(list[Any]):
    def all(self) -> list[Any]:
        return list(self)


class _Bind(NamedTuple):
    key: str  # the bindparam's key: what the caller's dict names
    name: str  # its name in the compiled statement
    out: str  # the name the driver gets (escaped), for named paramstyles
    process: Callable[[Any], Any] | None


class Plan:
    """One statement compiled for one dialect and one set of parameter names."""

    def __init__(self, compiled: Any, dialect: Dialect, tables: frozenset[str] | None) -> None:
        self.compiled = compiled
        # The tables the statement reads or writes (None: not known, as for text()).
        self.tables = tables
        self.sql: str = compiled.string
        self.positional: bool = compiled.positional
        assert not (compiled.insert_prefetch or compiled.update_prefetch), (
            "Python-side column defaults are not supported: use server defaults"
        )
        self.expanding = bool(compiled.literal_execute_params or compiled.post_compile_params)
        processors = compiled._bind_processors
        escaped = compiled.escaped_bind_names or {}
        names = {name: bind for bind, name in compiled.bind_names.items()}
        # The fast way applies when every value comes from the caller: no bind carries a
        # value of its own (a literal in the statement) and no list is expanded (IN).
        self.fast = not self.expanding and all(
            bind.value is None and bind.callable is None for bind in names.values()
        )
        order = compiled.positiontup if self.positional else list(names)
        self.binds = tuple(
            _Bind(
                names[name].key,
                name,
                escaped.get(name, name),
                processors.get(name),
            )
            for name in order
        )
        self.dialect = dialect
        columns = compiled._result_columns
        # text(): named by the cursor, nothing to convert.
        self.row_type: type[Row] | None = (
            _row_type([column[0] for column in columns]) if columns else None
        )
        self.types = [column[3] for column in columns]
        # Made from the first result's description (the driver's type codes).
        self.converters: list[Callable[[Any], Any] | None] | None = None
        self.converts = True

    def bound(self, params: Mapping[str, Any], extracted: Any) -> tuple[str, Any]:
        """The SQL and what the driver gets for `params`: a list (positional) or a dict
        (named). `extracted`: the statement's own bound values (Compiler.plan)."""
        if self.fast:
            return self.sql, self._values(params)
        return self._bound_slowly(params, extracted)

    def _values(self, params: Mapping[str, Any]) -> Any:
        found = []
        for bind in self.binds:
            value = params.get(bind.key, _MISSING)
            if value is _MISSING:
                value = params.get(bind.name, _MISSING)
                if value is _MISSING:
                    raise KeyError(f"no value for bind parameter {bind.key!r}")
            found.append(bind.process(value) if bind.process else value)
        if self.positional:
            return found
        return {bind.out: value for bind, value in zip(self.binds, found, strict=True)}

    def _bound_slowly(self, params: Mapping[str, Any], extracted: Any) -> tuple[str, Any]:
        """As SQLAlchemy's default execution context does (engine/default.py)."""
        compiled = self.compiled
        constructed = compiled.construct_params(
            params, escape_names=False, extracted_parameters=extracted
        )
        processors = compiled._bind_processors
        if self.expanding:
            expanded = compiled._process_parameters_for_postcompile(constructed)
            processors = {**processors, **expanded.processors}
            sql, order = expanded.statement, expanded.positiontup
        else:
            sql, order = self.sql, compiled.positiontup

        def processed(key: str) -> Any:
            process = processors.get(key)
            return process(constructed[key]) if process else constructed[key]

        if self.positional:
            return sql, [processed(key) for key in order]
        escaped = compiled.escaped_bind_names or {}
        return sql, {escaped.get(key, key): processed(key) for key in constructed}

    def rows(self, raw: list[Any], description: Any) -> list[Row]:
        row_type = self.row_type
        if row_type is None or len(row_type._index) != len(description or ()):
            row_type = _described(tuple(column[0] for column in description or ()))
            return [row_type(row) for row in raw]
        if not self.converts:
            return [row_type(row) for row in raw]
        converters = self.converters
        if converters is None:
            converters = self.converters = [
                type_._cached_result_processor(self.dialect, column[1])
                for type_, column in zip(self.types, description, strict=True)
            ]
            self.converts = any(converters)
            if not self.converts:
                return [row_type(row) for row in raw]
        return [
            row_type([f(value) if f else value for f, value in zip(converters, row, strict=True)])
            for row in raw
        ]


_described_types: dict[tuple[str, ...], type[Row]] = {}


def _described(names: tuple[str, ...]) -> type[Row]:
    row_type = _described_types.get(names)
    if row_type is None:
        row_type = _described_types[names] = _row_type(names)
    return row_type


class _Entry:
    __slots__ = ("extracted", "key", "plans")

    def __init__(self, key: Any, extracted: Any) -> None:
        self.key = key
        self.extracted = extracted
        self.plans: dict[tuple[str, ...], Plan] = {}


class Compiler:
    """Plans of statements for one dialect: on the statement object (weakly: a statement
    built per call goes with it), and shared by SQLAlchemy's cache key between equal
    statements built per call (bounded)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._entries: weakref.WeakKeyDictionary[ClauseElement, _Entry] = (
            weakref.WeakKeyDictionary()
        )
        self._shared: collections.OrderedDict[Any, Plan] = collections.OrderedDict()

    def plan(self, statement: ClauseElement, params: Mapping[str, Any]) -> tuple[Plan, Any]:
        """The plan and this statement's own bound values (for Plan.values)."""
        entry = self._entries.get(statement)
        if entry is None:
            cache_key = statement._generate_cache_key()
            if cache_key is None:
                entry = _Entry(None, None)
            else:
                entry = _Entry(cache_key.key, cache_key.bindparams)
            self._entries[statement] = entry
        # An INSERT or UPDATE is compiled for the columns it is given, as SQLAlchemy does.
        names = tuple(sorted(params)) if params and statement.is_dml else ()  # type: ignore[attr-defined]
        plan = entry.plans.get(names)
        if plan is None:
            plan = self._shared_plan(statement, entry, names)
            entry.plans[names] = plan
        return plan, entry.extracted

    def _shared_plan(self, statement: ClauseElement, entry: _Entry, names: tuple[str, ...]) -> Plan:
        if entry.key is None:
            return self._compile(statement, None, names)
        shared_key = (entry.key, names)
        plan = self._shared.get(shared_key)
        if plan is None:
            cache_key = statement._generate_cache_key()
            plan = self._shared[shared_key] = self._compile(statement, cache_key, names)
            if len(self._shared) > _SHARED_PLANS:
                self._shared.popitem(last=False)
        else:
            self._shared.move_to_end(shared_key)
        return plan

    def _compile(self, statement: ClauseElement, cache_key: Any, names: tuple[str, ...]) -> Plan:
        compiled = statement._compiler(  # type: ignore[attr-defined]
            self.dialect, cache_key=cache_key, column_keys=list(names), for_executemany=False
        )
        return Plan(compiled, self.dialect, _tables_of(statement))


def _tables_of(statement: ClauseElement) -> frozenset[str] | None:
    if isinstance(statement, TextClause):
        return None
    return frozenset(x.name for x in visitors.iterate(statement) if isinstance(x, Table))


# -- SQLite -----------------------------------------------------------------------------------

SQLITE_PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON")
SQLITE_BUSY_TIMEOUT = 10.0  # seconds: as long as a writer waits for another's lock


def connect_sqlite(path: str, *, busy_timeout: float) -> sqlite3.Connection:
    """A connection in autocommit mode: transactions are begun and ended explicitly."""
    raw = sqlite3.connect(
        path,
        timeout=busy_timeout,
        isolation_level=None,
        check_same_thread=False,
        cached_statements=256,
    )
    for pragma in SQLITE_PRAGMAS:
        raw.execute(f"PRAGMA {pragma}")
    return raw


class SQLiteConnection:
    """A sqlite3 connection as an async one; every statement runs on the calling thread."""

    dialect = "sqlite"

    def __init__(self, raw: sqlite3.Connection, compiler: Compiler) -> None:
        self.raw = raw
        self.compiler = compiler

    async def execute(
        self,
        statement: ClauseElement,
        params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        *,
        touches: frozenset[str] | None = None,
    ) -> Result:
        return self.run(statement, params)

    async def defer(
        self,
        statement: ClauseElement,
        params: Mapping[str, Any],
        check: Callable[[int], None] | None = None,
    ) -> None:
        """Runs the write now: on SQLite a statement is a function call, not a round trip."""
        result = self.run(statement, params)
        if check is not None:
            check(result.rowcount)

    def run(
        self,
        statement: ClauseElement,
        params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> Result:
        global statements
        statements += 1
        if isinstance(params, Sequence):  # executemany
            plan, extracted = self.compiler.plan(statement, params[0])
            bound = [plan.bound(p, extracted) for p in params]
            cursor = self.raw.executemany(bound[0][0], [values for _, values in bound])
            return Result([], cursor.rowcount)
        plan, extracted = self.compiler.plan(statement, params or {})
        sql, values = plan.bound(params or {}, extracted)
        cursor = self.raw.execute(sql, values)
        description = cursor.description
        raw = cursor.fetchall() if description else []
        return Result(plan.rows(raw, description) if raw else [], cursor.rowcount)

    def command(self, sql: str) -> None:
        """BEGIN, COMMIT, ROLLBACK."""
        global statements
        statements += 1
        self.raw.execute(sql)


async def begin_immediate(connection: SQLiteConnection, timeout: float) -> None:
    """BEGIN IMMEDIATE, waiting for another process's write lock without blocking the loop:
    the writer connection has no busy timeout of its own, so it is polled here. After
    `timeout`, SQLite's "database is locked" is raised (an outage: see unreachable)."""
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        try:
            connection.command("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as error:
            code = getattr(error, "sqlite_errorcode", 0) & 0xFF
            if code not in (5, 6) or time.monotonic() >= deadline:  # BUSY, LOCKED
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.05)


class SQLiteReaders:
    """Reader connections, opened when needed; a few idle ones are kept."""

    def __init__(self, path: str, compiler: Compiler, *, keep: int = 4) -> None:
        self.path = path
        self.compiler = compiler
        self.keep = keep
        self.idle: list[SQLiteConnection] = []

    def take(self) -> SQLiteConnection:
        if self.idle:
            return self.idle.pop()
        return SQLiteConnection(
            connect_sqlite(self.path, busy_timeout=SQLITE_BUSY_TIMEOUT), self.compiler
        )

    def give(self, connection: SQLiteConnection, *, healthy: bool) -> None:
        if healthy and len(self.idle) < self.keep and not connection.raw.in_transaction:
            self.idle.append(connection)
        else:
            connection.raw.close()

    def close(self) -> None:
        for connection in self.idle:
            connection.raw.close()
        self.idle.clear()


# -- PostgreSQL -------------------------------------------------------------------------------


class PoolTimeout(psycopg.OperationalError):
    """No connection of the pool came free in time (counts as the database unavailable)."""


# Admin shutdown, crash shutdown, cannot connect now (starting up).
POSTGRES_SHUTDOWN = frozenset({"57P01", "57P02", "57P03"})


def connection_lost(error: BaseException) -> bool:
    """Whether a psycopg error means the connection (or the server) is gone: class 08
    (connection exception), the server shutting down or starting, or no state at all (the
    client lost or could not open the connection)."""
    if not isinstance(error, psycopg.OperationalError):
        return False
    state = error.sqlstate
    return state is None or state.startswith("08") or state in POSTGRES_SHUTDOWN


class PostgresPool:
    """psycopg async connections in autocommit mode (transactions are begun explicitly, and
    a read runs without one). Not pinged before use: see PostgresUnit."""

    def __init__(
        self,
        dsn: str,
        compiler: Compiler,
        *,
        size: int,
        timeout: float = 30.0,
        prepare_threshold: int = 1,
    ) -> None:
        self.dsn = dsn
        self.compiler = compiler
        self.size = size
        self.timeout = timeout
        self.prepare_threshold = prepare_threshold
        self.idle: list[psycopg.AsyncConnection[Any]] = []
        self._permits: asyncio.Semaphore | None = None
        # SQLAlchemy's type adapters for psycopg (the dialect's), so values convert as there.
        self._context = getattr(compiler.dialect, "_psycopg_adapters_map", None)

    async def acquire(self) -> psycopg.AsyncConnection[Any]:
        if self._permits is None:
            self._permits = asyncio.Semaphore(self.size)
        try:
            async with asyncio.timeout(self.timeout):
                await self._permits.acquire()
        except TimeoutError:
            raise PoolTimeout("no database connection came free in time") from None
        try:
            while self.idle:
                connection = self.idle.pop()
                if not connection.closed:
                    return connection
            return await self.connect()
        except BaseException:
            self._permits.release()
            raise

    async def connect(self) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(
            self.dsn,
            autocommit=True,
            prepare_threshold=self.prepare_threshold,
            context=self._context,
            connect_timeout=10,
            application_name="signoff",
        )

    async def release(self, connection: psycopg.AsyncConnection[Any], *, reuse: bool) -> None:
        assert self._permits is not None
        try:
            if (
                reuse
                and not connection.closed
                and connection.info.transaction_status == TransactionStatus.IDLE
            ):
                self.idle.append(connection)
            else:
                await connection.close()
        finally:
            self._permits.release()

    async def forget_idle(self) -> None:
        """A connection was found broken: the idle ones likely are too (a restart)."""
        idle, self.idle = self.idle, []
        for connection in idle:
            await connection.close()

    async def close(self) -> None:
        await self.forget_idle()


class _Deferred(NamedTuple):
    sql: str
    values: Any
    check: Callable[[int], None] | None


_PLACEHOLDER = re.compile(r"%\(([^)]+)\)s")
_combined_sql: dict[tuple[str, ...], str] = {}


def _combined(deferred: list[_Deferred]) -> tuple[str, dict[str, Any]]:
    """One statement for several: each a WITH clause (its bind names prefixed by its
    place), and a SELECT of how many rows each wrote (a clause that is a plain SELECT runs
    only when referenced: this references every one)."""
    shape = tuple(write.sql for write in deferred)
    sql = _combined_sql.get(shape)
    if sql is None:
        clauses = []
        for i, write in enumerate(deferred):
            body = _PLACEHOLDER.sub(f"%(w{i}_\\1)s", write.sql)
            # (An INSERT may return its new key already: SQLAlchemy's implicit returning.)
            if not body.lstrip().upper().startswith("SELECT") and " RETURNING " not in body:
                body += " RETURNING 1"
            clauses.append(f"w{i} AS ({body})")
        counts = ", ".join(f"(SELECT count(*) FROM w{i})" for i in range(len(deferred)))
        sql = f"WITH {', '.join(clauses)} SELECT {counts}"
        if len(_combined_sql) < 1000:
            _combined_sql[shape] = sql
    values: dict[str, Any] = {}
    for i, write in enumerate(deferred):
        for name, value in (write.values or {}).items():
            values[f"w{i}_{name}"] = value
    return sql, values


class PostgresUnit:
    """One unit of work on one pooled connection: a transaction (BEGIN sent with the first
    statement), or with `transaction=False` statements each committed on its own (reads:
    at READ COMMITTED each statement has its own snapshot anyway)."""

    dialect = "postgresql"

    def __init__(self, pool: PostgresPool, *, transaction: bool) -> None:
        self.pool = pool
        self.compiler = pool.compiler
        self.transaction = transaction
        self.raw: psycopg.AsyncConnection[Any] | None = None
        self.began = False
        # Whether a statement of this unit has reached the database: after that, a lost
        # connection cannot be replaced without running the unit of work again.
        self.answered = False
        self.reuse = True
        # Writes whose answer nobody waits for, sent together (see defer).
        self._deferred: list[_Deferred] = []
        self._deferred_tables: set[str] = set()

    async def defer(
        self,
        statement: ClauseElement,
        params: Mapping[str, Any],
        check: Callable[[int], None] | None = None,
    ) -> None:
        """A write (or a SELECT of a function, pg_notify) sent later, with the other
        deferred ones as the data-modifying WITH clauses of one statement: before the
        first statement that touches a table one of them writes, or at commit.
        `check(rowcount)` runs then (it raises if the write did not do what it should)."""
        plan, extracted = self.compiler.plan(statement, params)
        sql, values = plan.bound(params, extracted)
        if self._deferred and (plan.tables is None or plan.tables & self._deferred_tables):
            # The clauses of one statement share a snapshot: a write would not see another
            # to the same table (an UPDATE of a row inserted before it), so those go first.
            await self.flush()
        self._deferred.append(_Deferred(sql, values, check))
        self._deferred_tables.update(plan.tables or ())

    async def flush(self) -> None:
        """Sends the deferred writes, as one statement."""
        deferred, self._deferred = self._deferred, []
        self._deferred_tables = set()
        if not deferred:
            return
        if len(deferred) == 1:
            only = deferred[0]
            result = await self._send(only.sql, only.values or None)
            if only.check is not None:
                only.check(result.rowcount)
            return
        sql, values = _combined(deferred)
        result = await self._send(sql, values)
        counts = result.one()
        for write, count in zip(deferred, counts, strict=True):
            if write.check is not None:
                write.check(count)

    async def execute(
        self,
        statement: ClauseElement,
        params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        *,
        touches: frozenset[str] | None = None,
    ) -> Result:
        """Runs a statement now. `touches` names the tables a text() statement reads or
        writes, so that deferred writes to others need not go first."""
        first = params[0] if isinstance(params, Sequence) else params or {}
        plan, extracted = self.compiler.plan(statement, first)
        if self._deferred:
            tables = touches if touches is not None else plan.tables
            if tables is None or tables & self._deferred_tables:
                await self.flush()
        if isinstance(params, Sequence):
            bound = [plan.bound(p, extracted) for p in params]
            return await self._send(bound[0][0], [values for _, values in bound], many=True)
        sql, values = plan.bound(first, extracted)
        return await self._send(sql, values or None, plan=plan)

    async def _send(
        self, sql: str, values: Any, *, plan: Plan | None = None, many: bool = False
    ) -> Result:
        if self.raw is None:
            self.raw = await self.pool.acquire()
        try:
            return await self._sent(sql, values, plan, many)
        except psycopg.Error as error:
            if self.answered or not connection_lost(error):
                raise
            # The connection broke before any of this unit reached the database: the unit
            # of work runs (from its BEGIN) once more on a fresh connection.
            await self.raw.close()
            await self.pool.forget_idle()
            self.raw = await self.pool.connect()
            self.began = False
            return await self._sent(sql, values, plan, many)

    async def _sent(self, sql: str, values: Any, plan: Plan | None, many: bool) -> Result:
        global statements
        assert self.raw is not None
        try:
            if self.transaction and not self.began:
                statements += 1
                await self.raw.execute(b"BEGIN")
                self.began = True
            statements += 1
            cursor = self.raw.cursor()
            if many:
                await cursor.executemany(sql, values)
                self.answered = True
                return Result([], cursor.rowcount)
            await cursor.execute(sql, values)
            self.answered = True
            description = cursor.description
            raw = await cursor.fetchall() if description else []
        except psycopg.Error:
            raise
        except BaseException:
            # Cancelled (or worse) with a statement in flight: the connection's state is
            # unknown, so it is closed rather than reused (closing rolls back).
            self.reuse = False
            raise
        if not raw:
            rows: list[Row] = []
        elif plan is not None:
            rows = plan.rows(raw, description)
        else:
            row_type = _described(tuple(column[0] for column in description or ()))
            rows = [row_type(row) for row in raw]
        return Result(rows, cursor.rowcount)

    async def commit(self) -> None:
        global statements
        await self.flush()
        if self.began:
            assert self.raw is not None
            self.answered = True  # whatever happens now, the commit may have happened
            statements += 1
            try:
                await self.raw.execute(b"COMMIT")
            except BaseException:
                self.reuse = False
                raise
            self.began = False

    async def close(self, *, failed: bool) -> None:
        """Back to the pool: rolled back first if the unit failed; closed if it broke."""
        global statements
        raw, self.raw = self.raw, None
        if raw is None:
            return
        reuse = self.reuse
        try:
            if self.began and reuse:
                statements += 1
                await raw.execute(b"ROLLBACK")
        except psycopg.Error:
            reuse = False
        finally:
            # The pool keeps it only if it is idle (not in a transaction, not mid-statement).
            await self.pool.release(raw, reuse=reuse and not (failed and raw.broken))
