"""Every RPC through real gRPC on loopback, against SQLite and PostgreSQL."""

import uuid

import grpc
import pytest
from google.protobuf import json_format

from signoff.v1 import approval_service_pb2 as approval_pb
from signoff.v1 import audit_service_pb2 as audit_pb
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import types_pb2 as pb
from tests import support
from tests.support import (
    Stubs,
    envelope,
    error_info,
    field_violations,
    lookup_action,
    refund_action,
)


def invoke(stubs: Stubs, **overrides: object) -> pb.Instance:
    return stubs.execution.InvokeAgent(envelope(**overrides)).instance


def request(
    stubs: Stubs, instance_id: str, action: pb.ProposedAction
) -> execution_pb.RequestDecisionResponse:
    return stubs.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(instance_id=instance_id, action=action)
    )


def decide(
    stubs: Stubs,
    action_id: str,
    verdict: int = pb.VERDICT_APPROVE,
    approver: str = "user_finance_lead_77",
    request_id: str = "",
    reason: str = "checked the order",
) -> approval_pb.SubmitDecisionResponse:
    """A vote by `approver`, authenticated as that human."""
    return support.decide(stubs, action_id, approver, verdict, reason, request_id)


def events(stubs: Stubs, instance_id: str) -> list[pb.Event]:
    return list(stubs.audit.ListEvents(audit_pb.ListEventsRequest(instance_id=instance_id)).events)


def get(stubs: Stubs, instance_id: str) -> pb.Instance:
    return stubs.execution.GetInstance(
        execution_pb.GetInstanceRequest(instance_id=instance_id)
    ).instance


def rpc_error(call, *args) -> grpc.RpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as raised:
        call(*args)
    return raised.value  # type: ignore[return-value]


# -- InvokeAgent ------------------------------------------------------------------------------


def test_invoke_agent_keeps_the_whole_envelope(stubs: Stubs) -> None:
    request_message = envelope()
    instance = stubs.execution.InvokeAgent(request_message).instance
    assert instance.instance_id.startswith("ins_")
    assert instance.state == pb.INSTANCE_STATE_RUNNING
    assert instance.revision == 1
    sent = json_format.MessageToDict(request_message, preserving_proto_field_name=True)
    kept = json_format.MessageToDict(
        get(stubs, instance.instance_id), preserving_proto_field_name=True
    )
    for field, value in sent.items():
        assert kept[field] == value, field
    assert [e.type for e in events(stubs, instance.instance_id)] == [pb.EVENT_TYPE_INSTANCE_CREATED]


def test_invoke_agent_is_idempotent_by_request_id(stubs: Stubs) -> None:
    request_message = envelope()
    first = stubs.execution.InvokeAgent(request_message).instance
    again = stubs.execution.InvokeAgent(request_message).instance
    assert again.instance_id == first.instance_id
    assert len(events(stubs, first.instance_id)) == 1

    changed = envelope(request_id=request_message.request_id, session_id="another_session")
    error = rpc_error(stubs.execution.InvokeAgent, changed)
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(error).reason == "IDEMPOTENCY_KEY_REUSED"


def test_invoke_agent_rejects_bad_input_with_field_violations(stubs: Stubs) -> None:
    bad = execution_pb.InvokeAgentRequest(
        request_id="has space",
        runtime=pb.Runtime(max_tool_calls=-1),
        mode=42,
    )
    error = rpc_error(stubs.execution.InvokeAgent, bad)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error).reason == "INVALID_ARGUMENT"
    violations = field_violations(error)
    assert set(violations) == {
        "request_id",
        "tenant_id",
        "user.user_id",
        "agent.agent_id",
        "mode",
        "runtime.max_tool_calls",
    }
    assert "unknown value 42" in violations["mode"]


def test_oversized_context_is_rejected_and_nothing_is_stored(stubs: Stubs) -> None:
    big = envelope()
    big.input.context.update({"blob": "x" * 70_000})
    error = rpc_error(stubs.execution.InvokeAgent, big)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input.context" in field_violations(error)
    listed = stubs.execution.ListInstances(
        execution_pb.ListInstancesRequest(page_size=1000)
    ).instances
    assert big.request_id not in {i.request_id for i in listed}


