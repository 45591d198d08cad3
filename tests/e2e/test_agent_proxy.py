"""examples/agent-proxy as separate OS processes against a live signoff server.

Pattern A (persisted_pause.py, LangGraph + SQLite checkpoints) and pattern B
(split_agent.py, a hand-off file): the first process exits 0 while the refund waits, the
ledger stays empty, a decision is submitted from another client, and a second process
refunds exactly once with the approved params, or never when the refund is rejected or
the instance cancelled. Running the second process again never refunds twice: both
consume the approval's grant before refunding, so not even a crash before the report lets
a re-run refund again.
"""

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import types_pb2 as pb
from signoff_client import Signoff, proposed_action
from tests.e2e.test_adapters import PATIENCE, decide, events, pending_actions, waiting_action
from tests.support import ServerProcess, Stubs

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "agent-proxy"
REFUND = {"order_id": "ord_881", "amount": 4200, "currency": "INR"}


def start(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(EXAMPLES / script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], code: int = 0) -> str:
    """Waits (bounded) for a process to exit with `code`; returns its output."""
    try:
        out, err = process.communicate(timeout=PATIENCE)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"{process.args!r} did not exit:\n{out}\n{err}") from None
    assert process.returncode == code, f"{process.args!r} exited {process.returncode}:\n{out}{err}"
    return out


def run(script: str, *args: str, code: int = 0) -> str:
    return finish(start(script, *args), code)


