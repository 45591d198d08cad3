"""The Alembic migrations build exactly the schema the code uses, on both databases."""

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, insert, select

from signoff.store.database import Database
from signoff.store.migrate import alembic_config, migrate
from signoff.store.schema import actions, metadata, votes
from tests.conftest import DATABASE_KINDS


@pytest.mark.parametrize("kind", DATABASE_KINDS)
def test_migrations_match_the_schema(kind: str, make_database: Callable[[str], str]) -> None:
    async def differences() -> list[object]:
        database = Database(make_database(kind))
        await migrate(database)
        await migrate(database)  # a second run is a no-op
        async with database.engine.connect() as connection:
            found = await connection.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
            )
        await database.close()
        return list(found)

    assert asyncio.run(differences()) == []


@pytest.mark.parametrize("kind", DATABASE_KINDS)
def test_votes_take_the_tenant_of_their_action(
    kind: str, make_database: Callable[[str], str]
) -> None:
    """0011: votes recorded before request ids were per tenant get their action's tenant."""
    now = datetime.now(UTC)
    action = {
        "action_id": "act_old",
        "instance_id": "ins_old",
        "tenant_id": "tenant_old",
        "tool_call_id": "tc_old",
        "tool": "adp_orders.lookup",
        "params": {},
        "risk_class": "READ_ONLY",
        "evidence_refs": [],
        "action_sha256": "sha256:" + "0" * 64,
        "state": "WAITING_FOR_HUMAN",
        "gate_ids": [],
        "decided_by": "",
        "decision_reason": "",
        "create_time": now,
        "policy": {},
        "execution_evidence_ref": "",
    }
    vote = {
        "action_id": "act_old",
        "approver": "usr_old",
        "verdict": "APPROVE",
        "reason": "ok",
        "request_id": "dec_shared",
        "request_sha256": "sha256:" + "1" * 64,
        "time": now,
    }

    def at_0009_then_head(sync: Connection) -> list[tuple[str, str]]:
        command.upgrade(alembic_config(sync), "0009")
        sync.execute(insert(actions).values(action))
        sync.execute(insert(votes).values(vote))
        command.upgrade(alembic_config(sync), "head")
        # The same key in another tenant is another request now.
        sync.execute(
            insert(actions).values(
                {
                    **action,
                    "action_id": "act_new",
                    "instance_id": "ins_new",
                    "tenant_id": "tenant_new",
                }
            )
        )
        sync.execute(
            insert(votes).values({**vote, "action_id": "act_new", "tenant_id": "tenant_new"})
        )
        rows = sync.execute(select(votes.c.action_id, votes.c.tenant_id).order_by(votes.c.seq))
        return [(row.action_id, row.tenant_id) for row in rows]

    async def migrated() -> list[tuple[str, str]]:
        database = Database(make_database(kind))
        async with database.engine.begin() as connection:
            found = await connection.run_sync(at_0009_then_head)
        await database.close()
        return found

    assert asyncio.run(migrated()) == [("act_old", "tenant_old"), ("act_new", "tenant_new")]