# -- RequestDecision --------------------------------------------------------------------------


def test_read_only_is_approved_at_once_with_a_record(stubs: Stubs) -> None:
    instance = invoke(stubs)
    answer = request(stubs, instance.instance_id, lookup_action())
    assert answer.outcome == pb.OUTCOME_APPROVED
    assert answer.action_id.startswith("act_")
    assert answer.action_sha256.startswith("sha256:")
    assert not answer.gate_ids
    assert answer.action.state == pb.ACTION_STATE_APPROVED
    assert answer.action.decided_by == "policy"
    assert json_format.MessageToDict(answer.action.params) == {"order_id": "ord_881"}
    assert get(stubs, instance.instance_id).state == pb.INSTANCE_STATE_RUNNING
    records = stubs.audit.ListDecisionRecords(
        audit_pb.ListDecisionRecordsRequest(instance_id=instance.instance_id)
    ).records
    assert len(records) == 1 and records[0].outcome == pb.OUTCOME_APPROVED
    assert records[0].status == pb.DECISION_STATUS_DECIDED
    assert records[0].controls_active.policy.rule_ids == ["ALLOW_LOCAL_ACTIONS"]


@pytest.mark.parametrize("risk", [pb.RISK_CLASS_READ_ONLY, pb.RISK_CLASS_LOCAL_WRITE])
def test_local_risk_classes_run_at_once(stubs: Stubs, risk: int) -> None:
    instance = invoke(stubs)
    action = pb.ProposedAction(tool_call_id="tc_1", tool="adp_queue.append", risk_class=risk)
    assert request(stubs, instance.instance_id, action).outcome == pb.OUTCOME_APPROVED


@pytest.mark.parametrize(
    "risk", [pb.RISK_CLASS_NETWORK, pb.RISK_CLASS_DELEGATED, pb.RISK_CLASS_DESTRUCTIVE]
)
def test_outward_risk_classes_wait_for_a_human(stubs: Stubs, risk: int) -> None:
    instance = invoke(stubs)
    action = pb.ProposedAction(tool_call_id="tc_1", tool="adp_mail.send", risk_class=risk)
    answer = request(stubs, instance.instance_id, action)
    assert answer.outcome == pb.OUTCOME_WAITING_FOR_HUMAN
    assert list(answer.gate_ids) == ["GATE_DEFAULT"]
    assert answer.revision == 2
    assert get(stubs, instance.instance_id).state == pb.INSTANCE_STATE_WAITING_FOR_HUMAN


def test_request_decision_is_idempotent_by_tool_call_id(stubs: Stubs) -> None:
    instance = invoke(stubs)
    first = request(stubs, instance.instance_id, refund_action())
    again = request(stubs, instance.instance_id, refund_action())
    assert again.action_id == first.action_id
    assert again.outcome == pb.OUTCOME_WAITING_FOR_HUMAN
    assert get(stubs, instance.instance_id).tool_calls_used == 1

    decide(stubs, first.action_id)
    after = request(stubs, instance.instance_id, refund_action())
    assert after.outcome == pb.OUTCOME_APPROVED  # the repeat tells where the action stands now

    error = rpc_error(request, stubs, instance.instance_id, refund_action(amount=999_999))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(error).reason == "IDEMPOTENCY_KEY_REUSED"


def test_request_decision_validates_the_action(stubs: Stubs) -> None:
    instance = invoke(stubs)
    error = rpc_error(
        request, stubs, instance.instance_id, pb.ProposedAction(tool="no dots", risk_class=77)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(error)) == {
        "action.tool_call_id",
        "action.tool",
        "action.risk_class",
    }

    missing = rpc_error(stubs.execution.RequestDecision, execution_pb.RequestDecisionRequest())
    assert set(field_violations(missing)) == {"instance_id", "action"}

    unspecified = pb.ProposedAction(tool_call_id="tc", tool="a.b")
    assert "action.risk_class" in field_violations(
        rpc_error(request, stubs, instance.instance_id, unspecified)
    )

    huge = pb.ProposedAction(tool_call_id="tc", tool="a.b", risk_class=pb.RISK_CLASS_READ_ONLY)
    huge.params.update({"blob": "y" * 70_000})
    assert "action.params" in field_violations(
        rpc_error(request, stubs, instance.instance_id, huge)
    )
    assert len(events(stubs, instance.instance_id)) == 1  # nothing was written


