"""Schema migrations (Alembic), run on start by `signoff serve` and alone by `signoff migrate`."""

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

from signoff.store.database import Database

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection, *_: Any) -> None:
    command.upgrade(alembic_config(connection), "head")


async def migrate(database: Database) -> None:
    """Brings the schema to the newest revision; a no-op when it is current."""
    try:
        async with database.engine.begin() as connection:
            if database.dialect == "postgresql":
                # Replicas starting together migrate one at a time.
                await connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7710001)")
            await connection.run_sync(_upgrade)
    finally:
        # The server's calls never use this engine: keep no connection (nor, on SQLite,
        # aiosqlite's thread) open for the process's life.
        await database.engine.dispose()