def ledger(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def instance_of(output: str) -> str:
    found = re.search(r"^instance (ins_\S+)$", output, re.MULTILINE)
    assert found, output
    return found.group(1)


def refund_reports(stubs: Stubs, instance_id: str) -> list[pb.Event]:
    """The refund's execution reports; each after the refund's grant was consumed, once."""
    trail = events(stubs, instance_id)
    assert trail[-1].type in (pb.EVENT_TYPE_INSTANCE_COMPLETED, pb.EVENT_TYPE_INSTANCE_TERMINATED)
    refund = [event for event in trail if event.tool == "adp_payments.issue_refund"]
    reports = [e for e in refund if e.type == pb.EVENT_TYPE_ACTION_EXECUTION_REPORTED]
    consumed = [e for e in refund if e.type == pb.EVENT_TYPE_ACTION_EXECUTING]
    assert [e.action_id for e in consumed] == [e.action_id for e in reports]
    assert all(c.revision < r.revision for c, r in zip(consumed, reports, strict=True))
    return reports


# ---- pattern A: persisted pause ----------------------------------------------------------


def pattern_a(server: ServerProcess, workdir: Path, command: str) -> list[str]:
    """Arguments for persisted_pause.py; the thread id is the (unique) workdir's name."""
    return [
        command,
        "--target",
        server.target,
        "--workdir",
        str(workdir),
        "--thread",
        workdir.name,
    ]


def test_persisted_pause_exits_then_resumes_once_after_approval(
    server: ServerProcess, tmp_path: Path
) -> None:
    stubs, workdir = server.stubs(), tmp_path / f"t{uuid.uuid4().hex[:8]}"
    out = run("persisted_pause.py", *pattern_a(server, workdir, "agent"))
    instance_id = instance_of(out)
    action = waiting_action(stubs, instance_id)
    assert f"paused: action {action.action_id}" in out
    assert action.tool == "adp_payments.issue_refund"
    assert ledger(workdir / "ledger.jsonl") == []  # the agent exited; nothing was refunded
    # A resumer with a deadline: the refund still waits, so it exits 3 and does nothing.
    run("persisted_pause.py", *pattern_a(server, workdir, "resume"), "--timeout", "0.5", code=3)
    assert ledger(workdir / "ledger.jsonl") == []

    # A resumer without a deadline watches until the decision arrives, then resumes.
    resumer = start("persisted_pause.py", *pattern_a(server, workdir, "resume"))
    assert ledger(workdir / "ledger.jsonl") == []
    decide(stubs, action.action_id, pb.VERDICT_APPROVE)
    assert "finished: Refund of ord_881: refunded" in finish(resumer)
    assert ledger(workdir / "ledger.jsonl") == [{"action_id": action.action_id, **REFUND}]

    # Again, both ways in: the graph is finished, nothing runs twice.
    assert "finished" in run("persisted_pause.py", *pattern_a(server, workdir, "resume"))
    assert "finished" in run("persisted_pause.py", *pattern_a(server, workdir, "agent"))
    assert len(ledger(workdir / "ledger.jsonl")) == 1
    assert [e.action_id for e in refund_reports(stubs, instance_id)] == [action.action_id]


def test_persisted_pause_never_refunds_a_rejection(server: ServerProcess, tmp_path: Path) -> None:
    stubs, workdir = server.stubs(), tmp_path / f"t{uuid.uuid4().hex[:8]}"
    instance_id = instance_of(run("persisted_pause.py", *pattern_a(server, workdir, "agent")))
    decide(stubs, waiting_action(stubs, instance_id).action_id, pb.VERDICT_REJECT, "no")
    out = run("persisted_pause.py", *pattern_a(server, workdir, "resume"))
    assert "not done: rejected by user_finance_lead_77" in out
    assert ledger(workdir / "ledger.jsonl") == []
    assert refund_reports(stubs, instance_id) == []


# ---- pattern B: split agent --------------------------------------------------------------


def pattern_b(server: ServerProcess, tmp_path: Path, command: str) -> list[str]:
    return [
        command,
        "--target",
        server.target,
        "--handoff",
        str(tmp_path / "handoff.json"),
        "--ledger",
        str(tmp_path / "ledger.jsonl"),
    ]


def test_split_agent_hands_off_and_performs_once_after_approval(
    server: ServerProcess, tmp_path: Path
) -> None:
    stubs = server.stubs()
    instance_id = instance_of(run("split_agent.py", *pattern_b(server, tmp_path, "prepare")))
    action = waiting_action(stubs, instance_id)
    handoff = json.loads((tmp_path / "handoff.json").read_text())
    assert handoff.keys() == {"instance_id", "action_id", "revision", "proposal"}
    assert (handoff["instance_id"], handoff["action_id"]) == (instance_id, action.action_id)
    assert handoff["proposal"]["params"] == REFUND
    assert ledger(tmp_path / "ledger.jsonl") == []

    # The post-approval stage starts before the decision and learns it from the stream.
    performing = start("split_agent.py", *pattern_b(server, tmp_path, "perform"))
    assert ledger(tmp_path / "ledger.jsonl") == []
    decide(stubs, action.action_id, pb.VERDICT_APPROVE)
    assert "finished: refunded" in finish(performing)
    assert ledger(tmp_path / "ledger.jsonl") == [{"action_id": action.action_id, **REFUND}]

    out = run("split_agent.py", *pattern_b(server, tmp_path, "perform"))
    assert f"already executed ({action.action_id})" in out
    assert len(ledger(tmp_path / "ledger.jsonl")) == 1
    assert [e.action_id for e in refund_reports(stubs, instance_id)] == [action.action_id]


def test_split_agent_never_refunds_after_a_crash_that_spent_the_grant(
    server: ServerProcess, tmp_path: Path
) -> None:
    """As if a first `perform` died after consuming the grant, before refunding or reporting:
    the action is EXECUTING, and a second `perform` does not refund."""
    stubs = server.stubs()
    instance_id = instance_of(run("split_agent.py", *pattern_b(server, tmp_path, "prepare")))
    action = waiting_action(stubs, instance_id)
    decide(stubs, action.action_id, pb.VERDICT_APPROVE)
    handoff = json.loads((tmp_path / "handoff.json").read_text())
    with Signoff.connect(server.target) as signoff:  # the first perform, up to its crash
        decision = signoff.wait_for_decision(
            instance_id,
            action.action_id,
            handoff["revision"],
            proposal=proposed_action(**handoff["proposal"]),
            timeout=PATIENCE,
        )
        signoff.consume_grant(decision.action_id, decision.grant_token)
    out = run("split_agent.py", *pattern_b(server, tmp_path, "perform"))
    assert f"started earlier, never reported ({action.action_id})" in out
    assert ledger(tmp_path / "ledger.jsonl") == []


def test_split_agent_never_performs_a_rejected_or_cancelled_refund(
    server: ServerProcess, tmp_path: Path
) -> None:
    stubs = server.stubs()
    rejected = tmp_path / "rejected"
    rejected.mkdir()
    instance_id = instance_of(run("split_agent.py", *pattern_b(server, rejected, "prepare")))
    decide(stubs, waiting_action(stubs, instance_id).action_id, pb.VERDICT_REJECT, "no")
    out = run("split_agent.py", *pattern_b(server, rejected, "perform"))
    assert "not refunded, rejected by user_finance_lead_77" in out
    assert ledger(rejected / "ledger.jsonl") == []

    cancelled = tmp_path / "cancelled"
    cancelled.mkdir()
    instance_id = instance_of(run("split_agent.py", *pattern_b(server, cancelled, "prepare")))
    assert pending_actions(stubs, instance_id)
    request = execution_pb.CancelInstanceRequest(instance_id=instance_id, reason="withdrawn")
    stubs.execution.CancelInstance(request, timeout=PATIENCE)
    out = run("split_agent.py", *pattern_b(server, cancelled, "perform"))
    assert "not refunded, the instance was cancelled" in out
    assert ledger(cancelled / "ledger.jsonl") == []
    assert refund_reports(stubs, instance_id) == []
