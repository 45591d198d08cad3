"""Runs an agent program in another language against a live server, and approves it from Python.

Every agent follows the same script (see typescript/agent.ts and go/agent/main.go): it opens
an instance, asks about a destructive refund, prints "WAITING <action_id> <instance_id>" and
waits on WatchInstance. The test approves from Python; the agent must see APPROVED through its
stream, print "APPROVED <action_id>", ask again for the approval's grant, report the
execution with it (or consume it with ConsumeGrant first), complete the instance and print
"DONE".
"""

import os
import queue
import shutil
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from signoff.v1 import audit_service_pb2 as audit_pb
from signoff.v1 import types_pb2 as pb
from tests.support import ServerProcess, decide

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60  # seconds for any one step: generous, never an assertion on speed


def require(tool: str) -> str:
    """The path of a toolchain command; scripts/setup-polyglot installs them all."""
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed: run scripts/setup-polyglot (scripts/test does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def build(command: list[str], cwd: Path = ROOT) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}"


def run_agent(
    server: ServerProcess,
    command: list[str],
    log_dir: Path,
    *,
    consumes: bool = False,
    target: str = "",
    args: tuple[str, ...] = (),
) -> None:
    """Runs one agent through the script; `consumes`: it calls ConsumeGrant before its
    report (instead of reporting with the grant); `target`: the agent's HOST:PORT, if not
    the server's gRPC port; `args`: more arguments for the agent."""
    request_id = f"req_interop_{uuid.uuid4().hex[:12]}"
    trace_id = uuid.uuid4().hex  # the agent's trace, sent as W3C traceparent on its calls
    env = {**os.environ, "TRACEPARENT": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"}
    stderr_path = log_dir / "agent.stderr"
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            [*command, target or server.target, request_id, *args],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
        )
    stdout = process.stdout
    assert stdout is not None
    # A reader thread, so that every wait for a line is bounded.
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()

    def next_line() -> str | None:
        try:
            return lines.get(timeout=TIMEOUT)
        except queue.Empty:
            return None

    try:
        waiting = next_line()
        assert waiting is not None and waiting.startswith("WAITING act_"), (
            f"agent said {waiting!r}; stderr:\n{stderr_path.read_text()}"
        )
        _, action_id, instance_id = waiting.split()

        # Another client decides: the approver's tool, here a Python grpcio stub.
        stubs = server.stubs()
        decided = decide(
            server, action_id, "user_finance_lead_77", reason="order verified", timeout=TIMEOUT
        )
        assert decided.action.state == pb.ACTION_STATE_APPROVED

        rest = []
        while (line := next_line()) is not None:
            rest.append(line)
        assert process.wait(timeout=TIMEOUT) == 0, stderr_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert rest == [f"APPROVED {action_id}", "DONE"], stderr_path.read_text()

    # The trail holds what the agent did, in order.
    events = stubs.audit.ListEvents(
        audit_pb.ListEventsRequest(instance_id=instance_id), timeout=TIMEOUT
    ).events
    executing = [pb.EVENT_TYPE_ACTION_EXECUTING] if consumes else []
    assert [e.type for e in events] == [
        pb.EVENT_TYPE_INSTANCE_CREATED,
        pb.EVENT_TYPE_ACTION_REQUESTED,
        pb.EVENT_TYPE_ACTION_DECIDED,
        *executing,
        pb.EVENT_TYPE_ACTION_EXECUTION_REPORTED,
        pb.EVENT_TYPE_INSTANCE_COMPLETED,
    ]
    decided_event, reported = events[2], events[-2]
    assert decided_event.action_id == action_id and decided_event.outcome == pb.OUTCOME_APPROVED
    assert decided_event.actor == "user_finance_lead_77"
    if consumes:
        assert events[3].action_id == action_id
        assert events[3].action_state == pb.ACTION_STATE_EXECUTING
    assert reported.action_id == action_id and reported.action_state == pb.ACTION_STATE_EXECUTED
    # The agent's trace runs through every event and the record, the human wait included.
    assert {e.trace_id for e in events} == {trace_id}
    record = stubs.audit.GetDecisionRecord(
        audit_pb.GetDecisionRecordRequest(record_id=decided_event.record_id), timeout=TIMEOUT
    )
    assert record.record.trace_id == trace_id
