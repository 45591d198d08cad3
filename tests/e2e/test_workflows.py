"""The three reference workflows end to end through a real server on the example bundle, on
both databases: compile (InvokeAgent) → CheckPlan → SubmitPlan (one plan approval where a
gate applies) → each step (RequestDecision, ReportExecution) → RecordCheckpoint → records.
Then what a plan approval may not do: serve another instance, outlive its expiry or its
instance, run a step twice (two racing calls), or cover a call that deviates."""

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypedDict

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import json_format, struct_pb2
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

from signoff.domain.canonical import sha256_of
from signoff.v1 import approval_service_pb2 as approval_pb
from signoff.v1 import audit_service_pb2 as audit_pb
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import policy_service_pb2 as policy_pb
from signoff.v1 import types_pb2 as pb
from signoff_client import (
    APPROVED,
    WAITING_FOR_HUMAN,
    ActionRejected,
    Backoff,
    ErrorReason,
    Signoff,
    SignoffError,
    plan_decision,
)
from signoff_client.adapters.langgraph import (
    approved_steps,
    gate_tool_call,
    pauses,
    resume_command,
    submit_plan,
)
from tests.support import (
    EXAMPLE_POLICY,
    ServerProcess,
    Stubs,
    decide,
    envelope,
    error_info,
    field_violations,
    mint,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = (("traceparent", f"00-{TRACE_ID}-00f067aa0ba902b7-01"),)
SNAPSHOT = "kg:order:ord_881#snapshot_kg_2026_05_03_T0930"
REFUND_PARAMS = {"order_id": "ord_881", "amount": 4200, "currency": "INR"}

REFUND_PLAN: dict[str, Any] = {
    "plan_id": "plan_refund_01",
    "intent": "support.refund",
    "steps": [
        {"id": "s1", "tool": "adp_orders.lookup", "params": {"order_id": "ord_881"}},
        {"id": "s2", "tool": "adp_policy.eval", "depends_on": ["s1"]},
        {
            "id": "s3",
            "tool": "adp_payments.issue_refund",
            "depends_on": ["s2"],
            "params": REFUND_PARAMS,
            "approval_mode": "RISK_CLASS_DESTRUCTIVE",
            "requires": ["GATE_FINANCE_APPROVAL"],
        },
    ],
    "decision_checkpoints": [
        {"decision_id": "support.refund.eligibility", "after_step": "s2"},
        {"decision_id": "support.refund.execute", "after_step": "s2"},
    ],
}

MODERATION_PLAN: dict[str, Any] = {
    "plan_id": "plan_review_01",
    "intent": "content.review",
    "steps": [
        {"id": "s1", "tool": "adp_content.classify", "params": {"post_id": "pst_5512"}},
        {"id": "s2", "tool": "adp_policy.eval", "depends_on": ["s1"]},
        {
            "id": "s3",
            "tool": "adp_queue.append",
            "depends_on": ["s2"],
            "params": {"post_id": "pst_5512"},
            "approval_mode": "RISK_CLASS_LOCAL_WRITE",
            "execute_when": {"<": [{"var": "outputs.s1.confidence"}, 0.7]},
        },
        {
            "id": "s4",
            "tool": "adp_content.publish_block",
            "depends_on": ["s2"],
            "params": {"post_id": "pst_5512"},
            "approval_mode": "RISK_CLASS_DELEGATED",
            "requires": ["GATE_PUBLISH_BLOCK"],
            "execute_when": {">=": [{"var": "outputs.s1.confidence"}, 0.7]},
        },
    ],
    "decision_checkpoints": [
        {"decision_id": "content.review.classify", "after_step": "s2"},
        {"decision_id": "content.review.action", "after_step": "s4"},
    ],
}

LOOKUP_PLAN: dict[str, Any] = {
    "plan_id": "plan_lookup_01",
    "intent": "data.lookup",
    "steps": [
        {"id": "s1", "tool": "adp_kg.query", "params": {"query": "top customers by LTV, APAC"}},
        {"id": "s2", "tool": "adp_bi.snapshot", "depends_on": ["s1"]},
    ],
    "decision_checkpoints": [{"decision_id": "data.lookup.result", "after_step": "s2"}],
}


@pytest.fixture
def stubs(example_server: ServerProcess) -> Stubs:
    return example_server.stubs()


# -- the agent's calls ----------------------------------------------------------------------


def moderation_envelope() -> execution_pb.InvokeAgentRequest:
    return envelope(
        user={"user_id": "usr_mod_404", "delegation": {"scopes": ["content.review"]}},
        agent={
            "agent_id": "agt_moderation",
            "workload_identity": "spiffe://contextos/agents/moderation",
        },
        context_pack_refs=["ctxpack.moderation@2.0.0"],
        input={"intent": "content.review", "message": "Review post pst_5512"},
        mode="MODE_BATCH",
        runtime={"max_tool_calls": 8},
    )


def lookup_envelope() -> execution_pb.InvokeAgentRequest:
    return envelope(
        user={"user_id": "usr_analyst_22", "delegation": {"scopes": ["bi.read"]}},
        agent={"agent_id": "agt_analyst"},
        context_pack_refs=["ctxpack.bi_lookup@1.4.0"],
        input={
            "intent": "data.lookup",
            "message": "Top 10 customers by LTV in APAC, last 30 days.",
        },
        mode="MODE_BATCH",
        runtime={"max_tool_calls": 8},
    )


def invoke(stubs: Stubs, request: execution_pb.InvokeAgentRequest | None = None) -> pb.Instance:
    return stubs.execution.InvokeAgent(request or envelope(), metadata=TRACEPARENT).instance


def as_plan(body: dict[str, Any]) -> execution_pb.Plan:
    return json_format.ParseDict(body, execution_pb.Plan())


def check(stubs: Stubs, instance_id: str, plan: dict[str, Any]) -> execution_pb.CheckPlanResponse:
    return stubs.execution.CheckPlan(
        execution_pb.CheckPlanRequest(instance_id=instance_id, plan=as_plan(plan))
    )


def submit(stubs: Stubs, instance_id: str, plan: dict[str, Any]) -> execution_pb.SubmitPlanResponse:
    return stubs.execution.SubmitPlan(
        execution_pb.SubmitPlanRequest(instance_id=instance_id, plan=as_plan(plan))
    )


def proposed(
    tool_call_id: str,
    tool: str,
    risk: int,
    params: dict[str, Any] | None = None,
    evidence_refs: list[str] | None = None,
) -> pb.ProposedAction:
    action = pb.ProposedAction(
        tool_call_id=tool_call_id, tool=tool, risk_class=risk, evidence_refs=evidence_refs or []
    )
    action.params.update(params or {})
    return action


def ask(
    stubs: Stubs, instance_id: str, action: pb.ProposedAction
) -> execution_pb.RequestDecisionResponse:
    return stubs.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(instance_id=instance_id, action=action)
    )


