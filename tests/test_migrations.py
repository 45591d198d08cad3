"""The Alembic migrations build exactly the schema the code uses, on both databases."""

import asyncio
from collections.abc import Callable

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from signoff.store.database import Database
from signoff.store.migrate import migrate
from signoff.store.schema import metadata
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
