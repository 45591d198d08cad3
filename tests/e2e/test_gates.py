"""Gates over real gRPC with the example bundle: eligibility, separation of duties, quorum,
one vote per approver, rejection, edits, budgets, refusal, redaction, PolicyService."""

import uuid

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import json_format

from signoff.v1 import approval_service_pb2 as approval_pb
from signoff.v1 import audit_service_pb2 as audit_pb
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import policy_service_pb2 as policy_pb
from signoff.v1 import types_pb2 as pb
from tests.support import ServerProcess, Stubs, envelope, error_info, lookup_action, refund_action


@pytest.fixture
def stubs(example_server: ServerProcess) -> Stubs:
    return example_server.stubs()


def invoke(stubs: Stubs, **overrides: object) -> str:
    return stubs.execution.InvokeAgent(envelope(**overrides)).instance.instance_id


def ask(
    stubs: Stubs, instance_id: str, action: pb.ProposedAction
) -> execution_pb.RequestDecisionResponse:
    return stubs.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(instance_id=instance_id, action=action)
    )


def vote(
    stubs: Stubs,
    action_id: str,
    approver: str,
    verdict: int = pb.VERDICT_APPROVE,
    edited: dict | None = None,
) -> approval_pb.SubmitDecisionResponse:  # type: ignore[type-arg]
    message = approval_pb.SubmitDecisionRequest(
        action_id=action_id,
        verdict=verdict,
        reason=f"{approver} checked",
        request_id=f"vote_{uuid.uuid4().hex}",
    )
    if edited is not None:
        message.edited_params.update(edited)
    return stubs.as_(approver).approval.SubmitDecision(message)


def refused(call, *args) -> grpc.RpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as raised:
        call(*args)
    return raised.value  # type: ignore[return-value]


def trail(stubs: Stubs, instance_id: str) -> list[pb.Event]:
    return list(stubs.audit.ListEvents(audit_pb.ListEventsRequest(instance_id=instance_id)).events)


def test_refund_waits_for_finance_and_records_the_policy(stubs: Stubs) -> None:
    instance_id = invoke(stubs)
    waiting = ask(stubs, instance_id, refund_action())
    assert waiting.outcome == pb.OUTCOME_WAITING_FOR_HUMAN
    assert list(waiting.gate_ids) == ["GATE_FINANCE_APPROVAL"]
    assert waiting.controls.policy.bundle_id == "POLICY_EXAMPLE"
    assert waiting.controls.policy.sha256.startswith("sha256:")
    assert "R_HIGH_VALUE_REQUIRES_APPROVAL" in waiting.controls.policy.rule_ids
    requested = trail(stubs, instance_id)[-1]
    assert requested.controls.policy.rule_ids == waiting.controls.policy.rule_ids

    decided = vote(stubs, waiting.action_id, "user_finance_lead_77")
    assert decided.action.state == pb.ACTION_STATE_APPROVED
    record = decided.record
    assert record.decision_key == "support.refund.execute"
    assert [(a.gate_id, a.approver) for a in record.approvals] == [
        ("GATE_FINANCE_APPROVAL", "user_finance_lead_77")
    ]
    assert record.approvals[0].evidence_snapshot_hash == waiting.action_sha256
    assert record.controls_active.policy.bundle_id == "POLICY_EXAMPLE"
    assert list(record.controls_active.approval_gates_active) == ["GATE_FINANCE_APPROVAL"]


def test_only_eligible_approvers_vote(stubs: Stubs) -> None:
    waiting = ask(stubs, invoke(stubs), refund_action())
    error = refused(vote, stubs, waiting.action_id, "user_mod_lead_12")
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(error).reason == "NOT_ELIGIBLE"
    # By role: user_finance_lead_78 is a finance_lead without being named on the gate.
    assert (
        vote(stubs, waiting.action_id, "user_finance_lead_78").action.state
        == pb.ACTION_STATE_APPROVED
    )


def test_nobody_approves_their_own_action(stubs: Stubs) -> None:
    instance_id = invoke(stubs, user={"user_id": "user_finance_lead_78"})
    waiting = ask(stubs, instance_id, refund_action())
    error = refused(vote, stubs, waiting.action_id, "user_finance_lead_78")
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(error).reason == "SEPARATION_OF_DUTIES"
    agent = refused(vote, stubs, waiting.action_id, "agt_support")
    assert error_info(agent).reason == "SEPARATION_OF_DUTIES"