def run(
    stubs: Stubs,
    answer: execution_pb.RequestDecisionResponse,
    evidence_ref: str,
    outputs: dict[str, Any],
) -> pb.Action:
    """Executes an approved action with its grant and reports what it produced."""
    assert answer.outcome == pb.OUTCOME_APPROVED, answer.reason
    request = execution_pb.ReportExecutionRequest(
        action_id=answer.action_id,
        result=execution_pb.EXECUTION_RESULT_SUCCEEDED,
        evidence_ref=evidence_ref,
        grant_token=answer.grant_token,
    )
    request.outputs.update(outputs)
    return stubs.execution.ReportExecution(request).action


def checkpoint(
    stubs: Stubs,
    instance_id: str,
    decision_id: str,
    outcome: str,
    evidence_refs: list[str],
    outputs: dict[str, Any],
) -> pb.DecisionRecord:
    request = execution_pb.RecordCheckpointRequest(
        instance_id=instance_id,
        decision_id=decision_id,
        outcome=outcome,
        evidence_refs=evidence_refs,
    )
    request.outputs.update(outputs)
    return stubs.execution.RecordCheckpoint(request).record


def records(stubs: Stubs, instance_id: str) -> list[pb.DecisionRecord]:
    """The instance's records in chain order (ListDecisionRecords lists newest first)."""
    found = stubs.as_("auditor", "admin").audit.ListDecisionRecords(
        audit_pb.ListDecisionRecordsRequest(instance_id=instance_id)
    )
    return sorted(found.records, key=lambda r: r.revision)


def trail(stubs: Stubs, instance_id: str) -> list[pb.Event]:
    return list(
        stubs.as_("auditor", "admin")
        .audit.ListEvents(audit_pb.ListEventsRequest(instance_id=instance_id, page_size=100))
        .events
    )


def intact(stubs: Stubs, instance_id: str) -> bool:
    report = stubs.as_("auditor", "admin").audit.VerifyChain(
        audit_pb.VerifyChainRequest(instance_id=instance_id)
    )
    assert report.intact, report.problem
    return True