def test_unknown_instance_is_not_found(stubs: Stubs) -> None:
    error = rpc_error(request, stubs, "ins_missing", lookup_action())
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(error).reason == "INSTANCE_NOT_FOUND"
    for call, message in [
        (stubs.execution.GetInstance, execution_pb.GetInstanceRequest(instance_id="ins_missing")),
        (
            stubs.execution.CancelInstance,
            execution_pb.CancelInstanceRequest(instance_id="ins_missing"),
        ),
        (
            stubs.execution.CompleteInstance,
            execution_pb.CompleteInstanceRequest(instance_id="ins_missing"),
        ),
        (stubs.audit.ListEvents, audit_pb.ListEventsRequest(instance_id="ins_missing")),
        (stubs.audit.GetDecisionRecord, audit_pb.GetDecisionRecordRequest(record_id="dr_missing")),
        (
            stubs.execution.ReportExecution,
            execution_pb.ReportExecutionRequest(
                action_id="act_missing", result=execution_pb.EXECUTION_RESULT_SUCCEEDED
            ),
        ),
    ]:
        assert rpc_error(call, message).code() == grpc.StatusCode.NOT_FOUND
    missing_action = rpc_error(decide, stubs, "act_missing")
    assert error_info(missing_action).reason == "ACTION_NOT_FOUND"


# -- SubmitDecision ---------------------------------------------------------------------------


def test_approval_settles_the_action_and_writes_its_record(stubs: Stubs) -> None:
    instance = invoke(stubs)
    waiting = request(stubs, instance.instance_id, refund_action())
    decided = decide(stubs, waiting.action_id)
    assert decided.action.state == pb.ACTION_STATE_APPROVED
    assert decided.action.decided_by == "user_finance_lead_77"
    record = decided.record
    assert record.record_id.startswith("dr_")
    assert record.status == pb.DECISION_STATUS_DECIDED and record.outcome == pb.OUTCOME_APPROVED
    assert record.decision_key == "support.refund.adp_payments.issue_refund"
    assert list(record.evidence_refs) == ["kg:order:ord_881#snapshot_kg_2026_05_03_T0930"]
    [approval] = record.approvals
    assert approval.gate_id == "GATE_DEFAULT"
    assert approval.approver == "user_finance_lead_77"
    assert approval.approval_mode_effective == "destructive"
    assert approval.evidence_snapshot_hash == waiting.action_sha256
    assert list(record.controls_active.approval_gates_active) == ["GATE_DEFAULT"]
    assert record.controls_active.policy.bundle_id == "TEST_OPEN"
    stored = stubs.audit.GetDecisionRecord(
        audit_pb.GetDecisionRecordRequest(record_id=record.record_id)
    ).record
    assert stored == record
    assert get(stubs, instance.instance_id).state == pb.INSTANCE_STATE_RUNNING
    kinds = [e.type for e in events(stubs, instance.instance_id)]
    assert kinds == [
        pb.EVENT_TYPE_INSTANCE_CREATED,
        pb.EVENT_TYPE_ACTION_REQUESTED,
        pb.EVENT_TYPE_ACTION_DECIDED,
    ]
    assert events(stubs, instance.instance_id)[-1].record_id == record.record_id


def test_rejection_is_final_and_the_instance_runs_on(stubs: Stubs) -> None:
    instance = invoke(stubs)
    waiting = request(stubs, instance.instance_id, refund_action())
    decided = decide(stubs, waiting.action_id, verdict=pb.VERDICT_REJECT, reason="amount too high")
    assert decided.action.state == pb.ACTION_STATE_REJECTED
    assert decided.record.outcome == pb.OUTCOME_REJECTED
    assert get(stubs, instance.instance_id).state == pb.INSTANCE_STATE_RUNNING
    error = rpc_error(decide, stubs, waiting.action_id)
    assert error.code() == grpc.StatusCode.ABORTED
    info = error_info(error)
    assert info.reason == "ALREADY_DECIDED"
    assert info.metadata["winning_verdict"] == "REJECT"
    assert info.metadata["winning_approver"] == "user_finance_lead_77"


