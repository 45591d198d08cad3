"""Fixtures: one real server per database kind for the session, fresh databases on demand.

PostgreSQL comes from the cluster scripts/test starts (SIGNOFF_TEST_POSTGRES_URL). Without
it the PostgreSQL half is skipped locally, and fails under CI=true.
"""

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import (
    AGENT_TOKEN,
    EXAMPLE_POLICY,
    POSTGRES_URL,
    ServerProcess,
    Stubs,
    new_database_url,
)

DATABASE_KINDS = ["sqlite", "postgresql"]

# Clients started by tests (the SDK, the CLI, agent processes) authenticate as the test agent.
os.environ["SIGNOFF_TOKEN"] = AGENT_TOKEN


def require_database(kind: str) -> None:
    if kind == "postgresql" and not POSTGRES_URL:
        if os.environ.get("CI") == "true":
            pytest.fail(
                "CI=true but SIGNOFF_TEST_POSTGRES_URL is not set: PostgreSQL did not start"
            )
        pytest.skip("no PostgreSQL test cluster (run through scripts/test)")


@pytest.fixture(scope="session", params=DATABASE_KINDS)
def database_kind(request: pytest.FixtureRequest) -> str:
    require_database(request.param)
    return str(request.param)


@pytest.fixture(scope="session")
def make_database(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], str]:
    directory = tmp_path_factory.mktemp("databases")

    def make(kind: str) -> str:
        require_database(kind)
        return new_database_url(kind, directory)

    return make


@pytest.fixture(scope="session")
def server(
    database_kind: str,
    make_database: Callable[[str], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    """A shared server per database kind. Tests isolate themselves by fresh request ids."""
    process = ServerProcess(make_database(database_kind), tmp_path_factory.mktemp("logs"))
    with process:
        yield process


@pytest.fixture
def stubs(server: ServerProcess) -> Stubs:
    return server.stubs()


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture(scope="session")
def example_server(
    database_kind: str,
    make_database: Callable[[str], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    """A server on the example policy bundle (the default of `signoff serve`)."""
    process = ServerProcess(
        make_database(database_kind), tmp_path_factory.mktemp("logs"), policy=EXAMPLE_POLICY
    )
    with process:
        yield process
