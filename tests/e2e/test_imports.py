"""What a serving process imports: not the migration machinery when the schema is current,
nor the HTTP listener, the console or OIDC when they are off (issue 14: the resident size
of many idle watch streams is mostly idle imports)."""

import json
import subprocess
import sys
from pathlib import Path

HEAVY = [
    "alembic",
    "signoff.store.migrate",
    "signoff.api.http",
    "uvicorn",
    "starlette",
    "connectrpc",
    "signoff.web.console",
    "authlib",
]

MIGRATE = """
import asyncio, json, sys
from signoff.api.server import migrate_if_needed
from signoff.store.database import Database

async def main():
    database = Database(sys.argv[1])
    try:
        await migrate_if_needed(database)
    finally:
        await database.close()

asyncio.run(main())
print(json.dumps({"alembic": "alembic" in sys.modules}))
"""


def run(code: str, *args: str) -> dict[str, bool]:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    return dict(json.loads(done.stdout.splitlines()[-1]))


def test_the_server_module_imports_nothing_it_may_not_use() -> None:
    loaded = run(
        "import json, sys, signoff.cli, signoff.api.server\n"
        f"print(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    )
    assert [name for name, present in loaded.items() if present] == []


def test_alembic_is_imported_only_to_migrate(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'signoff.db'}"
    assert run(MIGRATE, url) == {"alembic": True}  # a new database: migrated
    assert run(MIGRATE, url) == {"alembic": False}  # current: told without Alembic