def test_instance_waits_until_every_waiting_action_is_decided(stubs: Stubs) -> None:
    instance = invoke(stubs)
    first = request(stubs, instance.instance_id, refund_action("tc_a"))
    second = request(stubs, instance.instance_id, refund_action("tc_b"))
    decide(stubs, first.action_id)
    assert get(stubs, instance.instance_id).state == pb.INSTANCE_STATE_WAITING_FOR_HUMAN
    decide(stubs, second.action_id)
    assert get(stubs, instance.instance_id).state == pb.INSTANCE_STATE_RUNNING


def test_submit_decision_repeat_returns_the_original_answer(stubs: Stubs) -> None:
    instance = invoke(stubs)
    waiting = request(stubs, instance.instance_id, refund_action())
    first = decide(stubs, waiting.action_id, request_id="dec-same")
    again = decide(stubs, waiting.action_id, request_id="dec-same")
    assert again.record == first.record
    assert again.action.state == pb.ACTION_STATE_APPROVED
    error = rpc_error(
        decide, stubs, waiting.action_id, pb.VERDICT_REJECT, "user_finance_lead_77", "dec-same"
    )
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(error).reason == "IDEMPOTENCY_KEY_REUSED"
    assert len(events(stubs, instance.instance_id)) == 3


def test_auto_approved_actions_cannot_be_decided_again(stubs: Stubs) -> None:
    instance = invoke(stubs)
    approved = request(stubs, instance.instance_id, lookup_action())
    error = rpc_error(decide, stubs, approved.action_id, pb.VERDICT_REJECT)
    assert error.code() == grpc.StatusCode.ABORTED
    assert error_info(error).metadata["winning_approver"] == "policy"


def test_submit_decision_validates(stubs: Stubs) -> None:
    error = rpc_error(
        stubs.as_("lead").approval.SubmitDecision, approval_pb.SubmitDecisionRequest(verdict=9)
    )
    assert set(field_violations(error)) == {"action_id", "verdict", "request_id"}


def test_pending_approvals_page_through_waiting_actions_only(stubs: Stubs) -> None:
    tenant = f"tenant_{uuid.uuid4().hex[:8]}"
    instance = invoke(stubs, tenant_id=tenant)
    waiting = [
        request(stubs, instance.instance_id, refund_action(f"tc_{i}")).action_id for i in range(5)
    ]
    request(stubs, instance.instance_id, lookup_action())
    decide(stubs, waiting[0])
    seen, token = [], ""
    inbox = stubs.as_("lead").approval
    while True:
        page = inbox.ListPendingApprovals(
            approval_pb.ListPendingApprovalsRequest(tenant_id=tenant, page_size=2, page_token=token)
        )
        assert len(page.actions) <= 2
        seen += [a.action_id for a in page.actions]
        token = page.next_page_token
        if not token:
            break
    assert seen == waiting[1:]  # oldest first, decided and auto-approved ones excluded
    bad = rpc_error(
        inbox.ListPendingApprovals,
        approval_pb.ListPendingApprovalsRequest(page_token="nope"),
    )
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in field_violations(bad)


# -- ReportExecution, CompleteInstance, CancelInstance ----------------------------------------


