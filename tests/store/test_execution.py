"""The execution layer (store/execution.py) on each database: statements compiled once run on
the driver directly and convert values exactly as SQLAlchemy's engine does; a unique key
taken twice is a KeyConflict; a database that cannot be reached is Unavailable; a pooled
PostgreSQL connection that broke while idle is replaced without the caller noticing."""

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from signoff.domain.errors import ErrorReason, Unavailable
from signoff.domain.models import Vote
from signoff.domain.states import Verdict
from signoff.store import database as database_module
from signoff.store import execution, outbox
from signoff.store.database import Database, KeyConflict
from signoff.store.migrate import migrate
from signoff.store.repository import VOTES
from signoff.store.schema import votes, webhook_outbox
from tests.conftest import DATABASE_KINDS, require_database
from tests.support import POSTGRES_URL

# Not UTC on the way in: it comes back as the same moment, in UTC.
NOON_IN_KOLKATA = datetime(2026, 5, 4, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=5.5)))


def vote(approver: str, request_id: str, **overrides: object) -> Vote:
    fields: dict[str, object] = dict(
        action_id="act_1",
        tenant_id="tenant_a",
        approver=approver,
        verdict=Verdict.APPROVE,
        reason="looks right — ✓",
        request_id=request_id,
        request_sha256="sha256:00",
        time=NOON_IN_KOLKATA,
        gate_ids=("finance", "legal"),
        evidence_snapshot_hash="",
        params_diff={"amount": {"from": 4200, "to": 4000}, "note": None, "nested": [1, 2.5]},
    )
    fields.update(overrides)
    return Vote(**fields)  # type: ignore[arg-type]


async def fresh(url: str) -> Database:
    database = Database(url)
    await migrate(database)
    return database


@pytest.mark.parametrize("kind", DATABASE_KINDS)
def test_values_round_trip_as_through_sqlalchemy(
    kind: str, make_database: Callable[[str], str]
) -> None:
    async def main() -> None:
        database = await fresh(make_database(kind))
        try:
            stored = vote("lead", "req_1")
            async with database.write() as tx:
                await tx.insert_vote(stored)
            async with database.read() as tx:
                found = await tx.find_vote_by_request("tenant_a", "req_1")
                assert await tx.find_vote_by_request("tenant_a", "req_none") is None
            assert found == stored  # enums, tuples, JSON and the moment itself
            assert found is not None and found.time.tzinfo == UTC
            assert isinstance(found.verdict, Verdict)

            # The same row read through SQLAlchemy's engine is the same in every column.
            async with database.engine.connect() as connection:
                engine_row = (
                    await connection.execute(select(votes).where(votes.c.request_id == "req_1"))
                ).one()
            async with database.read() as tx:
                row = (
                    await tx.connection.execute(select(votes).where(votes.c.request_id == "req_1"))
                ).one()
            assert row._mapping == dict(engine_row._mapping)
            assert VOTES.of(row) == stored

            # NULLs: a nullable datetime, and a JSON document holding null.
            now = datetime(2026, 5, 4, 6, 30, tzinfo=UTC)
            deliveries = [
                outbox.NewDelivery(f"dlv_{i}", "hook", "tenant_a", "E", "act_1", "{}", now)
                for i in range(3)
            ]
            async with database.write() as tx:
                await outbox.enqueue(tx, deliveries)  # executemany
            async with database.write() as tx:
                claimed = await outbox.claim(tx, ["hook", "other"], now, now, 2)  # IN (…)
                assert [c.delivery_id for c in claimed] == ["dlv_0", "dlv_1"]
                assert claimed[0].create_time == now and claimed[0].attempt == 1
                assert await outbox.finish(tx, claimed[0], state=outbox.DELIVERED, next_attempt=now)
                assert await outbox.pending_count(tx) == 2
                assert await outbox.earliest_attempt(tx, ["hook"]) == now
            async with database.read() as tx:
                result = await tx.connection.execute(
                    select(webhook_outbox.c.delivery_id, webhook_outbox.c.delivered_time).order_by(
                        webhook_outbox.c.seq
                    )
                )
                assert [(r.delivery_id, r.delivered_time) for r in result] == [
                    ("dlv_0", None),
                    ("dlv_1", None),
                    ("dlv_2", None),
                ]
                assert (await tx.connection.execute(text("SELECT 1 AS one"))).scalar_one() == 1
        finally:
            await database.close()

    asyncio.run(main())


@pytest.mark.parametrize("kind", DATABASE_KINDS)
def test_a_statement_is_compiled_once_and_literals_are_not_mixed_up(
    kind: str, make_database: Callable[[str], str]
) -> None:
    async def main() -> None:
        database = await fresh(make_database(kind))
        try:
            async with database.write() as tx:
                for name in ("ann", "bob"):
                    await tx.insert_vote(vote(name, f"req_{name}", action_id=f"act_{name}"))
            compiler = database._compiler
            async with database.read() as tx:
                # Built per call with different literals: one shared plan, the right rows.
                for name in ("ann", "bob", "ann"):
                    query = select(votes.c.approver).where(votes.c.action_id == f"act_{name}")
                    assert (await tx.connection.execute(query)).scalar_one() == name
                first, _ = compiler.plan(select(votes).where(votes.c.approver == "x"), {})
                again, _ = compiler.plan(select(votes).where(votes.c.approver == "y"), {})
                assert first is again
                before = execution.statements
                await tx.find_vote_by_request("tenant_a", "req_ann")
                assert execution.statements == before + 1
        finally:
            await database.close()

    asyncio.run(main())


