"""Kill -9 while many decisions are being committed at once; restart on the same database:
every acknowledged decision is there, every unacknowledged one is there whole or not at
all (its vote, its event, its record and the action's state together), and every chain
still verifies. Sending an unacknowledged decision again (same request id) settles it."""

import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from signoff.v1 import approval_service_pb2 as approval_pb
from signoff.v1 import audit_service_pb2 as audit_pb
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import types_pb2 as pb
from tests.conftest import DATABASE_KINDS
from tests.support import ServerProcess, decide, waiting_refund

ACTIONS = 40
DECIDERS = 8
KILL_AFTER = 10  # acknowledged decisions


@pytest.mark.parametrize("kind", DATABASE_KINDS)
def test_a_crash_during_concurrent_decisions_loses_no_acknowledged_one_and_halves_none(
    kind: str, make_database: Callable[[str], str], tmp_path: Path
) -> None:
    url = make_database(kind)
    first = ServerProcess(url, tmp_path).start()
    stubs = first.stubs()
    # One waiting action per instance: the decisions commit concurrently, not in one queue.
    waiting = {}
    for _ in range(ACTIONS):
        instance_id, answer = waiting_refund(stubs)
        waiting[answer.action_id] = instance_id
    request_ids = {action_id: f"dec_crash_{i}" for i, action_id in enumerate(waiting)}

    acknowledged: set[str] = set()
    lock = threading.Lock()
    enough = threading.Event()
    todo = list(waiting)

    def decider() -> None:
        while True:
            with lock:
                if not todo:
                    return
                action_id = todo.pop()
            try:
                answer = decide(
                    first, action_id, "lead", request_id=request_ids[action_id], timeout=10
                )
            except grpc.RpcError:
                continue  # the server is gone: unacknowledged
            assert answer.action.state == pb.ACTION_STATE_APPROVED
            with lock:
                acknowledged.add(action_id)
                if len(acknowledged) >= KILL_AFTER:
                    enough.set()

    threads = [threading.Thread(target=decider) for _ in range(DECIDERS)]
    for thread in threads:
        thread.start()
    assert enough.wait(60), "too few decisions were acknowledged"
    first.kill()  # SIGKILL, with decisions in flight
    for thread in threads:
        thread.join(30)
    assert KILL_AFTER <= len(acknowledged) < ACTIONS, "the kill came after every decision"

    with ServerProcess(url, tmp_path) as second:
        stubs = second.stubs()
        pending = {
            a.action_id
            for a in second.as_("lead")
            .approval.ListPendingApprovals(approval_pb.ListPendingApprovalsRequest(page_size=500))
            .actions
        }
        decided_now = set()
        for action_id, instance_id in waiting.items():
            events = stubs.audit.ListEvents(audit_pb.ListEventsRequest(instance_id=instance_id))
            decided = [e for e in events.events if e.type == pb.EVENT_TYPE_ACTION_DECIDED]
            records = stubs.audit.ListDecisionRecords(
                audit_pb.ListDecisionRecordsRequest(instance_id=instance_id)
            ).records
            instance = stubs.execution.GetInstance(
                execution_pb.GetInstanceRequest(instance_id=instance_id)
            ).instance
            if decided:
                # Wholly there: the event, the record with the vote, the action's state.
                assert len(decided) == 1 and action_id not in pending
                assert [r.action_id for r in records] == [action_id]
                assert [a.approver for a in records[0].approvals] == ["lead"]
                assert instance.state != pb.INSTANCE_STATE_WAITING_FOR_HUMAN
                decided_now.add(action_id)
            else:
                # Wholly absent: still waiting, no record, no half of a decision.
                assert action_id not in acknowledged, f"acknowledged {action_id} was lost"
                assert action_id in pending and not records
                assert instance.state == pb.INSTANCE_STATE_WAITING_FOR_HUMAN
                assert instance.revision == events.events[-1].revision
            verified = stubs.audit.VerifyChain(audit_pb.VerifyChainRequest(instance_id=instance_id))
            assert verified.intact, verified.problem
        assert acknowledged <= decided_now

        # The client retries what it never heard back about, with the same request id: a
        # decision that committed answers as it did; one that did not is taken now.
        started = time.monotonic()
        for action_id in set(waiting) - acknowledged:
            again = decide(second, action_id, "lead", request_id=request_ids[action_id])
            assert again.action.state == pb.ACTION_STATE_APPROVED
            assert [a.approver for a in again.record.approvals] == ["lead"]
        assert time.monotonic() - started < 60
        for instance_id in waiting.values():
            verified = stubs.audit.VerifyChain(audit_pb.VerifyChainRequest(instance_id=instance_id))
            assert verified.intact, verified.problem
            records = stubs.audit.ListDecisionRecords(
                audit_pb.ListDecisionRecordsRequest(instance_id=instance_id)
            ).records
            assert len(records) == 1