def test_report_execution_attaches_the_result_to_the_record(stubs: Stubs) -> None:
    instance = invoke(stubs)
    waiting = request(stubs, instance.instance_id, refund_action())
    record_id = decide(stubs, waiting.action_id).record.record_id
    approved = request(stubs, instance.instance_id, refund_action())  # the agent asks again
    assert approved.outcome == pb.OUTCOME_APPROVED and approved.grant_token.startswith("grt_")
    report = execution_pb.ReportExecutionRequest(
        action_id=waiting.action_id,
        result=execution_pb.EXECUTION_RESULT_SUCCEEDED,
        evidence_ref="tool:adp_payments.issue_refund:tc_121",
        grant_token=approved.grant_token,
    )
    report.outputs.update(
        {"refund_amount_inr": 4200, "currency": "INR", "transaction_id": "txn_q9"}
    )
    executed = stubs.execution.ReportExecution(report).action
    assert executed.state == pb.ACTION_STATE_EXECUTED
    assert (
        stubs.execution.ReportExecution(report).action.state == pb.ACTION_STATE_EXECUTED
    )  # a repeat is harmless
    record = stubs.audit.GetDecisionRecord(
        audit_pb.GetDecisionRecordRequest(record_id=record_id)
    ).record
    assert record.execution_state == pb.ACTION_STATE_EXECUTED
    assert json_format.MessageToDict(record.outputs)["transaction_id"] == "txn_q9"
    assert list(record.evidence_refs)[-1] == "tool:adp_payments.issue_refund:tc_121"
    failed = execution_pb.ReportExecutionRequest(
        action_id=waiting.action_id,
        result=execution_pb.EXECUTION_RESULT_FAILED,
        grant_token=approved.grant_token,
    )
    assert error_info(rpc_error(stubs.execution.ReportExecution, failed)).reason == (
        "ALREADY_EXECUTED"
    )


def test_reporting_an_action_that_is_not_approved_fails(stubs: Stubs) -> None:
    instance = invoke(stubs)
    waiting = request(stubs, instance.instance_id, refund_action())
    report = execution_pb.ReportExecutionRequest(
        action_id=waiting.action_id, result=execution_pb.EXECUTION_RESULT_SUCCEEDED
    )
    error = rpc_error(stubs.execution.ReportExecution, report)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "ACTION_NOT_APPROVED"
    decide(stubs, waiting.action_id, verdict=pb.VERDICT_REJECT)
    assert (
        error_info(rpc_error(stubs.execution.ReportExecution, report)).reason
        == "ACTION_NOT_APPROVED"
    )


def test_complete_instance(stubs: Stubs) -> None:
    instance = invoke(stubs)
    waiting = request(stubs, instance.instance_id, refund_action())
    complete = execution_pb.CompleteInstanceRequest(instance_id=instance.instance_id)
    error = rpc_error(stubs.execution.CompleteInstance, complete)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "ILLEGAL_TRANSITION"
    decide(stubs, waiting.action_id)
    assert stubs.execution.CompleteInstance(complete).instance.state == pb.INSTANCE_STATE_COMPLETED
    assert stubs.execution.CompleteInstance(complete).instance.state == pb.INSTANCE_STATE_COMPLETED
    late = rpc_error(request, stubs, instance.instance_id, lookup_action("tc_late"))
    assert error_info(late).reason == "INSTANCE_COMPLETED"
    cancel = execution_pb.CancelInstanceRequest(instance_id=instance.instance_id)
    assert (
        rpc_error(stubs.execution.CancelInstance, cancel).code()
        == grpc.StatusCode.FAILED_PRECONDITION
    )


def test_cancel_instance_cancels_what_waits_and_revokes_approvals(stubs: Stubs) -> None:
    instance = invoke(stubs)
    waiting = request(stubs, instance.instance_id, refund_action("tc_wait"))
    approved = request(stubs, instance.instance_id, lookup_action())
    cancel = execution_pb.CancelInstanceRequest(
        instance_id=instance.instance_id, reason="customer left"
    )
    cancelled = stubs.execution.CancelInstance(cancel).instance
    assert cancelled.state == pb.INSTANCE_STATE_TERMINATED
    assert (
        stubs.execution.CancelInstance(cancel).instance.revision == cancelled.revision
    )  # idempotent
    assert (
        request(stubs, instance.instance_id, refund_action("tc_wait")).outcome
        == pb.OUTCOME_TERMINATED
    )
    assert request(stubs, instance.instance_id, lookup_action()).outcome == pb.OUTCOME_TERMINATED
    assert (
        request(stubs, instance.instance_id, lookup_action("tc_new")).outcome
        == pb.OUTCOME_TERMINATED
    )
    late_vote = rpc_error(decide, stubs, waiting.action_id)
    assert late_vote.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(late_vote).reason == "ACTION_NOT_WAITING"
    revoked = execution_pb.ConsumeGrantRequest(
        action_id=approved.action_id, grant_token=approved.grant_token
    )
    assert error_info(rpc_error(stubs.execution.ConsumeGrant, revoked)).reason == "GRANT_REVOKED"
    trail = events(stubs, instance.instance_id)
    assert [e.type for e in trail[-3:]] == [
        pb.EVENT_TYPE_ACTION_CANCELLED,
        pb.EVENT_TYPE_ACTION_CANCELLED,
        pb.EVENT_TYPE_INSTANCE_TERMINATED,
    ]
    assert {e.outcome for e in trail[-3:-1]} == {pb.OUTCOME_TERMINATED}
    records = stubs.audit.ListDecisionRecords(
        audit_pb.ListDecisionRecordsRequest(instance_id=instance.instance_id)
    ).records
    by_action = {r.action_id: r for r in records}
    assert by_action[waiting.action_id].status == pb.DECISION_STATUS_CANCELLED
    assert by_action[approved.action_id].execution_state == pb.ACTION_STATE_CANCELLED


