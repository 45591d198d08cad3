"""The compiled context and CheckPlan through a real server on the example bundle, on both
databases: what InvokeAgent compiles, what RequestDecision refuses before policy, and the
critic's verdict with the one event it writes."""

import copy
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from signoff.v1 import audit_service_pb2 as audit_pb
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import types_pb2 as pb
from signoff_client import Signoff
from tests.support import (
    ServerProcess,
    Stubs,
    envelope,
    error_info,
    field_violations,
    lookup_action,
    refund_action,
)
from tests.unit.test_plans import MODERATION_PLAN, REFUND_PLAN


@pytest.fixture
def stubs(example_server: ServerProcess) -> Stubs:
    return example_server.stubs()


def invoke(stubs: Stubs, **overrides: Any) -> pb.Instance:
    return stubs.execution.InvokeAgent(envelope(**overrides)).instance


def check(stubs: Stubs, instance_id: str, plan: dict[str, Any]) -> execution_pb.CheckPlanResponse:
    """CheckPlan with the reference's JSON plan (its lower-case approval modes as enum names)."""
    plan = copy.deepcopy(plan)
    for step in plan["steps"]:
        if "approval_mode" in step and not step["approval_mode"].startswith("RISK_CLASS_"):
            step["approval_mode"] = "RISK_CLASS_" + step["approval_mode"].upper()
    request = execution_pb.CheckPlanRequest(instance_id=instance_id)
    json_format.ParseDict(plan, request.plan)
    return stubs.execution.CheckPlan(request)


def test_invoke_agent_answers_with_the_compiled_context(stubs: Stubs) -> None:
    instance = invoke(stubs)
    context = instance.compiled_context
    assert [(t.adapter_id, list(t.capabilities)) for t in context.manifests.tool_manifest] == [
        ("adp_orders", ["lookup"]),
        ("adp_policy", ["eval"]),
        ("adp_payments", ["issue_refund"]),
    ]
    assert list(context.manifests.policy_manifest[0].rule_ids) == [
        "R_REFUND_REQUIRES_IDV",
        "R_HIGH_VALUE_REQUIRES_APPROVAL",
    ]
    assert [e.evidence_ref for e in context.manifests.evidence_manifest] == ["kg:order:ord_881"]
    assert list(context.runtime_controls.approval_gates_active) == ["GATE_FINANCE_APPROVAL"]
    binding = context.manifests.tool_bindings["adp_payments.issue_refund"]
    assert binding.approval_mode == pb.RISK_CLASS_DESTRUCTIVE
    assert context.sha256.startswith("sha256:")
    # Stored with the instance: GetInstance returns the same, and every record names it.
    again = stubs.execution.GetInstance(
        execution_pb.GetInstanceRequest(instance_id=instance.instance_id)
    ).instance
    assert again.compiled_context == context
    answer = stubs.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(
            instance_id=instance.instance_id, action=lookup_action()
        )
    )
    assert answer.outcome == pb.OUTCOME_APPROVED
    record = stubs.as_("auditor", "admin").audit.ListDecisionRecords(
        audit_pb.ListDecisionRecordsRequest(instance_id=instance.instance_id)
    )
    assert [r.compiled_context_sha256 for r in record.records] == [context.sha256]


def test_an_intent_the_bundle_does_not_declare_compiles_open(stubs: Stubs) -> None:
    instance = invoke(stubs, input={"intent": "ops.cleanup", "message": "tidy up"})
    assert not instance.HasField("compiled_context")
    mail = pb.ProposedAction(
        tool_call_id="tc_1", tool="adp_mail.send", risk_class=pb.RISK_CLASS_NETWORK
    )
    answer = stubs.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(instance_id=instance.instance_id, action=mail)
    )
    assert answer.outcome == pb.OUTCOME_WAITING_FOR_HUMAN  # policy alone decided


def test_request_decision_refuses_what_is_outside_the_context(stubs: Stubs) -> None:
    instance_id = invoke(stubs).instance_id
    outside = pb.ProposedAction(
        tool_call_id="tc_mail", tool="adp_mail.send", risk_class=pb.RISK_CLASS_NETWORK
    )
    answer = stubs.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(instance_id=instance_id, action=outside)
    )
    assert answer.outcome == pb.OUTCOME_REJECTED
    assert list(answer.controls.policy.rule_ids) == ["TOOL_NOT_IN_MANIFEST"]

    weaker = refund_action("tc_weak")
    weaker.risk_class = pb.RISK_CLASS_NETWORK
    answer = stubs.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(instance_id=instance_id, action=weaker)
    )
    assert answer.outcome == pb.OUTCOME_REJECTED
    assert list(answer.controls.policy.rule_ids) == ["RISK_CLASS_BELOW_BINDING"]

    bad = refund_action("tc_bad")
    bad.params.update({"currency": "rupees"})  # not an ISO 4217 code
    with pytest.raises(grpc.RpcError) as caught:
        stubs.execution.RequestDecision(
            execution_pb.RequestDecisionRequest(instance_id=instance_id, action=bad)
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "action.params/currency" in field_violations(caught.value)
    # Nothing was written for the invalid one: the tool call id is still free.
    bad.params.update({"currency": "INR"})
    fine = stubs.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(instance_id=instance_id, action=bad)
    )
    assert fine.outcome == pb.OUTCOME_WAITING_FOR_HUMAN


