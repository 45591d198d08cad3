"""Concurrent deciders and duplicate requests: exactly one wins, every other learns who did."""

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc

from signoff.v1 import approval_service_pb2 as approval_pb
from signoff.v1 import audit_service_pb2 as audit_pb
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import types_pb2 as pb
from tests.support import ServerProcess, envelope, error_info, refund_action

DECIDERS = 40


def race(server: ServerProcess, calls: list[Callable[[object], object]]) -> list[object]:
    """Runs the calls at the same moment, each on its own channel; returns results or errors."""
    stubs = [server.stubs() for _ in range(min(len(calls), 8))]
    start = threading.Barrier(len(calls))

    def run(i: int) -> object:
        start.wait()
        try:
            return calls[i](stubs[i % len(stubs)])
        except grpc.RpcError as error:
            return error

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, range(len(calls))))


def test_exactly_one_decider_wins(server: ServerProcess) -> None:
    stubs = server.stubs()
    instance = stubs.execution.InvokeAgent(envelope()).instance
    waiting = stubs.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(
            instance_id=instance.instance_id, action=refund_action()
        )
    )

    def decider(i: int) -> Callable[[object], object]:
        verdict = pb.VERDICT_APPROVE if i % 2 else pb.VERDICT_REJECT
        message = approval_pb.SubmitDecisionRequest(
            action_id=waiting.action_id,
            verdict=verdict,
            reason=f"decider {i}",
            request_id=f"race_{uuid.uuid4().hex}",
        )
        approver = server.as_(f"approver_{i}")
        return lambda _: approver.approval.SubmitDecision(message)

    results = race(server, [decider(i) for i in range(DECIDERS)])
    winners = [r for r in results if isinstance(r, approval_pb.SubmitDecisionResponse)]
    losers = [r for r in results if isinstance(r, grpc.RpcError)]
    assert len(winners) == 1 and len(losers) == DECIDERS - 1, results
    winner = winners[0].action
    verdict = "APPROVE" if winner.state == pb.ACTION_STATE_APPROVED else "REJECT"
    for loser in losers:
        assert loser.code() == grpc.StatusCode.ABORTED
        info = error_info(loser)
        assert info.reason == "ALREADY_DECIDED"
        assert info.metadata["winning_approver"] == winner.decided_by
        assert info.metadata["winning_verdict"] == verdict

    trail = stubs.audit.ListEvents(
        audit_pb.ListEventsRequest(instance_id=instance.instance_id)
    ).events
    assert [e.type for e in trail].count(pb.EVENT_TYPE_ACTION_DECIDED) == 1
    assert [e.revision for e in trail] == list(range(1, len(trail) + 1))
    [record] = [
        r
        for r in stubs.audit.ListDecisionRecords(
            audit_pb.ListDecisionRecordsRequest(instance_id=instance.instance_id)
        ).records
    ]
    assert [a.approver for a in record.approvals] == [winner.decided_by]


def test_duplicate_invocations_create_one_instance(server: ServerProcess) -> None:
    message = envelope()
    results = race(server, [lambda s: s.execution.InvokeAgent(message) for _ in range(20)])  # type: ignore[attr-defined]
    assert all(isinstance(r, execution_pb.InvokeAgentResponse) for r in results), results
    assert len({r.instance.instance_id for r in results}) == 1  # type: ignore[attr-defined]


def test_duplicate_requests_create_one_action(server: ServerProcess) -> None:
    stubs = server.stubs()
    instance = stubs.execution.InvokeAgent(envelope()).instance
    message = execution_pb.RequestDecisionRequest(
        instance_id=instance.instance_id, action=refund_action()
    )
    results = race(server, [lambda s: s.execution.RequestDecision(message) for _ in range(20)])  # type: ignore[attr-defined]
    assert all(isinstance(r, execution_pb.RequestDecisionResponse) for r in results), results
    assert len({r.action_id for r in results}) == 1  # type: ignore[attr-defined]
    again = stubs.execution.GetInstance(
        execution_pb.GetInstanceRequest(instance_id=instance.instance_id)
    )
    assert again.instance.tool_calls_used == 1 and again.instance.revision == 2


def test_retries_racing_their_own_first_attempt_all_get_the_answer(server: ServerProcess) -> None:
    stubs = server.stubs()
    instance = stubs.execution.InvokeAgent(envelope()).instance
    waiting = stubs.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(
            instance_id=instance.instance_id, action=refund_action()
        )
    )
    message = approval_pb.SubmitDecisionRequest(
        action_id=waiting.action_id,
        verdict=pb.VERDICT_APPROVE,
        reason="retried",
        request_id=f"retry_{uuid.uuid4().hex}",
    )
    lead = server.as_("lead")
    results = race(server, [lambda _: lead.approval.SubmitDecision(message) for _ in range(20)])
    assert all(isinstance(r, approval_pb.SubmitDecisionResponse) for r in results), results
    assert len({r.record.record_id for r in results}) == 1  # type: ignore[attr-defined]


def test_one_request_id_on_two_actions_at_once_is_a_reused_key(server: ServerProcess) -> None:
    stubs = server.stubs()
    actions = []
    for _ in range(10):
        instance = stubs.execution.InvokeAgent(envelope()).instance
        actions.append(
            stubs.execution.RequestDecision(
                execution_pb.RequestDecisionRequest(
                    instance_id=instance.instance_id, action=refund_action()
                )
            ).action_id
        )
    key = f"shared_{uuid.uuid4().hex}"
    lead = server.as_("lead")

    def decider(action_id: str) -> Callable[[object], object]:
        message = approval_pb.SubmitDecisionRequest(
            action_id=action_id,
            verdict=pb.VERDICT_APPROVE,
            reason="same key",
            request_id=key,
        )
        return lambda _: lead.approval.SubmitDecision(message)

    results = race(server, [decider(a) for a in actions])
    assert sum(isinstance(r, approval_pb.SubmitDecisionResponse) for r in results) == 1
    for error in (r for r in results if isinstance(r, grpc.RpcError)):
        assert error.code() == grpc.StatusCode.ALREADY_EXISTS, error
        assert error_info(error).reason == "IDEMPOTENCY_KEY_REUSED"