# -- Listing ----------------------------------------------------------------------------------


def test_list_instances_filters_by_tenant_and_state_and_pages(stubs: Stubs) -> None:
    tenant = f"tenant_{uuid.uuid4().hex[:8]}"
    created = [invoke(stubs, tenant_id=tenant).instance_id for _ in range(5)]
    request(stubs, created[0], refund_action())
    listed, token = [], ""
    while True:
        page = stubs.execution.ListInstances(
            execution_pb.ListInstancesRequest(tenant_id=tenant, page_size=2, page_token=token)
        )
        listed += [i.instance_id for i in page.instances]
        token = page.next_page_token
        if not token:
            break
    assert listed == created[::-1]  # newest first
    waiting = stubs.execution.ListInstances(
        execution_pb.ListInstancesRequest(
            tenant_id=tenant, state=pb.INSTANCE_STATE_WAITING_FOR_HUMAN
        )
    ).instances
    assert [i.instance_id for i in waiting] == [created[0]]
    bad = rpc_error(
        stubs.execution.ListInstances, execution_pb.ListInstancesRequest(state=99, page_size=-1)
    )
    assert set(field_violations(bad)) == {"state", "page_size"}


def test_list_events_pages_in_revision_order(stubs: Stubs) -> None:
    instance = invoke(stubs)
    for i in range(4):
        request(stubs, instance.instance_id, lookup_action(f"tc_{i}"))
    page = stubs.audit.ListEvents(
        audit_pb.ListEventsRequest(instance_id=instance.instance_id, page_size=3)
    )
    assert [e.revision for e in page.events] == [1, 2, 3] and page.next_after_revision == 3
    rest = stubs.audit.ListEvents(
        audit_pb.ListEventsRequest(instance_id=instance.instance_id, after_revision=3, page_size=3)
    )
    assert [e.revision for e in rest.events] == [4, 5] and rest.next_after_revision == 0


def test_nul_characters_are_rejected_before_the_database(stubs: Stubs) -> None:
    instance = invoke(stubs)
    action = refund_action()
    action.params.update({"note": "a\x00b"})
    error = rpc_error(request, stubs, instance.instance_id, action)
    assert field_violations(error) == {"action.params.note": "must not contain NUL characters"}
    waiting = request(stubs, instance.instance_id, refund_action())
    nul_reason = rpc_error(
        decide, stubs, waiting.action_id, pb.VERDICT_APPROVE, "lead", None, "x\x00"
    )
    assert field_violations(nul_reason) == {"reason": "must not contain NUL characters"}


def test_executions_are_reported_before_completing(stubs: Stubs) -> None:
    instance = invoke(stubs)
    approved = request(stubs, instance.instance_id, lookup_action())
    stubs.execution.CompleteInstance(
        execution_pb.CompleteInstanceRequest(instance_id=instance.instance_id)
    )
    late = execution_pb.ReportExecutionRequest(
        action_id=approved.action_id, result=execution_pb.EXECUTION_RESULT_SUCCEEDED
    )
    error = rpc_error(stubs.execution.ReportExecution, late)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "INSTANCE_NOT_ACTIVE"
    assert events(stubs, instance.instance_id)[-1].type == pb.EVENT_TYPE_INSTANCE_COMPLETED
