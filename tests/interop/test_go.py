"""A Go agent (go/agent/main.go on clients/go) against a live server."""

from pathlib import Path

import pytest

from tests.interop.support import build, require, run_agent
from tests.support import ServerProcess


@pytest.fixture(scope="session")
def go_agent(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    require("go")
    binary = tmp_path_factory.mktemp("go") / "agent"
    # scripts/go builds offline against Debian's Go packages; vet checks clients/go too.
    build(["scripts/go", "clients/go", "vet", "./..."])
    build(["scripts/go", "tests/interop/go", "build", "-o", str(binary), "./agent"])
    return [str(binary)]


def test_go_agent_waits_through_its_stream_and_acts_once_approved(
    server: ServerProcess, go_agent: list[str], tmp_path: Path
) -> None:
    run_agent(server, go_agent, tmp_path, consumes=True)  # main.go calls ConsumeGrant
