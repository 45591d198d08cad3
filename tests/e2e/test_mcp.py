"""`signoff mcp-proxy` with real parts: an MCP client of the `mcp` SDK → the proxy (its own
process) → an MCP server (tests/mcp_upstream.py, or the npm reference filesystem server),
with a real signoff server deciding. Every test counts what the upstream executed."""

import asyncio
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from google.protobuf import json_format
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from signoff.v1 import approval_service_pb2 as approval_pb
from signoff.v1 import audit_service_pb2 as audit_pb
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import types_pb2 as pb
from tests.support import AGENT_TOKEN, POLICIES, ServerProcess, decide, mint

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM = Path(__file__).parents[1] / "mcp_upstream.py"
FILESYSTEM_SERVER = (
    ROOT / "clients/typescript/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js"
)
WAIT = 30.0  # seconds a test waits for something that should happen much sooner


@pytest.fixture(scope="module")
def signoff(
    make_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server on the MCP test bundle, with timers looked at often (GATE_SHORT expires).

    SQLite only: the gateway is a client of the API, which behaves the same on both
    databases (the API's own tests run on both), and each scenario starts processes."""
    process = ServerProcess(
        make_database("sqlite"),
        tmp_path_factory.mktemp("logs"),
        "--timer-interval",
        "0.2",
        policy=POLICIES / "mcp",
    )
    with process:
        yield process


class Setup:
    """One test's proxy arguments: its own tenant, session key and execution log."""

    def __init__(self, server: ServerProcess, directory: Path, target: str = "") -> None:
        self.server = server
        self.tenant = f"t_{uuid.uuid4().hex[:10]}"
        self.session_key = f"test-{uuid.uuid4().hex[:10]}"
        self.log = directory / "executions.jsonl"
        self.target = target or server.target

    def proxy_args(self, *upstream: str, extra: tuple[str, ...] = ()) -> list[str]:
        return [
            "-m",
            "signoff.cli",
            "mcp-proxy",
            "--target",
            self.target,
            "--tenant",
            self.tenant,
            "--session-key",
            self.session_key,
            "--progress-interval",
            "0.3",
            "--name",
            "up",
            *extra,
            "--",
            *(upstream or (sys.executable, str(UPSTREAM), "--log", str(self.log))),
        ]

    def executions(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    async def pending(self, count: int = 1) -> list[pb.Action]:
        """The tenant's waiting actions, once there are `count` of them."""
        stub = self.server.as_("alice").approval
        for _ in range(int(WAIT / 0.1)):
            page = stub.ListPendingApprovals(
                approval_pb.ListPendingApprovalsRequest(tenant_id=self.tenant)
            )
            if len(page.actions) >= count:
                return list(page.actions)
            await asyncio.sleep(0.1)
        raise AssertionError(f"no {count} waiting action(s) in {self.tenant}")

    async def terminated(self) -> pb.Instance:
        """The tenant's one instance, once it is TERMINATED."""
        for _ in range(int(WAIT / 0.1)):
            (instance,) = self.instances()
            if instance.state == pb.INSTANCE_STATE_TERMINATED:
                return instance
            await asyncio.sleep(0.1)
        raise AssertionError(f"the instance of {self.tenant} was not terminated")

    def instances(self) -> list[pb.Instance]:
        request = execution_pb.ListInstancesRequest(tenant_id=self.tenant)
        return list(self.server.stubs().execution.ListInstances(request).instances)

    def events(self, instance_id: str) -> list[pb.Event]:
        request = audit_pb.ListEventsRequest(instance_id=instance_id, page_size=1000)
        return list(self.server.stubs().audit.ListEvents(request).events)

    def event_types(self, instance_id: str) -> list[str]:
        return [
            pb.EventType.Name(event.type).removeprefix("EVENT_TYPE_")
            for event in self.events(instance_id)
        ]


@pytest.fixture
def setup(signoff: ServerProcess, tmp_path: Path) -> Setup:
    return Setup(signoff, tmp_path)


def _environment() -> dict[str, str]:
    return {"SIGNOFF_TOKEN": AGENT_TOKEN, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}


@asynccontextmanager
async def stdio_session(
    setup: Setup, *upstream: str, extra: tuple[str, ...] = ()
) -> AsyncIterator[ClientSession]:
    """An MCP client session with `signoff mcp-proxy` started as its stdio server."""
    arguments = setup.proxy_args(*upstream, extra=extra)
    parameters = StdioServerParameters(
        command=sys.executable, args=arguments, env=_environment(), cwd=ROOT
    )
    async with stdio_client(parameters) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


def text(result: types.CallToolResult) -> str:
    return " ".join(item.text for item in result.content if isinstance(item, types.TextContent))


def approve(setup: Setup, action_id: str, approver: str = "alice") -> None:
    """The approver's vote, through the command line."""
    command = ["approve", action_id, "--reason", "looked fine", "--target", setup.server.target]
    subprocess.run(
        [sys.executable, "-m", "signoff.cli", *command, "--token", mint(approver)],
        check=True,
        capture_output=True,
        timeout=WAIT,
    )


def proxy_pids(session_key: str) -> list[int]:
    """The proxy processes started for `session_key` (children of this test)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            command = status.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"mcp-proxy" in command and session_key.encode() in command:
            found.append(int(status.parent.name))
    return found


# ---- the scenarios ------------------------------------------------------------------------


async def test_reads_pass_at_once_and_each_call_runs(setup: Setup) -> None:
    async with stdio_session(setup) as session:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert set(tools) == {"read_note", "delete_note", "slow_echo"}
        assert tools["read_note"].annotations.read_only_hint is True  # passed through

        first = await session.call_tool("read_note", {"name": "a"})
        again = await session.call_tool("read_note", {"name": "a"})
        # Resources and prompts pass through, ungated.
        resources = await session.list_resources()
        readme = await session.read_resource("note://readme")
        prompts = await session.list_prompts()
        prompt = await session.get_prompt("summarize", {"name": "a"})

    assert [str(resource.uri) for resource in resources.resources] == ["note://readme"]
    assert readme.contents[0].text == "the upstream's readme"
    assert [p.name for p in prompts.prompts] == ["summarize"]
    assert "Summarize note a." in str(prompt.messages[0].content)

    assert not first.is_error and text(first) == "note a: hello"
    assert not again.is_error  # the same call later is a new action, and runs again
    assert setup.executions() == [{"tool": "read_note", "arguments": {"name": "a"}}] * 2
    (instance,) = setup.instances()
    events = setup.event_types(instance.instance_id)
    # Two actions: each approved by policy, its grant consumed, its execution reported.
    assert events.count("ACTION_REQUESTED") == 2
    assert events.count("ACTION_EXECUTING") == 2
    assert events.count("ACTION_EXECUTION_REPORTED") == 2


async def test_a_destructive_call_waits_and_runs_once_when_approved(setup: Setup) -> None:
    progress: list[tuple[float, str]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, message or ""))

    async with stdio_session(setup) as session:
        call = asyncio.create_task(
            session.call_tool("delete_note", {"name": "a"}, progress_callback=on_progress)
        )
        (action,) = await setup.pending()
        assert action.tool == "up.delete_note"
        assert pb.RiskClass.Name(action.risk_class) == "RISK_CLASS_DESTRUCTIVE"
        assert json_format.MessageToDict(action.params) == {"name": "a"}
        await asyncio.sleep(0.5)
        assert setup.executions() == []  # nothing runs while a human decides
        await asyncio.to_thread(approve, setup, action.action_id)
        result = await asyncio.wait_for(call, WAIT)

    assert not result.is_error and text(result) == "deleted a"
    assert setup.executions() == [{"tool": "delete_note", "arguments": {"name": "a", "reason": ""}}]
    assert progress and action.action_id in progress[0][1]  # the client heard it waits
    values = [value for value, _ in progress]
    assert values == sorted(set(values))  # progress only increases


async def test_an_approver_edit_is_what_runs(setup: Setup) -> None:
    async with stdio_session(setup) as session:
        call = asyncio.create_task(session.call_tool("delete_note", {"name": "b"}))
        (action,) = await setup.pending()
        edited = approval_pb.SubmitDecisionRequest(
            action_id=action.action_id,
            verdict=pb.VERDICT_APPROVE,
            reason="archive instead",
            request_id=f"dec_{uuid.uuid4().hex}",
        )
        edited.edited_params.update({"name": "b", "reason": "archived by alice"})
        setup.server.as_("alice").approval.SubmitDecision(edited)
        result = await asyncio.wait_for(call, WAIT)

    assert not result.is_error
    assert setup.executions() == [
        {"tool": "delete_note", "arguments": {"name": "b", "reason": "archived by alice"}}
    ]


async def test_a_rejection_is_an_error_result_with_the_reason(setup: Setup) -> None:
    async with stdio_session(setup) as session:
        call = asyncio.create_task(session.call_tool("delete_note", {"name": "c"}))
        (action,) = await setup.pending()
        decide(setup.server, action.action_id, "bob", pb.VERDICT_REJECT, "keep that note")
        result = await asyncio.wait_for(call, WAIT)
        # Retrying the same call gets the same answer; approvers are not asked again.
        retry = await session.call_tool("delete_note", {"name": "c"})

    assert result.is_error
    assert "bob" in text(result) and "keep that note" in text(result)
    assert retry.is_error and "keep that note" in text(retry)
    assert setup.executions() == []


async def test_policy_denials_are_error_results_and_can_be_hidden(setup: Setup) -> None:
    extra = ("--intent", "mcp.readonly", "--hide-denied")
    async with stdio_session(setup, extra=extra) as session:
        listed = [tool.name for tool in (await session.list_tools()).tools]
        denied = await session.call_tool("delete_note", {"name": "x"})  # hidden, not gone
        allowed = await session.call_tool("read_note", {"name": "x"})

    assert listed == ["read_note"]
    assert denied.is_error and "policy" in text(denied)
    assert "this session only reads" in text(denied)
    assert not allowed.is_error
    assert [e["tool"] for e in setup.executions()] == ["read_note"]


async def test_an_expired_request_is_an_error_result(setup: Setup) -> None:
    async with stdio_session(setup) as session:
        result = await asyncio.wait_for(session.call_tool("slow_echo", {"text": "hi"}), WAIT)

    assert result.is_error
    assert "expired" in text(result) and "GATE_SHORT" in text(result)
    assert setup.executions() == []


async def test_a_cancelled_call_is_cancelled_in_signoff(setup: Setup) -> None:
    async with stdio_session(setup) as session:
        call = asyncio.create_task(session.call_tool("delete_note", {"name": "d"}))
        (action,) = await setup.pending()
        call.cancel()  # the SDK sends notifications/cancelled
        with pytest.raises(asyncio.CancelledError):
            await call
        instance = await setup.terminated()
        cancelled = [
            event
            for event in setup.events(instance.instance_id)
            if event.type == pb.EVENT_TYPE_ACTION_CANCELLED
        ]
        assert [event.action_id for event in cancelled] == [action.action_id]
        # The session goes on, on a new instance.
        later = await session.call_tool("read_note", {"name": "d"})

    assert not later.is_error
    assert [e["tool"] for e in setup.executions()] == ["read_note"]
    assert len(setup.instances()) == 2


async def test_a_client_that_leaves_cancels_what_waits(setup: Setup) -> None:
    async with stdio_session(setup) as session:
        call = asyncio.create_task(session.call_tool("delete_note", {"name": "g"}))
        await setup.pending()
    call.cancel()  # the session closed stdio under it; the proxy saw EOF
    await setup.terminated()
    assert setup.executions() == []


async def test_a_restarted_proxy_resumes_the_waiting_call(setup: Setup) -> None:
    async with stdio_session(setup) as session:
        call = asyncio.create_task(session.call_tool("delete_note", {"name": "e"}))
        (action,) = await setup.pending()
        (pid,) = proxy_pids(setup.session_key)
        os.kill(pid, signal.SIGTERM)  # a stop on purpose leaves the wait to be resumed
        with pytest.raises(MCPError, match="Connection closed"):
            await asyncio.wait_for(call, WAIT)

    async with stdio_session(setup) as session:
        retry = asyncio.create_task(session.call_tool("delete_note", {"name": "e"}))
        await asyncio.sleep(1.0)
        (same,) = await setup.pending()  # no second request to approvers
        assert same.action_id == action.action_id
        await asyncio.to_thread(approve, setup, action.action_id)
        result = await asyncio.wait_for(retry, WAIT)

    assert not result.is_error
    assert setup.executions() == [{"tool": "delete_note", "arguments": {"name": "e", "reason": ""}}]
    assert len(setup.instances()) == 1


async def test_signoff_unreachable_fails_closed(signoff: ServerProcess, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"
    setup = Setup(signoff, tmp_path, target=closed)
    async with stdio_session(setup) as session:
        tools = await session.list_tools()  # listing needs no decision
        result = await asyncio.wait_for(session.call_tool("read_note", {"name": "f"}), WAIT)

    assert len(tools.tools) == 3
    assert result.is_error and "not run" in text(result)
    assert setup.executions() == []


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def http_proxy(setup: Setup, tmp_path: Path) -> Iterator[str]:
    """The upstream over streamable HTTP, and the proxy serving streamable HTTP: its URL."""
    upstream_port, proxy_port = _free_port(), _free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(UPSTREAM), "--http", str(upstream_port), "--log", str(setup.log)],
        stderr=subprocess.DEVNULL,
    )
    proxy_log = (tmp_path / "proxy.log").open("w")
    arguments = setup.proxy_args(
        extra=(
            "--upstream-url",
            f"http://127.0.0.1:{upstream_port}/mcp",
            "--listen",
            f"127.0.0.1:{proxy_port}",
        )
    )
    proxy = None
    try:
        _wait_for_port(upstream_port)
        proxy = subprocess.Popen(
            [sys.executable, *arguments[: arguments.index("--")]],
            env={**os.environ, **_environment()},
            cwd=ROOT,
            stderr=proxy_log,
        )
        _wait_for_port(proxy_port)
        yield f"http://127.0.0.1:{proxy_port}/mcp"
    finally:
        for process in (proxy, upstream):
            if process is not None:
                process.terminate()
                process.wait(WAIT)


def _wait_for_port(port: int) -> None:
    for _ in range(int(WAIT / 0.1)):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port}")


async def test_streamable_http_on_both_sides(setup: Setup, http_proxy: str) -> None:
    async with (
        streamable_http_client(http_proxy) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        read_result = await session.call_tool("read_note", {"name": "h"})
        call = asyncio.create_task(session.call_tool("delete_note", {"name": "h"}))
        (action,) = await setup.pending()
        assert action.tool == "up.delete_note"
        await asyncio.to_thread(approve, setup, action.action_id)
        result = await asyncio.wait_for(call, WAIT)

    assert not read_result.is_error and not result.is_error
    assert [e["tool"] for e in setup.executions()] == ["read_note", "delete_note"]
    # The HTTP session has an instance of its own, keyed by its Mcp-Session-Id too.
    (instance,) = setup.instances()
    stdio_session_id = "mcp_" + hashlib.sha256(setup.session_key.encode()).hexdigest()[:24]
    assert instance.session_id.startswith("mcp_") and instance.session_id != stdio_session_id


async def test_the_reference_filesystem_server(setup: Setup, tmp_path: Path) -> None:
    """@modelcontextprotocol/server-filesystem: a write waits for approval, a read passes."""
    if not FILESYSTEM_SERVER.exists():
        missing = "no server-filesystem: scripts/setup-polyglot runs npm ci in clients/typescript"
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    data = tmp_path / "data"
    data.mkdir()
    target = data / "hello.txt"
    upstream = ("node", str(FILESYSTEM_SERVER), str(data))
    async with stdio_session(setup, *upstream) as session:
        tools = {tool.name for tool in (await session.list_tools()).tools}
        assert {"write_file", "read_text_file"} <= tools
        call = asyncio.create_task(
            session.call_tool("write_file", {"path": str(target), "content": "approved text"})
        )
        (action,) = await setup.pending()
        assert action.tool == "up.write_file"
        assert not target.exists()  # nothing written while a human decides
        await asyncio.to_thread(approve, setup, action.action_id)
        written = await asyncio.wait_for(call, WAIT)
        read = await session.call_tool("read_text_file", {"path": str(target)})

    assert not written.is_error and target.read_text() == "approved text"
    assert not read.is_error and "approved text" in text(read)
    (instance,) = setup.instances()
    assert setup.event_types(instance.instance_id).count("ACTION_EXECUTION_REPORTED") == 2


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ([], "no upstream"),
        (["--risk", "write_file=DANGEROUS", "--", "cat"], "--risk"),
        (["--name", "1fs", "--", "cat"], "upstreams.0.name"),
        (["--listen", "0.0.0.0:7331", "--", "cat"], "loopback"),
        (["--listen", "127.0.0.1:http", "--", "cat"], "listen"),
        (["--upstream-url", "ftp://host/mcp"], "http"),
        (["--progress-interval", "0", "--", "cat"], "progress_interval"),
        (["--tenant", "two words", "--", "cat"], "envelope.tenant_id"),
    ],
)
def test_unusable_settings_are_refused_before_anything_starts(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from signoff.cli import main

    assert main(["mcp-proxy", *arguments]) == 2
    assert message in capsys.readouterr().err


def test_a_config_file_with_several_upstreams(tmp_path: Path) -> None:
    from signoff.mcp.settings import ConfigError, load

    config = tmp_path / "proxy.yaml"
    config.write_text(
        "session_key: desk\n"
        "envelope: {tenant_id: acme}\n"
        "upstreams:\n"
        "  - {name: fs, command: [npx, server], risk_classes: {mkdir: LOCAL_WRITE}}\n"
        "  - {name: web, url: 'http://127.0.0.1:8000/mcp'}\n"
    )
    settings = load(config, {"envelope": {"user_id": "alice"}})
    assert [upstream.name for upstream in settings.upstreams] == ["fs", "web"]
    assert settings.envelope.tenant_id == "acme" and settings.envelope.user_id == "alice"
    assert settings.upstreams[0].risk_classes == {"mkdir": "LOCAL_WRITE"}

    config.write_text("upstreams:\n  - {name: fs, command: [a]}\n  - {name: fs, url: 'http://h'}\n")
    with pytest.raises(ConfigError, match="unique"):
        load(config, {})
    config.write_text("- not a mapping\n")
    with pytest.raises(ConfigError, match="expected a mapping"):  # the file, not its lines
        load(config, {})


async def test_several_upstreams_from_a_config_file(setup: Setup, tmp_path: Path) -> None:
    """Each upstream's name prefixes its tools: NAME_TOOL for the client, NAME.TOOL in signoff."""
    upstream = [sys.executable, str(UPSTREAM), "--log", str(setup.log)]
    config = tmp_path / "proxy.yaml"
    config.write_text(
        json.dumps(
            {
                "session_key": setup.session_key,
                "envelope": {"tenant_id": setup.tenant},
                "upstreams": [
                    {"name": "notes", "command": upstream},
                    {
                        "name": "archive",
                        "command": upstream,
                        "risk_classes": {"read_note": "DELEGATED"},
                    },
                ],
            }
        )  # JSON is YAML
    )
    arguments = [
        "-m",
        "signoff.cli",
        "mcp-proxy",
        "--target",
        setup.target,
        "--config",
        str(config),
    ]
    parameters = StdioServerParameters(
        command=sys.executable, args=arguments, env=_environment(), cwd=ROOT
    )
    async with stdio_client(parameters) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        names = {tool.name for tool in (await session.list_tools()).tools}
        read_now = await session.call_tool("notes_read_note", {"name": "n"})
        call = asyncio.create_task(session.call_tool("archive_read_note", {"name": "n"}))
        (action,) = await setup.pending()  # pinned to DELEGATED: this read waits
        decide(setup.server, action.action_id, "alice", pb.VERDICT_REJECT, "not from the archive")
        refused = await asyncio.wait_for(call, WAIT)

    assert {"notes_read_note", "archive_delete_note", "archive_slow_echo"} <= names
    assert len(names) == 6
    assert not read_now.is_error
    assert action.tool == "archive.read_note"
    assert refused.is_error and "not from the archive" in text(refused)
    assert setup.executions() == [{"tool": "read_note", "arguments": {"name": "n"}}]
