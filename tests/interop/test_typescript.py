"""A TypeScript agent (typescript/agent.ts on clients/typescript) against a live server."""

from pathlib import Path

import pytest

from tests.interop.support import ROOT, build, require, run_agent
from tests.support import ServerProcess

CLIENT = ROOT / "clients" / "typescript"
AGENT = Path(__file__).parent / "typescript"


@pytest.fixture(scope="session")
def typescript_agent() -> list[str]:
    node = require("node")
    require("npm")
    # `npm run build` type-checks the generated code and the client, and emits dist/.
    build(["npm", "run", "build", "--silent"], cwd=CLIENT)
    # The agent imports "@signoff/client" as an installed dependency would resolve.
    link = AGENT / "node_modules" / "@signoff" / "client"
    if not link.is_symlink():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path("../../../../../clients/typescript"))
    build([str(CLIENT / "node_modules" / ".bin" / "tsc"), "-p", str(AGENT / "tsconfig.json")])
    return [node, str(AGENT / "build" / "agent.js")]


def test_typescript_agent_waits_through_its_stream_and_acts_once_approved(
    server: ServerProcess, typescript_agent: list[str], tmp_path: Path
) -> None:
    run_agent(server, typescript_agent, tmp_path)


def test_typescript_agent_over_connect_json_on_the_http_port(
    server: ServerProcess, typescript_agent: list[str], tmp_path: Path
) -> None:
    """The same agent with a browser's protocol: Connect (JSON over HTTP/1.1) to the HTTP
    listener, its WatchInstance a Connect server stream; approved from Python over gRPC."""
    http_target = server.http_url.removeprefix("http://")
    run_agent(server, typescript_agent, tmp_path, target=http_target, args=("http",))
