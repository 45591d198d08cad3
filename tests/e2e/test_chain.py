"""The tamper-evident trail: chained events, VerifyChain on the database, and offline
verification of an export that names the first broken link for any kind of change."""

import itertools
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from signoff.domain.chain import event_body, event_hash
from signoff.domain.models import Event
from signoff.domain.states import EventType, InstanceState
from signoff.v1 import audit_service_pb2 as audit_pb
from signoff.v1 import execution_service_pb2 as execution_pb
from tests.support import ServerProcess, decide, envelope, lookup_action, refund_action

SIGNOFF = Path(sys.executable).parent / "signoff"


def finished_instance(server: ServerProcess) -> str:
    """A refund that waited, was approved, executed, and completed: 6 events, 2 records."""
    agent = server.stubs()
    instance_id = agent.execution.InvokeAgent(envelope()).instance.instance_id
    agent.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(instance_id=instance_id, action=lookup_action())
    )
    waiting = agent.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(instance_id=instance_id, action=refund_action())
    )
    decide(server, waiting.action_id, "lead", reason="ok")
    grant = agent.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(instance_id=instance_id, action=refund_action())
    ).grant_token
    report = execution_pb.ReportExecutionRequest(
        action_id=waiting.action_id,
        result=execution_pb.EXECUTION_RESULT_SUCCEEDED,
        evidence_ref="tool:adp_payments.issue_refund:tc_121",
        grant_token=grant,
    )
    report.outputs.update({"transaction_id": "txn_q9"})
    agent.execution.ReportExecution(report)
    agent.execution.CompleteInstance(execution_pb.CompleteInstanceRequest(instance_id=instance_id))
    return instance_id


def verify(server: ServerProcess, instance_id: str) -> audit_pb.VerifyChainResponse:
    return server.stubs().audit.VerifyChain(audit_pb.VerifyChainRequest(instance_id=instance_id))


def sql(server: ServerProcess, statement: str, **params: object) -> None:
    engine = sa.create_engine(server.database_url)  # behind the server's back
    with engine.begin() as connection:
        connection.execute(sa.text(statement), params)
    engine.dispose()


def test_events_are_chained_and_the_chain_verifies(server: ServerProcess) -> None:
    instance_id = finished_instance(server)
    events = server.stubs().audit.ListEvents(audit_pb.ListEventsRequest(instance_id=instance_id))
    chain = list(events.events)
    assert chain[0].prev_hash == ""
    for earlier, later in itertools.pairwise(chain):
        assert later.prev_hash == earlier.hash and later.hash.startswith("sha256:")
    assert [bool(e.record_sha256) for e in chain] == [False, True, False, True, True, False]
    report = verify(server, instance_id)
    assert report.intact and report.events_checked == 6 and report.records_checked == 2
    assert report.head_hash == chain[-1].hash


@pytest.mark.parametrize(
    "tamper,revision,problem",
    [
        (
            "UPDATE events SET reason = 'approved by nobody' "
            "WHERE instance_id = :i AND revision = 4",
            4,
            "content does not match",
        ),
        ("DELETE FROM events WHERE instance_id = :i AND revision = 3", 3, "missing"),
        (
            "UPDATE decision_records SET body = :body WHERE instance_id = :i AND action_id IN "
            "(SELECT action_id FROM actions WHERE instance_id = :i AND tool_call_id = 'tc_121')",
            5,
            "does not match the hash",
        ),
    ],
    ids=["modified event", "deleted event", "modified record"],
)
def test_tampering_with_the_database_is_found(
    server: ServerProcess, tamper: str, revision: int, problem: str
) -> None:
    instance_id = finished_instance(server)
    record = server.stubs().audit.ListDecisionRecords(
        audit_pb.ListDecisionRecordsRequest(instance_id=instance_id)
    )
    forged = {"record_id": record.records[0].record_id, "outcome": "APPROVED"}
    sql(server, tamper, i=instance_id, body=json.dumps(forged))
    report = verify(server, instance_id)
    assert not report.intact
    assert report.broken_revision == revision and problem in report.problem


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SIGNOFF, *args], capture_output=True, text=True, timeout=60)


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines()


def edit_event(lines: list[str], revision: int, change: Callable[[dict], None]) -> list[str]:  # type: ignore[type-arg]
    out = []
    for line in lines:
        body = json.loads(line)
        if body["kind"] == "event" and body["revision"] == revision:
            change(body)
            line = json.dumps(body, sort_keys=True)
        out.append(line)
    return out


def event_index(lines: list[str], revision: int) -> int:
    return next(
        i
        for i, line in enumerate(lines)
        if json.loads(line)["kind"] == "event" and json.loads(line)["revision"] == revision
    )


def modify(lines: list[str]) -> list[str]:
    return edit_event(lines, 4, lambda b: b.update(actor="mallory"))


