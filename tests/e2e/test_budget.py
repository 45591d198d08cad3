"""Cost budgets: estimates and reported costs against runtime.max_cost_cents, the budget
report on instances, events and records, and concurrent requests that try to overspend.
Against real servers on SQLite and PostgreSQL."""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from signoff.v1 import audit_service_pb2 as audit_pb
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import types_pb2 as pb
from tests.support import (
    AGENT_TOKEN,
    ServerProcess,
    Stubs,
    decide,
    envelope,
    error_info,
    field_violations,
    lookup_action,
)


def invoke(stubs: Stubs, max_cost_cents: float = 25.0, max_tool_calls: int = 0) -> str:
    runtime = {"max_tool_calls": max_tool_calls, "max_cost_cents": max_cost_cents}
    return stubs.execution.InvokeAgent(envelope(runtime=runtime)).instance.instance_id


def costing(
    tool_call_id: str, cents: float, risk: int = pb.RISK_CLASS_READ_ONLY
) -> pb.ProposedAction:
    action = lookup_action(tool_call_id)
    action.risk_class = risk  # READ_ONLY runs at once on the test policy; NETWORK waits
    action.estimated_cost_cents = cents
    return action


def ask(
    stubs: Stubs, instance_id: str, action: pb.ProposedAction
) -> execution_pb.RequestDecisionResponse:
    return stubs.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(instance_id=instance_id, action=action)
    )


def report(stubs: Stubs, answer: execution_pb.RequestDecisionResponse, **cost: float) -> pb.Action:
    return stubs.execution.ReportExecution(
        execution_pb.ReportExecutionRequest(
            action_id=answer.action.action_id,
            result=execution_pb.EXECUTION_RESULT_SUCCEEDED,
            evidence_ref=f"tool:{answer.action.tool_call_id}",
            grant_token=answer.grant_token,
            **cost,
        )
    ).action


def budget(stubs: Stubs, instance_id: str) -> pb.BudgetReport:
    request = execution_pb.GetInstanceRequest(instance_id=instance_id)
    return stubs.execution.GetInstance(request).instance.budget


def record_of(stubs: Stubs, instance_id: str, action_id: str) -> pb.DecisionRecord:
    request = audit_pb.ListDecisionRecordsRequest(instance_id=instance_id, page_size=1000)
    (record,) = [
        r for r in stubs.audit.ListDecisionRecords(request).records if r.action_id == action_id
    ]
    return record


def spent(report: pb.BudgetReport) -> tuple[float, float]:
    return report.cost_spent_cents, report.cost_reserved_cents


def test_estimates_count_until_the_actual_cost_is_reported(stubs: Stubs) -> None:
    instance_id = invoke(stubs, max_cost_cents=25)
    first = ask(stubs, instance_id, costing("tc_1", 10))
    assert first.outcome == pb.OUTCOME_APPROVED
    assert first.action.estimated_cost_cents == 10
    assert spent(budget(stubs, instance_id)) == (10, 0)

    reported = report(stubs, first, cost_cents=4)
    assert reported.cost_cents == 4
    assert spent(budget(stubs, instance_id)) == (4, 0)
    record = record_of(stubs, instance_id, first.action.action_id)
    assert (record.estimated_cost_cents, record.cost_cents) == (10, 4)
    # The record's budget is where the instance stood once the decision took effect.
    assert (record.budget.cost_spent_cents, record.budget.max_cost_cents) == (10, 25)

    # 4 + 15 fits; 19 + 7 does not; 19 + 6 is exactly the budget.
    assert ask(stubs, instance_id, costing("tc_2", 15)).outcome == pb.OUTCOME_APPROVED
    over = ask(stubs, instance_id, costing("tc_3", 7))
    assert over.outcome == pb.OUTCOME_REJECTED
    assert over.reason == (
        "BUDGET_EXHAUSTED: runtime.max_cost_cents (25) would be exceeded: "
        "spent 19, reserved 0, asked 7"
    )
    assert list(over.controls.policy.rule_ids) == ["BUDGET_EXHAUSTED"]
    refused = record_of(stubs, instance_id, over.action.action_id)
    assert (refused.status, refused.outcome) == (pb.DECISION_STATUS_ESCALATED, pb.OUTCOME_REJECTED)
    assert ask(stubs, instance_id, costing("tc_4", 6)).outcome == pb.OUTCOME_APPROVED
    final = budget(stubs, instance_id)
    # Approved actions that never report keep their estimates spent.
    assert (final.cost_spent_cents, final.cost_remaining_cents, final.tool_calls_used) == (25, 0, 4)