def test_check_plan_accepts_the_reference_plan_and_records_only_its_verdict(
    stubs: Stubs,
) -> None:
    instance = invoke(stubs)
    verdict = check(stubs, instance.instance_id, REFUND_PLAN)
    assert verdict.accepted and not verdict.findings
    assert verdict.plan_sha256.startswith("sha256:")
    assert verdict.revision == instance.revision + 1
    events = (
        stubs.as_("auditor", "admin")
        .audit.ListEvents(audit_pb.ListEventsRequest(instance_id=instance.instance_id))
        .events
    )
    last = events[-1]
    assert last.type == pb.EVENT_TYPE_PLAN_CHECKED
    assert last.plan_sha256 == verdict.plan_sha256
    assert last.reason == "plan plan_refund_01 ACCEPTED"
    after = stubs.execution.GetInstance(
        execution_pb.GetInstanceRequest(instance_id=instance.instance_id)
    ).instance
    assert after.tool_calls_used == 0 and after.state == pb.INSTANCE_STATE_RUNNING
    chain = stubs.as_("auditor", "admin").audit.VerifyChain(
        audit_pb.VerifyChainRequest(instance_id=instance.instance_id)
    )
    assert chain.intact, chain.problem


def test_check_plan_names_each_problem(stubs: Stubs) -> None:
    instance_id = invoke(stubs).instance_id
    plan = copy.deepcopy(REFUND_PLAN)
    plan["steps"][0]["tool"] = "adp_mail.send"
    plan["steps"][2]["approval_mode"] = "RISK_CLASS_NETWORK"
    plan["steps"][1]["depends_on"] = ["s9"]
    verdict = check(stubs, instance_id, plan)
    assert not verdict.accepted
    assert {(f.reason, f.step_id) for f in verdict.findings} == {
        ("TOOL_NOT_IN_MANIFEST", "s1"),
        ("APPROVAL_MODE_MISMATCH", "s3"),
        ("UNKNOWN_DEPENDENCY", "s2"),
    }
    moderation = check(stubs, instance_id, MODERATION_PLAN)
    assert {f.reason for f in moderation.findings} >= {"INTENT_MISMATCH", "TOOL_NOT_IN_MANIFEST"}


def test_a_malformed_plan_is_invalid_and_writes_nothing(stubs: Stubs) -> None:
    instance = invoke(stubs)
    request = execution_pb.CheckPlanRequest(instance_id=instance.instance_id)
    request.plan.plan_id = "p"
    request.plan.intent = "support.refund"
    for _ in range(2):
        request.plan.steps.add(id="s1", tool="adp_orders.lookup")
    with pytest.raises(grpc.RpcError) as caught:
        stubs.execution.CheckPlan(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "plan.steps[1].id" in field_violations(caught.value)

    huge = execution_pb.CheckPlanRequest(instance_id=instance.instance_id)
    huge.plan.plan_id, huge.plan.intent = "p", "support.refund"
    for i in range(10_000):
        huge.plan.steps.add(id=f"s{i}", tool="adp_orders.lookup")
    with pytest.raises(grpc.RpcError) as caught:
        stubs.execution.CheckPlan(huge)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "plan.steps" in field_violations(caught.value)
    after = stubs.execution.GetInstance(
        execution_pb.GetInstanceRequest(instance_id=instance.instance_id)
    ).instance
    assert after.revision == instance.revision


def test_check_plan_on_an_ended_instance(stubs: Stubs) -> None:
    instance_id = invoke(stubs).instance_id
    stubs.execution.CancelInstance(execution_pb.CancelInstanceRequest(instance_id=instance_id))
    with pytest.raises(grpc.RpcError) as caught:
        check(stubs, instance_id, REFUND_PLAN)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(caught.value).reason == "INSTANCE_NOT_ACTIVE"


def test_the_sdk_checks_a_plan_written_as_the_reference_writes_it(
    example_server: ServerProcess,
) -> None:
    with Signoff.connect(example_server.target) as client:
        instance = client.invoke_agent(
            json_format.MessageToDict(envelope(), preserving_proto_field_name=True)
        )
        verdict = client.check_plan(instance.instance_id, REFUND_PLAN)  # "destructive"
        assert verdict.accepted, verdict.findings
        wrong = copy.deepcopy(REFUND_PLAN)
        wrong["steps"][2]["approval_mode"] = "network"
        found = client.check_plan(instance.instance_id, wrong).findings
        assert [(f.reason, f.step_id) for f in found] == [("APPROVAL_MODE_MISMATCH", "s3")]