def test_an_inbox_leaves_out_what_its_owner_may_not_decide(stubs: Stubs) -> None:
    tenant = f"tenant_{uuid.uuid4().hex[:8]}"
    instance_id = invoke(stubs, tenant_id=tenant, user={"user_id": "user_finance_lead_78"})
    waiting = ask(stubs, instance_id, refund_action())

    def inbox(human: str, *roles: str) -> list[str]:
        listed = stubs.as_(human, *roles).approval.ListPendingApprovals(
            approval_pb.ListPendingApprovalsRequest(tenant_id=tenant)
        )
        return [action.action_id for action in listed.actions]

    assert inbox("user_finance_lead_77") == [waiting.action_id]  # a finance lead
    assert inbox("user_finance_lead_78") == []  # a finance lead, but the instance's user
    assert inbox("user_mod_lead_12") == []  # not an approver of its gate
    assert inbox("ops_oncall", "admin") == [waiting.action_id]  # admins see all that waits


def test_a_quorum_of_two_distinct_directors(stubs: Stubs) -> None:
    instance_id = invoke(stubs)
    waiting = ask(stubs, instance_id, refund_action(amount=250_000))
    assert list(waiting.gate_ids) == ["GATE_FINANCE_DIRECTOR"]
    assert list(waiting.controls.must_escalate) == ["GATE_FINANCE_DIRECTOR"]
    first = vote(stubs, waiting.action_id, "user_finance_director_1")
    assert first.action.state == pb.ACTION_STATE_WAITING_FOR_HUMAN
    assert not first.HasField("record")
    assert first.action.gates[0].approvals == 1 and first.action.gates[0].quorum == 2
    assert trail(stubs, instance_id)[-1].type == pb.EVENT_TYPE_ACTION_VOTED
    again = refused(vote, stubs, waiting.action_id, "user_finance_director_1")
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(again).reason == "ALREADY_VOTED"
    second = vote(stubs, waiting.action_id, "user_finance_director_2")
    assert second.action.state == pb.ACTION_STATE_APPROVED
    assert [a.approver for a in second.record.approvals] == [
        "user_finance_director_1",
        "user_finance_director_2",
    ]


def test_a_reject_settles_the_action(stubs: Stubs) -> None:
    instance_id = invoke(
        stubs, input={"intent": "content.review", "message": "Review post pst_5512"}
    )
    block = pb.ProposedAction(
        tool_call_id="tc_4", tool="adp_content.publish_block", risk_class=pb.RISK_CLASS_DELEGATED
    )
    block.params.update({"post_id": "pst_5512", "confidence": 0.91})
    waiting = ask(stubs, instance_id, block)
    assert list(waiting.gate_ids) == ["GATE_PUBLISH_BLOCK"]
    decided = vote(stubs, waiting.action_id, "user_mod_lead_12", pb.VERDICT_REJECT)
    assert decided.action.state == pb.ACTION_STATE_REJECTED
    assert decided.record.outcome == pb.OUTCOME_REJECTED
    assert decided.record.approvals[0].verdict == pb.VERDICT_REJECT


def only_record(stubs: Stubs, instance_id: str, action_id: str = "") -> pb.DecisionRecord:
    records = stubs.audit.ListDecisionRecords(
        audit_pb.ListDecisionRecordsRequest(instance_id=instance_id)
    ).records
    mine = [r for r in records if not action_id or r.action_id == action_id]
    assert len(mine) == 1, mine
    return mine[0]


def test_policy_denial_rejects_at_once_with_its_rule(stubs: Stubs) -> None:
    instance_id = invoke(
        stubs, input={"intent": "support.refund", "context": {"identity_verified": False}}
    )
    denied = ask(stubs, instance_id, refund_action())
    assert denied.outcome == pb.OUTCOME_REJECTED
    assert "R_REFUND_REQUIRES_IDV" in denied.controls.policy.rule_ids
    assert "verified identity" in denied.reason
    # The refund workflow's error case: the denial is recorded as ESCALATED to people.
    record = only_record(stubs, instance_id)
    assert (record.status, record.outcome) == (pb.DECISION_STATUS_ESCALATED, pb.OUTCOME_REJECTED)
    assert record.controls_active.policy.rule_ids == denied.controls.policy.rule_ids


def test_budget_exhausted(stubs: Stubs) -> None:
    instance_id = invoke(stubs, runtime={"max_tool_calls": 2})
    for i in range(2):
        assert ask(stubs, instance_id, lookup_action(f"tc_{i}")).outcome == pb.OUTCOME_APPROVED
    over = ask(stubs, instance_id, lookup_action("tc_3"))
    assert over.outcome == pb.OUTCOME_REJECTED
    assert over.reason.startswith("BUDGET_EXHAUSTED")
    assert list(over.controls.policy.rule_ids) == ["BUDGET_EXHAUSTED"]
    assert only_record(stubs, instance_id, over.action_id).status == pb.DECISION_STATUS_ESCALATED