def test_waiting_actions_hold_their_estimate_until_decided(stubs: Stubs) -> None:
    instance_id = invoke(stubs, max_cost_cents=25)
    waiting = ask(stubs, instance_id, costing("tc_wait", 20, pb.RISK_CLASS_NETWORK))
    assert waiting.outcome == pb.OUTCOME_WAITING_FOR_HUMAN
    assert spent(budget(stubs, instance_id)) == (0, 20)
    # Approving both would overspend: the second is refused while the first waits.
    refused = ask(stubs, instance_id, costing("tc_other", 10, pb.RISK_CLASS_NETWORK))
    assert refused.outcome == pb.OUTCOME_REJECTED
    assert "reserved 20, asked 10" in refused.reason

    decide(stubs, waiting.action.action_id, "usr_reviewer", pb.VERDICT_REJECT)
    assert spent(budget(stubs, instance_id)) == (0, 0)
    second = ask(stubs, instance_id, costing("tc_second", 20, pb.RISK_CLASS_NETWORK))
    decide(stubs, second.action.action_id, "usr_reviewer")
    assert spent(budget(stubs, instance_id)) == (20, 0)


def test_a_cost_over_the_estimate_and_the_budget_is_recorded_and_stops_the_next_action(
    stubs: Stubs,
) -> None:
    instance_id = invoke(stubs, max_cost_cents=25)
    answer = ask(stubs, instance_id, costing("tc_1", 5))
    report(stubs, answer, cost_cents=30)
    events = list(
        stubs.audit.ListEvents(audit_pb.ListEventsRequest(instance_id=instance_id)).events
    )
    reported = events[-1]
    assert reported.type == pb.EVENT_TYPE_ACTION_EXECUTION_REPORTED
    assert "cost 30 cents is over the estimate of 5" in reported.reason
    assert "BUDGET_EXHAUSTED: spent 30 cents, over runtime.max_cost_cents (25)" in reported.reason
    assert reported.budget.cost_spent_cents == 30

    # Even a free action is refused now, and its event says so.
    nothing = ask(stubs, instance_id, costing("tc_2", 0))
    assert nothing.outcome == pb.OUTCOME_REJECTED
    assert nothing.reason.startswith("BUDGET_EXHAUSTED: runtime.max_cost_cents (25)")
    verified = stubs.audit.VerifyChain(audit_pb.VerifyChainRequest(instance_id=instance_id))
    assert verified.intact, verified


def test_every_event_carries_the_budget_and_the_chain_covers_it(stubs: Stubs) -> None:
    instance_id = invoke(stubs, max_cost_cents=25, max_tool_calls=8)
    report(stubs, ask(stubs, instance_id, costing("tc_1", 3)), cost_cents=2.5)
    listed = stubs.audit.ListEvents(audit_pb.ListEventsRequest(instance_id=instance_id)).events
    assert [(e.budget.tool_calls_used, e.budget.cost_spent_cents) for e in listed] == [
        (0, 0),
        (1, 3),
        (1, 2.5),
    ]
    assert all(e.budget.max_tool_calls == 8 and e.budget.max_cost_cents == 25 for e in listed)
    verified = stubs.audit.VerifyChain(audit_pb.VerifyChainRequest(instance_id=instance_id))
    assert verified.intact, verified