def as_json(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def approved_plan(stubs: Stubs, plan: dict[str, Any] = REFUND_PLAN) -> tuple[str, str]:
    """A new refund instance whose plan approval user_finance_lead_77 approved:
    (instance id, plan approval action id)."""
    instance_id = invoke(stubs).instance_id
    submitted = submit(stubs, instance_id, plan)
    decide(stubs, submitted.approval.action_id, "user_finance_lead_77")
    return instance_id, submitted.approval.action_id


def refund(tool_call_id: str = "tc_121", params: dict[str, Any] | None = None) -> pb.ProposedAction:
    return proposed(
        tool_call_id,
        "adp_payments.issue_refund",
        pb.RISK_CLASS_DESTRUCTIVE,
        REFUND_PARAMS if params is None else params,
        [SNAPSHOT, "tool:adp_orders.lookup:tc_117", "tool:adp_policy.eval:tc_119"],
    )


# -- 1. customer support refund ---------------------------------------------------------------


def test_the_refund_workflow_end_to_end(stubs: Stubs) -> None:
    # compile
    instance = invoke(stubs)
    instance_id = instance.instance_id
    controls = instance.compiled_context.runtime_controls
    assert list(controls.approval_gates_active) == ["GATE_FINANCE_APPROVAL"]

    # critic, then the plan approval: s3 alone is gated
    verdict = check(stubs, instance_id, REFUND_PLAN)
    assert verdict.accepted, verdict.findings
    submitted = submit(stubs, instance_id, REFUND_PLAN)
    assert submitted.plan_sha256 == verdict.plan_sha256
    assert [(s.step_id, s.effect, list(s.gate_ids)) for s in submitted.steps] == [
        ("s1", "ALLOW", []),
        ("s2", "ALLOW", []),
        ("s3", "REQUIRE_APPROVAL", ["GATE_FINANCE_APPROVAL"]),
    ]
    approval = submitted.approval
    assert approval.state == pb.ACTION_STATE_WAITING_FOR_HUMAN
    assert approval.tool == "signoff.plan"
    assert as_json(approval.params) == {
        "s3": {"tool": "adp_payments.issue_refund", "params": REFUND_PARAMS}
    }
    assert [g.gate_id for g in approval.gates] == ["GATE_FINANCE_APPROVAL"]
    # The approver sees it where every approval waits.
    pending = stubs.as_("user_finance_lead_77").approval.ListPendingApprovals(
        approval_pb.ListPendingApprovalsRequest()
    )
    assert approval.action_id in [a.action_id for a in pending.actions]
    voted = decide(
        stubs,
        approval.action_id,
        "user_finance_lead_77",
        evidence_snapshot_hash=approval.action_sha256,
    )
    assert voted.action.state == pb.ACTION_STATE_APPROVED

    # execute
    lookup = ask(
        stubs,
        instance_id,
        proposed("tc_117", "adp_orders.lookup", pb.RISK_CLASS_READ_ONLY, {"order_id": "ord_881"}),
    )
    run(stubs, lookup, "tool:adp_orders.lookup:tc_117", {"order_status": "delivered"})
    evaluation = ask(
        stubs, instance_id, proposed("tc_119", "adp_policy.eval", pb.RISK_CLASS_READ_ONLY)
    )
    run(stubs, evaluation, "tool:adp_policy.eval:tc_119", {"eligible": True})
    checkpoint(
        stubs,
        instance_id,
        "support.refund.eligibility",
        "eligible",
        ["tool:adp_policy.eval:tc_119"],
        {"eligible": True},
    )
    checkpoint(
        stubs,
        instance_id,
        "support.refund.execute",
        "verified",
        [SNAPSHOT, "tool:adp_orders.lookup:tc_117", "tool:adp_policy.eval:tc_119"],
        {"refund_amount_inr": 4200},
    )
    refunded = ask(stubs, instance_id, refund())
    assert refunded.outcome == pb.OUTCOME_APPROVED, refunded.reason
    assert approval.action_id in refunded.reason
    run(
        stubs,
        refunded,
        "tool:adp_payments.issue_refund:tc_121",
        {"refund_amount_inr": 4200, "currency": "INR", "transaction_id": "txn_q9"},
    )
    stubs.execution.CompleteInstance(execution_pb.CompleteInstanceRequest(instance_id=instance_id))

    # records: as the reference lists them
    found = records(stubs, instance_id)
    print("\nThe refund workflow's record trail (chain order):")
    for record in found:
        print(json.dumps(as_json(record), indent=2, sort_keys=True))
    assert [(r.decision_key, r.tool, r.status) for r in found] == [
        ("signoff.plan.plan_refund_01", "signoff.plan", pb.DECISION_STATUS_DECIDED),
        (found[1].decision_key, "adp_orders.lookup", pb.DECISION_STATUS_DECIDED),
        (found[2].decision_key, "adp_policy.eval", pb.DECISION_STATUS_DECIDED),
        ("support.refund.eligibility", "", pb.DECISION_STATUS_DECIDED),
        ("support.refund.execute", "", pb.DECISION_STATUS_DECIDED),
        ("support.refund.execute", "adp_payments.issue_refund", pb.DECISION_STATUS_DECIDED),
    ]
    assert as_json(found[0].plan_approval) == {  # the approval's own record: no step
        "action_id": approval.action_id,
        "plan_id": "plan_refund_01",
        "plan_sha256": submitted.plan_sha256,
        "approvers": ["user_finance_lead_77"],
    }
    final = found[-1]
    assert final.outcome == pb.OUTCOME_APPROVED
    assert final.execution_state == pb.ACTION_STATE_EXECUTED
    assert as_json(final.outputs) == {
        "refund_amount_inr": 4200,
        "currency": "INR",
        "transaction_id": "txn_q9",
    }
    assert list(final.evidence_refs) == [
        SNAPSHOT,
        "tool:adp_orders.lookup:tc_117",
        "tool:adp_policy.eval:tc_119",
        "tool:adp_payments.issue_refund:tc_121",
    ]
    assert [
        (a.gate_id, a.approver, a.approval_mode_effective, a.evidence_snapshot_hash)
        for a in final.approvals
    ] == [("GATE_FINANCE_APPROVAL", "user_finance_lead_77", "destructive", approval.action_sha256)]
    assert list(final.controls_active.approval_gates_active) == ["GATE_FINANCE_APPROVAL"]
    assert list(final.controls_active.must_refuse) == []
    assert final.trace_id == TRACE_ID
    assert as_json(final.plan_approval) == {
        "action_id": approval.action_id,
        "plan_id": "plan_refund_01",
        "plan_sha256": submitted.plan_sha256,
        "step_id": "s3",
        "approvers": ["user_finance_lead_77"],
    }
    assert {r.compiled_context_sha256 for r in found} == {instance.compiled_context.sha256}
    events = [
        pb.EventType.Name(e.type).removeprefix("EVENT_TYPE_") for e in trail(stubs, instance_id)
    ]
    assert events[:4] == ["INSTANCE_CREATED", "PLAN_CHECKED", "PLAN_SUBMITTED", "ACTION_REQUESTED"]
    assert events[-1] == "INSTANCE_COMPLETED"
    assert intact(stubs, instance_id)


# -- 2. content moderation review ---------------------------------------------------------------


def test_the_moderation_workflow_end_to_end(stubs: Stubs) -> None:
    instance_id = invoke(stubs, moderation_envelope()).instance_id
    assert check(stubs, instance_id, MODERATION_PLAN).accepted
    submitted = submit(stubs, instance_id, MODERATION_PLAN)
    assert [(s.step_id, s.effect) for s in submitted.steps] == [
        ("s1", "ALLOW"),
        ("s2", "ALLOW"),
        ("s3", "ALLOW"),
        ("s4", "REQUIRE_APPROVAL"),
    ]
    approval = submitted.approval
    assert [g.gate_id for g in approval.gates] == ["GATE_PUBLISH_BLOCK"]
    decide(stubs, approval.action_id, "user_mod_lead_12")

    # s4 asked before s1 reported its confidence: the condition fails closed.
    block = proposed(
        "tc_early", "adp_content.publish_block", pb.RISK_CLASS_DELEGATED, {"post_id": "pst_5512"}
    )
    early = ask(stubs, instance_id, block)
    assert early.outcome == pb.OUTCOME_REJECTED
    assert "CONDITION_NOT_MET" in early.reason
    assert "not reported: outputs.s1.confidence" in early.reason
    assert list(early.controls.policy.rule_ids) == ["CONDITION_NOT_MET"]

    classify = ask(
        stubs,
        instance_id,
        proposed("tc_c1", "adp_content.classify", pb.RISK_CLASS_READ_ONLY, {"post_id": "pst_5512"}),
    )
    run(stubs, classify, "tool:adp_content.classify:tc_c1", {"confidence": 0.93, "label": "abuse"})
    evaluation = ask(
        stubs, instance_id, proposed("tc_c2", "adp_policy.eval", pb.RISK_CLASS_READ_ONLY)
    )
    run(stubs, evaluation, "tool:adp_policy.eval:tc_c2", {"severity": "severe"})
    checkpoint(
        stubs,
        instance_id,
        "content.review.classify",
        "violation",
        ["tool:adp_content.classify:tc_c1"],
        {"confidence": 0.93},
    )

    # confidence 0.93: the queue step's condition is false, the block's true.
    queue = ask(
        stubs,
        instance_id,
        proposed("tc_c3", "adp_queue.append", pb.RISK_CLASS_LOCAL_WRITE, {"post_id": "pst_5512"}),
    )
    assert queue.outcome == pb.OUTCOME_REJECTED
    assert "CONDITION_NOT_MET: step s3 of plan plan_review_01" in queue.reason
    assert "outputs.s1.confidence=0.93" in queue.reason
    block.tool_call_id = "tc_c4"
    blocked = ask(stubs, instance_id, block)
    assert blocked.outcome == pb.OUTCOME_APPROVED, blocked.reason
    run(
        stubs,
        blocked,
        "tool:adp_content.publish_block:tc_c4",
        {"action": "publish_blocked", "reason_code": "policy_violation_severe"},
    )
    checkpoint(
        stubs,
        instance_id,
        "content.review.action",
        "publish_blocked",
        ["tool:adp_content.publish_block:tc_c4"],
        {"action": "publish_blocked", "reason_code": "policy_violation_severe"},
    )

    found = records(stubs, instance_id)
    by_tool = {r.tool: r for r in found if r.tool}
    refused = by_tool["adp_queue.append"]
    assert refused.outcome == pb.OUTCOME_REJECTED
    assert refused.status == pb.DECISION_STATUS_DECIDED
    assert list(refused.controls_active.policy.rule_ids) == ["CONDITION_NOT_MET"]
    final = by_tool["adp_content.publish_block"]
    assert final.decision_key == "content.review.action"
    assert as_json(final.outputs) == {
        "action": "publish_blocked",
        "reason_code": "policy_violation_severe",
    }
    assert [(a.gate_id, a.approver, a.approval_mode_effective) for a in final.approvals] == [
        ("GATE_PUBLISH_BLOCK", "user_mod_lead_12", "delegated")
    ]
    assert final.plan_approval.step_id == "s4"
    assert found[-1].decision_key == "content.review.action"
    assert found[-1].checkpoint_outcome == "publish_blocked"
    assert intact(stubs, instance_id)


def test_a_low_confidence_review_goes_to_the_queue_and_blocks_nothing(stubs: Stubs) -> None:
    instance_id = invoke(stubs, moderation_envelope()).instance_id
    approval = submit(stubs, instance_id, MODERATION_PLAN).approval
    decide(stubs, approval.action_id, "user_mod_lead_12")
    classify = ask(
        stubs,
        instance_id,
        proposed("tc_c1", "adp_content.classify", pb.RISK_CLASS_READ_ONLY, {"post_id": "pst_5512"}),
    )
    run(stubs, classify, "tool:adp_content.classify:tc_c1", {"confidence": 0.42})
    queued = ask(
        stubs,
        instance_id,
        proposed("tc_c3", "adp_queue.append", pb.RISK_CLASS_LOCAL_WRITE, {"post_id": "pst_5512"}),
    )
    assert queued.outcome == pb.OUTCOME_APPROVED, queued.reason
    blocked = ask(
        stubs,
        instance_id,
        proposed(
            "tc_c4", "adp_content.publish_block", pb.RISK_CLASS_DELEGATED, {"post_id": "pst_5512"}
        ),
    )
    assert blocked.outcome == pb.OUTCOME_REJECTED
    assert "outputs.s1.confidence=0.42" in blocked.reason


# -- 3. internal data lookup ------------------------------------------------------------------


def test_the_data_lookup_workflow_end_to_end(stubs: Stubs) -> None:
    instance = invoke(stubs, lookup_envelope())
    instance_id = instance.instance_id
    assert list(instance.compiled_context.runtime_controls.redaction_rules_active) == ["pii_email"]
    assert check(stubs, instance_id, LOOKUP_PLAN).accepted
    submitted = submit(stubs, instance_id, LOOKUP_PLAN)
    assert not submitted.HasField("approval")  # nothing gated: the answer is at once
    assert [s.effect for s in submitted.steps] == ["ALLOW", "ALLOW"]
    query = ask(
        stubs,
        instance_id,
        proposed(
            "tc_q1",
            "adp_kg.query",
            pb.RISK_CLASS_READ_ONLY,
            {"query": "top customers by LTV, APAC"},
        ),
    )
    run(stubs, query, "tool:adp_kg.query:tc_q1", {"rows": 10, "owner": "ana@example.com"})
    snapshot = ask(
        stubs, instance_id, proposed("tc_q2", "adp_bi.snapshot", pb.RISK_CLASS_READ_ONLY)
    )
    run(stubs, snapshot, "tool:adp_bi.snapshot:tc_q2", {"snapshot_id": "snap_7"})
    result = checkpoint(
        stubs,
        instance_id,
        "data.lookup.result",
        "answered",
        ["tool:adp_kg.query:tc_q1", "tool:adp_bi.snapshot:tc_q2"],
        {"rows": 10},
    )
    assert result.status == pb.DECISION_STATUS_DECIDED
    found = records(stubs, instance_id)
    assert [r.decision_key for r in found] == ["data.lookup.result"] * 3
    for record in found[:2]:
        assert list(record.approvals) == []
        assert list(record.controls_active.redaction_rules_active) == ["pii_email"]
        assert not record.HasField("plan_approval")
    assert "ana@example.com" not in json.dumps(as_json(found[0].outputs))
    assert intact(stubs, instance_id)


# -- what a plan approval may not do ------------------------------------------------------------


def test_another_instance_cannot_use_a_plan_approval(stubs: Stubs) -> None:
    approved_plan(stubs)
    other = invoke(stubs).instance_id  # the same plan, not submitted here
    answer = ask(stubs, other, refund())
    assert answer.outcome == pb.OUTCOME_WAITING_FOR_HUMAN
    assert list(answer.gate_ids) == ["GATE_FINANCE_APPROVAL"]


def test_a_step_runs_once_even_when_two_calls_race(stubs: Stubs) -> None:
    instance_id, approval_id = approved_plan(stubs)
    answers: list[execution_pb.RequestDecisionResponse] = []
    start = threading.Barrier(2)

    def call(tool_call_id: str) -> None:
        start.wait()
        answers.append(ask(stubs, instance_id, refund(tool_call_id)))

    threads = [threading.Thread(target=call, args=(f"tc_race_{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outcomes = sorted(pb.Outcome.Name(a.outcome) for a in answers)
    assert outcomes == ["OUTCOME_APPROVED", "OUTCOME_WAITING_FOR_HUMAN"], outcomes
    winner = next(a for a in answers if a.outcome == pb.OUTCOME_APPROVED)
    assert approval_id in winner.reason
    # A third run of the step is a call of its own too.
    assert ask(stubs, instance_id, refund("tc_third")).outcome == pb.OUTCOME_WAITING_FOR_HUMAN


def test_a_deviating_call_gets_a_decision_of_its_own(stubs: Stubs) -> None:
    instance_id, approval_id = approved_plan(stubs)
    other = ask(stubs, instance_id, refund("tc_more", {**REFUND_PARAMS, "amount": 4300}))
    assert other.outcome == pb.OUTCOME_WAITING_FOR_HUMAN
    assert approval_id not in other.reason
    # The step itself is still there to run, once.
    step = ask(stubs, instance_id, refund("tc_step"))
    assert step.outcome == pb.OUTCOME_APPROVED


def test_cancelling_the_instance_revokes_the_plan_approval(stubs: Stubs) -> None:
    instance_id, approval_id = approved_plan(stubs)
    stubs.execution.CancelInstance(execution_pb.CancelInstanceRequest(instance_id=instance_id))
    answer = ask(stubs, instance_id, refund())
    assert answer.outcome == pb.OUTCOME_TERMINATED
    assert not answer.grant_token
    cancelled = [r for r in records(stubs, instance_id) if r.action_id == approval_id]
    assert cancelled[0].execution_state == pb.ACTION_STATE_CANCELLED


def test_a_rejected_plan_approval_covers_nothing(stubs: Stubs) -> None:
    instance_id = invoke(stubs).instance_id
    approval = submit(stubs, instance_id, REFUND_PLAN).approval
    decide(stubs, approval.action_id, "user_finance_lead_77", pb.VERDICT_REJECT)
    answer = ask(stubs, instance_id, refund())
    assert answer.outcome == pb.OUTCOME_WAITING_FOR_HUMAN


def test_an_approver_narrows_a_step(stubs: Stubs) -> None:
    instance_id = invoke(stubs).instance_id
    approval = submit(stubs, instance_id, REFUND_PLAN).approval
    narrowed = struct_pb2.Struct()
    narrowed.update(
        {"s3": {"tool": "adp_payments.issue_refund", "params": {**REFUND_PARAMS, "amount": 3000}}}
    )
    voted = decide(stubs, approval.action_id, "user_finance_lead_77", edited_params=narrowed)
    assert voted.action.state == pb.ACTION_STATE_APPROVED
    assert as_json(voted.action.params)["s3"]["params"]["amount"] == 3000
    assert as_json(voted.record.approvals[0].params_diff)["s3"]["to"]["params"]["amount"] == 3000
    # The agent learns the approved params by submitting the same plan again.
    again = submit(stubs, instance_id, REFUND_PLAN)
    assert as_json(again.approval.params) == as_json(voted.action.params)
    # The params as proposed no longer match; the narrowed ones do.
    assert ask(stubs, instance_id, refund("tc_4200")).outcome == pb.OUTCOME_WAITING_FOR_HUMAN
    narrowed_call = ask(stubs, instance_id, refund("tc_3000", {**REFUND_PARAMS, "amount": 3000}))
    assert narrowed_call.outcome == pb.OUTCOME_APPROVED, narrowed_call.reason

    # An edit may not add a step, change a tool, or break the tool's schema.
    instance_id = invoke(stubs).instance_id
    approval = submit(stubs, instance_id, REFUND_PLAN).approval
    for bad, field in [
        ({"s9": {"tool": "adp_payments.issue_refund", "params": {}}}, "edited_params"),
        ({"s3": {"tool": "adp_orders.lookup", "params": {}}}, "edited_params.s3.tool"),
        (
            {"s3": {"tool": "adp_payments.issue_refund", "params": {"amount": "lots"}}},
            "edited_params.s3.params/amount",
        ),
    ]:
        edit = struct_pb2.Struct()
        edit.update(bad)
        with pytest.raises(grpc.RpcError) as caught:
            decide(stubs, approval.action_id, "user_finance_lead_77", edited_params=edit)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
        assert field in field_violations(caught.value), field_violations(caught.value)


def test_the_agent_may_not_request_a_plan_approval_itself(stubs: Stubs) -> None:
    instance_id = invoke(stubs).instance_id
    with pytest.raises(grpc.RpcError) as caught:
        ask(stubs, instance_id, proposed("tc_x", "signoff.plan", pb.RISK_CLASS_DESTRUCTIVE))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "action.tool" in field_violations(caught.value)


# -- SubmitPlan's answers to bad and repeated plans -------------------------------------------


def test_bad_plans_are_invalid_arguments_and_rejected_plans_name_their_findings(
    stubs: Stubs,
) -> None:
    instance_id = invoke(stubs).instance_id
    malformed = {
        "plan_id": "",
        "intent": "support.refund",
        "steps": [
            {"id": "s1", "tool": "adp_orders.lookup"},
            {"id": "s1"},
            {"id": "s3", "tool": "signoff.plan"},
        ],
    }
    with pytest.raises(grpc.RpcError) as caught:
        submit(stubs, instance_id, malformed)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {"plan.plan_id", "plan.steps[1].tool", "plan.steps[1].id", "plan.steps[2].tool"} <= set(
        field_violations(caught.value)
    )
    too_many = {
        "plan_id": "p",
        "intent": "support.refund",
        "steps": [{"id": f"s{i}", "tool": "adp_orders.lookup"} for i in range(101)],
    }
    with pytest.raises(grpc.RpcError) as caught:
        submit(stubs, instance_id, too_many)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "plan.steps" in field_violations(caught.value)

    rejected = {
        "plan_id": "plan_bad",
        "intent": "support.refund",
        "steps": [
            {"id": "s1", "tool": "adp_infra.delete_all"},
            {
                "id": "s2",
                "tool": "adp_orders.lookup",
                "params": {"order_id": "o"},
                "depends_on": ["s9"],
            },
        ],
    }
    with pytest.raises(grpc.RpcError) as caught:
        submit(stubs, instance_id, rejected)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(caught.value)
    assert info.reason == "PLAN_REJECTED"
    assert info.metadata["reasons"] == "TOOL_NOT_IN_MANIFEST,UNKNOWN_DEPENDENCY"
    assert {(f["step_id"], f["reason"]) for f in json.loads(info.metadata["findings"])} == {
        ("s1", "TOOL_NOT_IN_MANIFEST"),
        ("s2", "UNKNOWN_DEPENDENCY"),
    }
    # Nothing was written for either.
    assert [pb.EventType.Name(e.type) for e in trail(stubs, instance_id)] == [
        "EVENT_TYPE_INSTANCE_CREATED"
    ]


def test_a_repeat_answers_how_the_plan_stands_and_another_plan_under_its_id_is_refused(
    stubs: Stubs,
) -> None:
    instance_id = invoke(stubs).instance_id
    first = submit(stubs, instance_id, REFUND_PLAN)
    again = submit(stubs, instance_id, REFUND_PLAN)
    assert again.approval.action_id == first.approval.action_id
    assert again.revision == first.revision
    changed = {**REFUND_PLAN, "decision_checkpoints": []}
    with pytest.raises(grpc.RpcError) as caught:
        submit(stubs, instance_id, changed)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(caught.value).reason == "IDEMPOTENCY_KEY_REUSED"


# -- expiry: a server whose approvals are usable for a second -----------------------------------


@pytest.fixture
def brief_server(
    database_kind: str,
    make_database: Callable[[str], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    process = ServerProcess(
        make_database(database_kind),
        tmp_path_factory.mktemp("logs"),
        "--grant-ttl",
        "1",
        policy=EXAMPLE_POLICY,
    )
    with process:
        yield process


def test_an_expired_plan_approval_covers_nothing(brief_server: ServerProcess) -> None:
    stubs = brief_server.stubs()
    instance_id, _ = approved_plan(stubs)
    time.sleep(1.5)
    answer = ask(stubs, instance_id, refund())
    assert answer.outcome == pb.OUTCOME_WAITING_FOR_HUMAN


# -- the SDK and the LangGraph adapter ------------------------------------------------------


def sdk_plan() -> dict[str, Any]:
    """The refund plan as the reference writes it (approval_mode "destructive")."""
    steps = [dict(s) for s in REFUND_PLAN["steps"]]
    steps[2]["approval_mode"] = "destructive"
    return {**REFUND_PLAN, "steps": steps}


def test_the_sdk_submits_a_plan_and_waits_for_its_approval(
    example_server: ServerProcess,
) -> None:
    stubs = example_server.stubs()
    with Signoff.connect(example_server.target, backoff=Backoff(0.05, 0.5)) as client:
        instance_id = client.invoke_agent(as_json(envelope())).instance_id
        first = client.submit_plan(instance_id, sdk_plan(), wait=False)
        pending = plan_decision(instance_id, first)
        assert pending is not None and pending.outcome == WAITING_FOR_HUMAN
        assert pending.gate_ids == ("GATE_FINANCE_APPROVAL",)

        answers: list[execution_pb.SubmitPlanResponse] = []
        waiter = threading.Thread(
            target=lambda: answers.append(client.submit_plan(instance_id, sdk_plan(), timeout=60))
        )
        waiter.start()
        time.sleep(0.3)
        assert not answers  # it waits for the humans, on WatchInstance
        decide(stubs, first.approval.action_id, "user_finance_lead_77")
        waiter.join(60)
        decided = plan_decision(instance_id, answers[0])
        assert decided is not None and decided.outcome == APPROVED
        assert decided.params == {
            "s3": {"tool": "adp_payments.issue_refund", "params": REFUND_PARAMS}
        }
        refunded = client.request_decision(
            instance_id,
            tool_call_id="tc_121",
            tool="adp_payments.issue_refund",
            params=REFUND_PARAMS,
            risk_class="DESTRUCTIVE",
        )
        assert refunded.outcome == APPROVED and refunded.grant_token

        # A rejected plan approval raises, as a rejected action does.
        rejected_on = client.invoke_agent(as_json(envelope())).instance_id
        answer = client.submit_plan(rejected_on, sdk_plan(), wait=False)
        decide(stubs, answer.approval.action_id, "user_finance_lead_77", pb.VERDICT_REJECT)
        with pytest.raises(ActionRejected):
            client.submit_plan(rejected_on, sdk_plan(), timeout=30)
        # The critic's findings come back as PLAN_REJECTED.
        with pytest.raises(SignoffError) as caught:
            client.submit_plan(rejected_on, {**sdk_plan(), "plan_id": "p2", "intent": "x.y"})
        assert caught.value.reason == ErrorReason.PLAN_REJECTED


class PlanState(TypedDict, total=False):
    instance_id: str
    steps: dict[str, Any]
    outcome: str


def test_langgraph_submits_the_plan_once_and_runs_the_gated_step_without_a_second_pause(
    example_server: ServerProcess,
) -> None:
    stubs = example_server.stubs()
    executed: list[dict[str, Any]] = []
    with Signoff.connect(example_server.target, backoff=Backoff(0.05, 0.5)) as client:

        def plan(state: PlanState) -> PlanState:
            answer = submit_plan(client, state["instance_id"], sdk_plan())
            return {"steps": approved_steps(answer)}

        def refund(state: PlanState, config: RunnableConfig) -> PlanState:
            step = state["steps"]["s3"]
            decision = gate_tool_call(
                client,
                state["instance_id"],
                {"id": "call_refund", "name": "issue_refund", "args": step["params"]},
                tool=step["tool"],
                risk_class="DESTRUCTIVE",
                config=config,
            )
            assert decision.params is not None
            executed.append(decision.params)
            client.report_execution(
                decision.action_id, True, "tool:refund", grant_token=decision.grant_token
            )
            return {"outcome": "executed"}

        builder = StateGraph(PlanState)
        builder.add_node("plan", plan)
        builder.add_node("refund", refund)
        builder.add_edge(START, "plan")
        builder.add_edge("plan", "refund")
        builder.add_edge("refund", END)
        graph = builder.compile(checkpointer=InMemorySaver())
        config: RunnableConfig = {"configurable": {"thread_id": "thread_plan"}}
        instance_id = client.invoke_agent(as_json(envelope())).instance_id

        result = graph.invoke({"instance_id": instance_id}, config)
        assert "__interrupt__" in result and not executed
        [paused] = pauses(graph.get_state(config).interrupts)
        decide(stubs, paused.action_id, "user_finance_lead_77")
        command = resume_command(client, graph.get_state(config).interrupts, timeout=60)
        assert command is not None
        result = graph.invoke(command, config)
        assert result["outcome"] == "executed"
        assert executed == [REFUND_PARAMS]
        assert graph.get_state(config).interrupts == ()
        final = records(stubs, instance_id)[-1]
        assert final.plan_approval.action_id == paused.action_id


def test_an_approver_narrows_a_step_from_the_cli(example_server: ServerProcess) -> None:
    stubs = example_server.stubs()
    instance_id = invoke(stubs).instance_id
    approval = submit(stubs, instance_id, REFUND_PLAN).approval

    def signoff(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(Path(sys.executable).parent / "signoff"), *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={
                **os.environ,
                "SIGNOFF_TARGET": example_server.target,
                "SIGNOFF_TOKEN": mint("user_finance_lead_77", "human", "*"),
            },
        )

    pending = signoff("pending", "--tenant", "tenant_acme_prod")
    assert pending.returncode == 0, pending.stderr
    assert approval.action_id in pending.stdout and "signoff.plan" in pending.stdout
    done = signoff(
        "approve",
        approval.action_id,
        "--reason",
        "3000 only",
        "--set",
        "s3.params.amount=3000",
        "--yes",
    )
    assert done.returncode == 0, done.stderr
    assert (
        f"{approval.action_id} APPROVED by user_finance_lead_77 with edited params" in done.stdout
    )
    narrowed = ask(stubs, instance_id, refund("tc_cli", {**REFUND_PARAMS, "amount": 3000}))
    assert narrowed.outcome == pb.OUTCOME_APPROVED, narrowed.reason


def test_a_step_changed_in_the_database_is_not_approved(example_server: ServerProcess) -> None:
    stubs = example_server.stubs()
    instance_id, _ = approved_plan(stubs)
    bigger = {**REFUND_PARAMS, "amount": 99999}
    engine = sa.create_engine(example_server.database_url)  # behind the server's back
    with engine.begin() as connection:
        (plan,) = connection.execute(
            sa.text("SELECT plan FROM plans WHERE instance_id = :i"), {"i": instance_id}
        ).one()
        plan = json.loads(plan) if isinstance(plan, str) else plan
        plan["steps"][2]["params_sha256"] = sha256_of(bigger)
        connection.execute(
            sa.text("UPDATE plans SET plan = :p WHERE instance_id = :i"),
            {"p": json.dumps(plan), "i": instance_id},
        )
    engine.dispose()
    with pytest.raises(grpc.RpcError) as caught:
        ask(stubs, instance_id, refund("tc_big", bigger))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(caught.value).reason == "STATE_TAMPERED"


def test_the_plan_approval_is_in_the_approvers_feed(stubs: Stubs) -> None:
    tenant = f"tenant_plan_{uuid.uuid4().hex[:8]}"
    instance_id = invoke(stubs, envelope(tenant_id=tenant)).instance_id
    approval = submit(stubs, instance_id, REFUND_PLAN).approval
    decide(stubs, approval.action_id, "user_finance_lead_77")
    stream = stubs.as_("user_finance_lead_77", tenant=tenant).approval.WatchApprovals(
        approval_pb.WatchApprovalsRequest(tenant_id=tenant), timeout=30
    )
    seen = []
    for message in stream:
        if message.HasField("change"):
            seen.append(message.change)
        if len(seen) == 2:
            stream.cancel()
            break
    assert [(c.action_id, c.tool, approval_pb.ApprovalChangeKind.Name(c.kind)) for c in seen] == [
        (approval.action_id, "signoff.plan", "APPROVAL_CHANGE_KIND_REQUESTED"),
        (approval.action_id, "signoff.plan", "APPROVAL_CHANGE_KIND_DECIDED"),
    ]


def test_a_step_policy_denies_is_put_before_nobody(stubs: Stubs) -> None:
    unverified = envelope(
        input={
            "intent": "support.refund",
            "context": {"identity_verified": False, "order_id": "ord_881"},
        }
    )
    instance_id = invoke(stubs, unverified).instance_id
    submitted = submit(stubs, instance_id, REFUND_PLAN)
    assert not submitted.HasField("approval")
    denied = submitted.steps[2]
    assert (denied.step_id, denied.effect) == ("s3", "DENY")
    assert "verified identity" in denied.reason
    # Requested anyway, it is refused as it would be without a plan.
    assert ask(stubs, instance_id, refund()).outcome == pb.OUTCOME_REJECTED


def test_the_plan_approval_keeps_every_rule_of_an_approval(stubs: Stubs) -> None:
    instance_id = invoke(stubs).instance_id
    approval = submit(stubs, instance_id, REFUND_PLAN).approval
    # The instance's own user may not approve its plan; nor may someone its gate does not admit.
    for who, reason in (("usr_771", "SEPARATION_OF_DUTIES"), ("user_mod_lead_12", "NOT_ELIGIBLE")):
        with pytest.raises(grpc.RpcError) as caught:
            decide(stubs, approval.action_id, who)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_info(caught.value).reason == reason
    # An approval bound to what the approver saw: a stale hash is refused.
    with pytest.raises(grpc.RpcError) as caught:
        decide(
            stubs,
            approval.action_id,
            "user_finance_lead_77",
            evidence_snapshot_hash="sha256:" + "0" * 64,
        )
    assert error_info(caught.value).reason == "EVIDENCE_CHANGED"


def test_a_dry_run_of_a_plan_approval_judges_its_steps(stubs: Stubs) -> None:
    """What the console asks before it submits an edit: policy on each edited step."""
    instance_id = invoke(stubs).instance_id
    approval = submit(stubs, instance_id, REFUND_PLAN).approval
    lead = stubs.as_("user_finance_lead_77")

    def dry_run(amount: int) -> Any:
        action = proposed("tc_dry", "signoff.plan", pb.RISK_CLASS_DESTRUCTIVE)
        action.params.update(
            {
                "s3": {
                    "tool": "adp_payments.issue_refund",
                    "params": {**REFUND_PARAMS, "amount": amount},
                }
            }
        )
        return lead.policy.EvaluatePolicy(
            policy_pb.EvaluatePolicyRequest(instance_id=instance_id, action=action)
        )

    narrowed = dry_run(3000)
    assert narrowed.effect == policy_pb.EFFECT_REQUIRE_APPROVAL
    assert list(narrowed.gate_ids) == ["GATE_FINANCE_APPROVAL"]
    assert all(r.startswith("s3: ") for r in narrowed.reasons)
    widened = dry_run(250_000)
    assert list(widened.gate_ids) == ["GATE_FINANCE_DIRECTOR"]

    # Submitted, that edit needs a gate the approval did not wait on: directors decide.
    widen = struct_pb2.Struct()
    widen.update(
        {
            "s3": {
                "tool": "adp_payments.issue_refund",
                "params": {**REFUND_PARAMS, "amount": 250_000},
            }
        }
    )
    voted = decide(stubs, approval.action_id, "user_finance_lead_77", edited_params=widen)
    assert voted.action.state == pb.ACTION_STATE_WAITING_FOR_HUMAN
    assert [g.gate_id for g in voted.action.gates if g.state == pb.GATE_STATE_WAITING] == [
        "GATE_FINANCE_DIRECTOR"
    ]