def delete(lines: list[str]) -> list[str]:
    return lines[: event_index(lines, 3)] + lines[event_index(lines, 3) + 1 :]


def insert(lines: list[str]) -> list[str]:
    i = event_index(lines, 3)
    return [*lines[: i + 1], lines[i], *lines[i + 1 :]]


def reorder(lines: list[str]) -> list[str]:
    i, j = event_index(lines, 2), event_index(lines, 3)
    swapped = list(lines)
    swapped[i], swapped[j] = lines[j], lines[i]
    return swapped


def truncate(lines: list[str]) -> list[str]:
    i = event_index(lines, 6)
    return lines[:i] + lines[i + 1 :]


def rewrite_record(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        body = json.loads(line)
        if body["kind"] == "record" and body["body"].get("outputs"):
            body["body"]["outputs"]["transaction_id"] = "txn_elsewhere"
            line = json.dumps(body, sort_keys=True)
        out.append(line)
    return out


@pytest.mark.parametrize(
    "change,revision",
    [
        (modify, 4),
        (delete, 3),
        (insert, 4),
        (reorder, 2),
        (truncate, 6),
        (rewrite_record, 5),
    ],
    ids=["modification", "deletion", "insertion", "reordering", "truncation", "record"],
)
def test_an_export_verifies_offline_and_names_the_first_broken_link(
    server: ServerProcess, tmp_path: Path, change: Callable[[list[str]], list[str]], revision: int
) -> None:
    instance_id = finished_instance(server)
    export = tmp_path / "trail.jsonl"
    made = run(
        "audit", "export", "--database-url", server.database_url, "--instance", instance_id,
        "--output", export,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    ok = run("audit", "verify", export)
    assert ok.returncode == 0 and ok.stdout.startswith("intact: 1 instances, 6 events")

    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("\n".join(change(lines_of(export))) + "\n")
    broken = run("audit", "verify", tampered)
    assert broken.returncode == 1
    assert f"BROKEN: instance {instance_id} at revision {revision}:" in broken.stdout


def test_trace_ids_are_chained_and_tampering_with_them_is_found(
    server: ServerProcess, tmp_path: Path
) -> None:
    """An agent's trace id is in every event it caused, under the hash: changing it breaks
    the chain, in the database and in an export."""
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    sent = (("traceparent", f"00-{trace_id}-00f067aa0ba902b7-01"),)
    agent = server.stubs()
    instance_id = agent.execution.InvokeAgent(envelope(), metadata=sent).instance.instance_id
    waiting = agent.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(instance_id=instance_id, action=refund_action()),
        metadata=sent,
    )
    decide(server, waiting.action_id, "lead", reason="ok")
    export = tmp_path / "trail.jsonl"
    made = run(
        "audit", "export", "--database-url", server.database_url, "--instance", instance_id,
        "--output", export,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    events = [json.loads(line) for line in lines_of(export) if '"kind": "event"' in line]
    assert [e["trace_id"] for e in events] == [trace_id] * 3
    assert run("audit", "verify", export).returncode == 0

    # Offline: another trace id, or none, for the approval's event.
    for change in (lambda b: b.update(trace_id="0" * 32), lambda b: b.pop("trace_id")):
        tampered = tmp_path / "tampered.jsonl"
        tampered.write_text("\n".join(edit_event(lines_of(export), 3, change)) + "\n")
        broken = run("audit", "verify", tampered)
        assert broken.returncode == 1
        assert f"BROKEN: instance {instance_id} at revision 3:" in broken.stdout

    # In the database.
    assert verify(server, instance_id).intact
    erase = "UPDATE events SET trace_id = '' WHERE instance_id = :i AND revision = 2"
    sql(server, erase, i=instance_id)
    report = verify(server, instance_id)
    assert not report.intact
    assert report.broken_revision == 2 and "content does not match" in report.problem


def test_events_without_a_trace_id_hash_as_they_always_did() -> None:
    """Chains written before trace ids existed still verify: an empty trace_id is left out
    of the hashed body (this hash was computed before trace_id was added)."""
    event = Event(
        instance_id="ins_golden",
        tenant_id="tenant_acme_prod",
        revision=1,
        type=EventType.INSTANCE_CREATED,
        time=datetime(2026, 5, 3, 9, 30, tzinfo=UTC),
        instance_state=InstanceState.RUNNING,
        actor="agt_support",
    )
    assert "trace_id" not in event_body(event)
    assert event_hash(event_body(event)) == (
        "sha256:e83a30cfef04e7476de78f70b011d54b853280c8b81fbfd97c8daad686d1818b"
    )
    traced = replace(event, trace_id="4bf92f3577b34da6a3ce929d0e0e4736")
    assert event_hash(event_body(traced)) != event_hash(event_body(event))