def test_cancelling_releases_what_was_held(stubs: Stubs) -> None:
    instance_id = invoke(stubs, max_cost_cents=25)
    ask(stubs, instance_id, costing("tc_wait", 9, pb.RISK_CLASS_NETWORK))
    ask(stubs, instance_id, costing("tc_ok", 7))  # approved, never run
    assert spent(budget(stubs, instance_id)) == (7, 9)
    stubs.execution.CancelInstance(execution_pb.CancelInstanceRequest(instance_id=instance_id))
    assert spent(budget(stubs, instance_id)) == (0, 0)


def test_the_estimate_is_part_of_the_action(stubs: Stubs) -> None:
    instance_id = invoke(stubs)
    ask(stubs, instance_id, costing("tc_1", 5))
    with pytest.raises(grpc.RpcError) as raised:
        ask(stubs, instance_id, costing("tc_1", 1))
    assert error_info(raised.value).reason == "IDEMPOTENCY_KEY_REUSED"


@pytest.mark.parametrize("cents", [float("nan"), float("inf"), -1.0, 1e13])
def test_costs_must_be_finite_bounded_cents(stubs: Stubs, cents: float) -> None:
    instance_id = invoke(stubs)
    with pytest.raises(grpc.RpcError) as raised:
        ask(stubs, instance_id, costing("tc_bad", cents))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(raised.value)) == {"action.estimated_cost_cents"}

    answer = ask(stubs, instance_id, costing("tc_ok", 1))
    with pytest.raises(grpc.RpcError) as raised:
        report(stubs, answer, cost_cents=cents)
    assert set(field_violations(raised.value)) == {"cost_cents"}
    assert spent(budget(stubs, instance_id)) == (1, 0)  # nothing was recorded

    unbounded = envelope()
    unbounded.runtime.max_cost_cents = cents
    with pytest.raises(grpc.RpcError) as raised:
        stubs.execution.InvokeAgent(unbounded)
    assert set(field_violations(raised.value)) == {"runtime.max_cost_cents"}


def test_concurrent_requests_cannot_overspend_together(stubs: Stubs) -> None:
    instance_id = invoke(stubs, max_cost_cents=25)
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(
            pool.map(lambda i: ask(stubs, instance_id, costing(f"tc_{i}", 4)), range(24))
        )
    approved = [a for a in answers if a.outcome == pb.OUTCOME_APPROVED]
    assert len(approved) == 6  # 6 * 4 = 24 fits in 25; a seventh would make 28
    assert all(a.reason.startswith("BUDGET_EXHAUSTED") for a in answers if a not in approved)
    assert spent(budget(stubs, instance_id)) == (24, 0)


def test_policy_sends_spending_of_most_of_what_is_left_to_a_human(
    example_server: ServerProcess,
) -> None:
    stubs = example_server.stubs()
    instance_id = invoke(stubs, max_cost_cents=25)
    # The example bundle: more than half of what is left waits for a human.
    assert ask(stubs, instance_id, costing("tc_small", 10)).outcome == pb.OUTCOME_APPROVED
    costly = ask(stubs, instance_id, costing("tc_costly", 8))
    assert costly.outcome == pb.OUTCOME_WAITING_FOR_HUMAN
    assert "R_COSTLY_ACTION_NEEDS_APPROVAL" in costly.controls.policy.rule_ids


def test_the_cli_lists_what_instances_spent(server: ServerProcess) -> None:
    stubs = server.stubs()
    instance_id = invoke(stubs, max_cost_cents=25, max_tool_calls=8)
    ask(stubs, instance_id, costing("tc_1", 12.5))
    ask(stubs, instance_id, costing("tc_2", 5, pb.RISK_CLASS_NETWORK))
    listing = subprocess.run(
        [str(Path(sys.executable).parent / "signoff"), "instances", "--limit", "1000"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SIGNOFF_TARGET": server.target, "SIGNOFF_TOKEN": AGENT_TOKEN},
        check=True,
    ).stdout
    (line,) = [line for line in listing.splitlines() if line.startswith(instance_id)]
    assert line.endswith("calls=2/8  cost_cents=17.5/25 (5 waiting)")