def test_a_refusal_ends_the_instance_even_past_the_budget(stubs: Stubs) -> None:
    instance_id = invoke(stubs, runtime={"max_tool_calls": 1})
    assert ask(stubs, instance_id, lookup_action()).outcome == pb.OUTCOME_APPROVED
    wipe = pb.ProposedAction(
        tool_call_id="tc_x", tool="adp_infra.delete_all", risk_class=pb.RISK_CLASS_DESTRUCTIVE
    )
    assert ask(stubs, instance_id, wipe).outcome == pb.OUTCOME_TERMINATED


def test_must_refuse_terminates_the_instance(stubs: Stubs) -> None:
    instance_id = invoke(stubs)
    pending = ask(stubs, instance_id, refund_action())
    wipe = pb.ProposedAction(
        tool_call_id="tc_x", tool="adp_infra.delete_all", risk_class=pb.RISK_CLASS_DESTRUCTIVE
    )
    answer = ask(stubs, instance_id, wipe)
    assert answer.outcome == pb.OUTCOME_TERMINATED
    assert list(answer.controls.must_refuse) == ["R_REFUSED_TOOL"]
    refused = only_record(stubs, instance_id, answer.action_id)  # final: signoff decided
    assert (refused.status, refused.outcome) == (pb.DECISION_STATUS_DECIDED, pb.OUTCOME_REJECTED)
    instance = stubs.execution.GetInstance(
        execution_pb.GetInstanceRequest(instance_id=instance_id)
    ).instance
    assert instance.state == pb.INSTANCE_STATE_TERMINATED
    assert ask(stubs, instance_id, refund_action()).outcome == pb.OUTCOME_TERMINATED
    cancelled = [e for e in trail(stubs, instance_id) if e.type == pb.EVENT_TYPE_ACTION_CANCELLED]
    assert [e.action_id for e in cancelled] == [pending.action_id]


def test_redacted_values_are_never_stored(example_server: ServerProcess, stubs: Stubs) -> None:
    instance_id = invoke(stubs, input={"intent": "data.lookup", "message": "Top 10 customers"})
    query = pb.ProposedAction(
        tool_call_id="tc_q", tool="adp_kg.query", risk_class=pb.RISK_CLASS_READ_ONLY
    )
    query.params.update({"filter": "owner = dana.secret@example.com"})
    answer = ask(stubs, instance_id, query)
    assert answer.outcome == pb.OUTCOME_APPROVED
    assert list(answer.controls.redaction_rules_active) == ["pii_email"]
    # The agent gets back exactly what it proposed (its hash proves it) …
    assert json_format.MessageToDict(answer.action.params) == {
        "filter": "owner = dana.secret@example.com"
    }
    report = execution_pb.ReportExecutionRequest(
        action_id=answer.action_id,
        result=execution_pb.EXECUTION_RESULT_SUCCEEDED,
        evidence_ref="tool:adp_kg.query:tc_q",
        grant_token=answer.grant_token,
    )
    report.outputs.update({"top": ["olga.secret@example.com"]})
    stubs.execution.ReportExecution(report)
    record = stubs.audit.ListDecisionRecords(
        audit_pb.ListDecisionRecordsRequest(instance_id=instance_id)
    ).records[0]
    assert list(record.controls_active.redaction_rules_active) == ["pii_email"]
    assert "olga.secret@example.com" not in str(record.outputs)
    # … while the database holds only hashes of what the rule matched.
    engine = sa.create_engine(example_server.database_url)
    with engine.connect() as connection:
        params = connection.execute(
            sa.text("SELECT params FROM actions WHERE action_id = :a"), {"a": answer.action_id}
        ).scalar_one()
        everything = " ".join(
            str(row)
            for table in ("actions", "events", "decision_records", "votes")
            for row in connection.execute(sa.text(f"SELECT * FROM {table}"))
        )
    engine.dispose()
    assert "[redacted:pii_email:sha256:" in str(params)
    assert "secret@example.com" not in everything


def test_an_edit_within_the_gate_is_approved_with_its_diff(stubs: Stubs) -> None:
    instance_id = invoke(stubs)
    waiting = ask(stubs, instance_id, refund_action())
    edited = {"order_id": "ord_881", "amount": 3000, "currency": "INR"}
    decided = vote(stubs, waiting.action_id, "user_finance_lead_77", edited=edited)
    assert decided.action.state == pb.ACTION_STATE_APPROVED
    assert json_format.MessageToDict(decided.action.params)["amount"] == 3000
    assert decided.action.action_sha256 != waiting.action_sha256
    assert decided.action.proposed_sha256 == waiting.action_sha256
    diff = json_format.MessageToDict(decided.record.approvals[0].params_diff)
    assert diff == {"amount": {"from": 4200, "to": 3000}}
    # The agent asks again with what it proposed and gets the params it may execute.
    again = ask(stubs, instance_id, refund_action())
    assert again.outcome == pb.OUTCOME_APPROVED
    assert json_format.MessageToDict(again.action.params)["amount"] == 3000