@pytest.mark.parametrize("kind", DATABASE_KINDS)
def test_a_unique_key_taken_twice_is_a_key_conflict(
    kind: str, make_database: Callable[[str], str]
) -> None:
    async def main() -> None:
        database = await fresh(make_database(kind))
        try:
            async with database.write() as tx:
                await tx.insert_vote(vote("lead", "req_1"))
            with pytest.raises(KeyConflict):
                async with database.write() as tx:
                    await tx.insert_vote(vote("lead", "req_2"))  # (action_id, approver)
            # Nothing of the failed transaction stayed, and the next one goes through.
            async with database.write() as tx:
                await tx.insert_vote(vote("second", "req_2"))
            async with database.read() as tx:
                assert len(await tx.votes_for("act_1")) == 2
        finally:
            await database.close()

    asyncio.run(main())


def test_an_unreachable_postgresql_is_unavailable() -> None:
    async def main() -> None:
        database = Database("postgresql+psycopg://postgres@127.0.0.1:1/none")
        try:
            for unit in (database.read, database.write):
                with pytest.raises(Unavailable) as raised:
                    async with unit() as tx:
                        await tx.get_instance("ins_1")
                assert raised.value.reason == ErrorReason.DATABASE_UNAVAILABLE
        finally:
            await database.close()

    asyncio.run(main())


def test_a_sqlite_database_locked_by_another_process_is_unavailable_to_writes_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database_module, "SQLITE_BUSY_TIMEOUT", 0.3)
    path = tmp_path / "locked.db"

    async def main() -> None:
        database = await fresh(f"sqlite:///{path}")
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            ticks = 0

            async def tick() -> None:  # the event loop stays free while the write waits
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            ticker = asyncio.ensure_future(tick())
            with pytest.raises(Unavailable):
                async with database.write() as tx:
                    await tx.get_instance("ins_1")
            ticker.cancel()
            assert ticks >= 10
            async with database.read() as tx:  # WAL: readers do not wait for the writer
                assert await tx.get_instance("ins_1") is None
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        async with database.write() as tx:
            await tx.insert_vote(vote("lead", "req_1"))
        await database.close()

    asyncio.run(main())


def test_a_postgresql_connection_that_broke_while_idle_is_replaced(
    make_database: Callable[[str], str],
) -> None:
    require_database("postgresql")

    async def main() -> None:
        url = make_database("postgresql")
        database = await fresh(url)
        try:
            async with database.write() as tx:
                await tx.insert_vote(vote("lead", "req_1"))
            # Every pooled connection dies (as when the server restarts), unseen.
            dsn = POSTGRES_URL.replace("postgresql+psycopg", "postgresql")
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as killer:
                await killer.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'signoff' AND datname = %s",
                    (make_url(url).database,),
                )
            await asyncio.sleep(0.2)
            async with database.write() as tx:
                await tx.insert_vote(vote("second", "req_2"))
            async with database.read() as tx:
                assert len(await tx.votes_for("act_1")) == 2
        finally:
            await database.close()

    asyncio.run(main())


def test_postgresql_defers_writes_until_a_statement_needs_them_or_the_commit(
    make_database: Callable[[str], str],
) -> None:
    require_database("postgresql")

    class Refused(Exception):
        pass

    def one_row(count: int) -> None:
        if count != 1:
            raise Refused(count)

    async def main() -> None:
        database = await fresh(make_database("postgresql"))
        try:
            async with database.write() as tx:
                start = execution.statements
                await tx.insert_vote(vote("lead", "req_1"))
                assert execution.statements == start  # not sent yet
                await tx.get_instance("ins_none")  # another table: still not sent
                assert execution.statements == start + 2  # BEGIN and the read
                assert [v.approver for v in await tx.votes_for("act_1")] == ["lead"]
                assert execution.statements == start + 4  # the vote, then the read
            # A write's check runs when it is sent (here at commit): it fails the unit.
            with pytest.raises(Refused):
                async with database.write() as tx:
                    await tx.insert_vote(vote("second", "req_2"))
                    unit = tx.connection
                    assert isinstance(unit, execution.PostgresUnit)
                    missing = votes.update().where(votes.c.request_id == "req_none")
                    await unit.defer(missing.values(reason="x"), {}, one_row)
            async with database.read() as tx:
                assert [v.approver for v in await tx.votes_for("act_1")] == ["lead"]
        finally:
            await database.close()

    asyncio.run(main())


@pytest.mark.parametrize("kind", DATABASE_KINDS)
def test_any_other_driver_error_reaches_callers_as_sqlalchemy_wraps_it(
    kind: str, make_database: Callable[[str], str]
) -> None:
    async def main() -> None:
        database = await fresh(make_database(kind))
        try:
            with pytest.raises(DBAPIError) as raised:
                async with database.read() as tx:
                    await tx.connection.execute(text("SELECT * FROM missing_table"))
            assert isinstance(raised.value.orig, (sqlite3.Error, psycopg.Error))
            async with database.read() as tx:  # the connection is still good
                assert (await tx.connection.execute(text("SELECT 1"))).scalar() == 1
        finally:
            await database.close()

    asyncio.run(main())