def test_an_edit_that_needs_a_stricter_gate_needs_a_fresh_approval(stubs: Stubs) -> None:
    waiting = ask(stubs, invoke(stubs), refund_action())
    bigger = {"order_id": "ord_881", "amount": 250_000, "currency": "INR"}
    after = vote(stubs, waiting.action_id, "user_finance_lead_77", edited=bigger)
    assert after.action.state == pb.ACTION_STATE_WAITING_FOR_HUMAN
    states = {g.gate_id: g.state for g in after.action.gates}
    assert states == {
        "GATE_FINANCE_APPROVAL": pb.GATE_STATE_CLOSED,
        "GATE_FINANCE_DIRECTOR": pb.GATE_STATE_WAITING,
    }
    vote(stubs, waiting.action_id, "user_finance_director_1")
    done = vote(stubs, waiting.action_id, "user_finance_director_2")
    assert done.action.state == pb.ACTION_STATE_APPROVED
    assert json_format.MessageToDict(done.action.params)["amount"] == 250_000
    # The edit is in the record, though it counted on no gate, and so are both directors.
    editor = [a for a in done.record.approvals if a.approver == "user_finance_lead_77"]
    assert [a.gate_id for a in editor] == [""]
    assert json_format.MessageToDict(editor[0].params_diff) == {
        "amount": {"from": 4200, "to": 250000}
    }
    # The record carries the policy that routed the edited action, not the first one.
    assert list(done.record.controls_active.must_escalate) == ["GATE_FINANCE_DIRECTOR"]
    assert "R_VERY_HIGH_VALUE_TO_DIRECTORS" in done.record.controls_active.policy.rule_ids


def test_an_edit_policy_denies_is_refused(stubs: Stubs) -> None:
    instance_id = invoke(stubs, input={"intent": "content.review"})
    block = pb.ProposedAction(
        tool_call_id="tc_b", tool="adp_content.publish_block", risk_class=pb.RISK_CLASS_DELEGATED
    )
    block.params.update({"confidence": 0.9})
    waiting = ask(stubs, instance_id, block)
    error = refused(
        vote, stubs, waiting.action_id, "user_mod_lead_12", pb.VERDICT_APPROVE, {"confidence": 0.1}
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(error).reason == "EDIT_DENIED_BY_POLICY"
    assert (
        vote(stubs, waiting.action_id, "user_mod_lead_12").action.state == pb.ACTION_STATE_APPROVED
    )


def test_policy_service(stubs: Stubs) -> None:
    policy = stubs.policy.GetPolicy(policy_pb.GetPolicyRequest())
    assert policy.bundle.bundle_id == "POLICY_EXAMPLE" and policy.bundle.version == "1.0.0"
    gates = {g.gate_id: g for g in policy.gates}
    assert gates["GATE_FINANCE_APPROVAL"].escalate_to == "GATE_FINANCE_DIRECTOR"
    assert gates["GATE_FINANCE_DIRECTOR"].quorum == 2
    assert gates["GATE_FINANCE_APPROVAL"].ttl_seconds == 24 * 3600

    before = stubs.execution.ListInstances(
        execution_pb.ListInstancesRequest(page_size=1000)
    ).instances
    dry = stubs.policy.EvaluatePolicy(
        policy_pb.EvaluatePolicyRequest(envelope=envelope(), action=refund_action())
    )
    assert dry.effect == policy_pb.EFFECT_REQUIRE_APPROVAL
    assert list(dry.gate_ids) == ["GATE_FINANCE_APPROVAL"]
    assert {f.rule_id for f in dry.findings} == {
        "R_HIGH_VALUE_REQUIRES_APPROVAL",
        "R_DESTRUCTIVE_PAYMENT_REQUIRES_APPROVAL",
    }
    assert dry.decision_key == "support.refund.execute"
    after = stubs.execution.ListInstances(
        execution_pb.ListInstancesRequest(page_size=1000)
    ).instances
    assert len(after) == len(before)  # a dry run creates nothing

    instance_id = invoke(stubs)
    stored = stubs.policy.EvaluatePolicy(
        policy_pb.EvaluatePolicyRequest(instance_id=instance_id, action=lookup_action())
    )
    assert stored.effect == policy_pb.EFFECT_ALLOW
    missing = refused(
        stubs.policy.EvaluatePolicy, policy_pb.EvaluatePolicyRequest(action=lookup_action())
    )
    assert missing.code() == grpc.StatusCode.INVALID_ARGUMENT
