"""Protobuf messages to and from domain models."""

from datetime import datetime
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from signoff.domain import models
from signoff.domain.states import RiskClass
from signoff.policy import BundleRef, Effect, PolicyDecision
from signoff.policy.gates import Gate
from signoff.policy.manifest import CompiledContext
from signoff.telemetry import tracing
from signoff.v1 import approval_service_pb2 as approval_pb
from signoff.v1 import policy_service_pb2 as policy_pb
from signoff.v1 import types_pb2 as pb


def enum_to_pb(enum_type: Any, prefix: str, value: Any) -> Any:
    """Domain enum value → proto enum number (RISK_CLASS_ + READ_ONLY); None → 0."""
    return 0 if value is None else enum_type.Value(f"{prefix}_{value.value}")


def enum_from_pb(enum_type: Any, prefix: str, domain: Any, number: int) -> Any:
    """Proto enum number → domain enum; the caller has rejected 0 and unknown numbers."""
    return domain(enum_type.Name(number).removeprefix(f"{prefix}_"))


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    result = timestamp_pb2.Timestamp()
    result.FromDatetime(value)
    return result


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(value)
    return result


def message_to_json(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def instance_to_pb(instance: models.Instance) -> pb.Instance:
    message = pb.Instance()
    json_format.ParseDict(instance.envelope, message, ignore_unknown_fields=True)
    message.instance_id = instance.instance_id
    message.state = enum_to_pb(pb.InstanceState, "INSTANCE_STATE", instance.state)
    message.revision = instance.revision
    message.tool_calls_used = instance.tool_calls_used
    message.create_time.FromDatetime(instance.create_time)
    message.update_time.FromDatetime(instance.update_time)
    message.trace_id = tracing.trace_id_of(instance.traceparent)
    message.budget.CopyFrom(pb.BudgetReport(**instance.budget().as_json()))
    if instance.compiled_context:
        message.compiled_context.CopyFrom(compiled_context_to_pb(instance.compiled_context))
    return message


def compiled_context_to_pb(document: dict[str, Any]) -> pb.CompiledContext:
    """The stored compiled context (policy/manifest.py) as its message."""
    manifests = dict(document.get("manifests", {}))
    manifests["tool_bindings"] = {
        tool: {
            "approval_mode": f"RISK_CLASS_{binding['approval_mode']}",
            **({"params_schema": binding["params_schema"]} if binding["params_schema"] else {}),
        }
        for tool, binding in manifests.get("tool_bindings", {}).items()
    }
    message = json_format.ParseDict(
        {"manifests": manifests, "runtime_controls": document.get("runtime_controls", {})},
        pb.CompiledContext(),
    )
    message.sha256 = CompiledContext(document).sha256
    return message


def budget_to_pb(budget: dict[str, Any] | None) -> pb.BudgetReport | None:
    """A BudgetReport as events and records store it (BudgetReport.as_json)."""
    return pb.BudgetReport(**budget) if budget else None


def action_to_pb(action: models.Action) -> pb.Action:
    proposal = action.proposal
    return pb.Action(
        action_id=action.action_id,
        instance_id=action.instance_id,
        tenant_id=action.tenant_id,
        tool_call_id=proposal.tool_call_id,
        tool=proposal.tool,
        params=struct(proposal.params),
        risk_class=enum_to_pb(pb.RiskClass, "RISK_CLASS", proposal.risk_class),
        evidence_refs=proposal.evidence_refs,
        action_sha256=action.action_sha256,
        state=enum_to_pb(pb.ActionState, "ACTION_STATE", action.state),
        gate_ids=action.gate_ids,
        decided_by=action.decided_by,
        decision_reason=action.decision_reason,
        create_time=timestamp(action.create_time),
        decide_time=timestamp(action.decide_time),
        execution_evidence_ref=action.execution_evidence_ref,
        gates=[
            pb.GateStatus(
                gate_id=g.gate_id,
                state=enum_to_pb(pb.GateState, "GATE_STATE", g.state),
                quorum=g.quorum,
                approvals=g.approvals,
                rejections=g.rejections,
                deadline=timestamp(g.deadline),
                escalated_from=g.escalated_from,
            )
            for g in action.gates
        ],
        proposed_sha256=action.proposed_sha256 or action.action_sha256,
        estimated_cost_cents=proposal.estimated_cost_cents,
        cost_cents=action.cost_cents,
    )


def proposal_from_pb(message: pb.ProposedAction) -> models.ProposedAction:
    return models.ProposedAction(
        tool_call_id=message.tool_call_id,
        tool=message.tool,
        params=json_format.MessageToDict(message.params),
        risk_class=enum_from_pb(pb.RiskClass, "RISK_CLASS", RiskClass, message.risk_class),
        evidence_refs=tuple(message.evidence_refs),
        estimated_cost_cents=message.estimated_cost_cents,
    )


def event_to_pb(event: models.Event) -> pb.Event:
    return pb.Event(
        instance_id=event.instance_id,
        revision=event.revision,
        type=enum_to_pb(pb.EventType, "EVENT_TYPE", event.type),
        time=timestamp(event.time),
        instance_state=enum_to_pb(pb.InstanceState, "INSTANCE_STATE", event.instance_state),
        action_id=event.action_id,
        action_state=enum_to_pb(pb.ActionState, "ACTION_STATE", event.action_state),
        outcome=enum_to_pb(pb.Outcome, "OUTCOME", event.outcome),
        actor=event.actor,
        reason=event.reason,
        record_id=event.record_id,
        tool=event.tool,
        gate_id=event.gate_id,
        controls=controls_to_pb(event.controls) if event.controls else None,
        record_sha256=event.record_sha256,
        prev_hash=event.prev_hash,
        hash=event.hash,
        trace_id=event.trace_id,
        budget=budget_to_pb(event.budget),
        plan_sha256=event.plan_sha256,
    )


def controls_to_pb(policy: dict[str, Any], gates: list[str] | None = None) -> pb.ControlsActive:
    """An action's stored policy part (PolicyDecision.as_json) as ControlsActive."""
    return pb.ControlsActive(
        approval_gates_active=gates or [],
        must_refuse=policy.get("must_refuse", []),
        must_escalate=policy.get("must_escalate", []),
        redaction_rules_active=policy.get("redaction_rules_active", []),
        policy=pb.PolicyRef(
            bundle_id=policy.get("bundle_id", ""),
            version=policy.get("version", ""),
            sha256=policy.get("sha256", ""),
            rule_ids=policy.get("rule_ids", []),
        ),
    )


def record_to_pb(record: models.DecisionRecord) -> pb.DecisionRecord:
    return pb.DecisionRecord(
        record_id=record.record_id,
        decision_key=record.decision_key,
        status=enum_to_pb(pb.DecisionStatus, "DECISION_STATUS", record.status),
        outcome=enum_to_pb(pb.Outcome, "OUTCOME", record.outcome),
        outputs=struct(record.outputs),
        evidence_refs=record.evidence_refs,
        approvals=[
            pb.Approval(
                gate_id=a.gate_id,
                approver=a.approver,
                approval_mode_effective=a.approval_mode_effective,
                evidence_snapshot_hash=a.evidence_snapshot_hash,
                verdict=enum_to_pb(pb.Verdict, "VERDICT", a.verdict),
                reason=a.reason,
                time=timestamp(a.time),
                params_diff=struct(a.params_diff) if a.params_diff else None,
            )
            for a in record.approvals
        ],
        controls_active=pb.ControlsActive(
            approval_gates_active=record.approval_gates_active,
            must_refuse=record.must_refuse,
            must_escalate=record.must_escalate,
            redaction_rules_active=record.redaction_rules_active,
            policy=pb.PolicyRef(
                bundle_id=record.policy_bundle_id,
                version=record.policy_version,
                sha256=record.policy_sha256,
                rule_ids=record.rule_ids,
            ),
        ),
        trace_id=record.trace_id,
        tenant_id=record.tenant_id,
        instance_id=record.instance_id,
        action_id=record.action_id,
        tool=record.tool,
        action_sha256=record.action_sha256,
        revision=record.revision,
        create_time=timestamp(record.create_time),
        execution_state=enum_to_pb(pb.ActionState, "ACTION_STATE", record.execution_state),
        estimated_cost_cents=record.estimated_cost_cents,
        cost_cents=record.cost_cents,
        budget=budget_to_pb(record.budget),
        compiled_context_sha256=record.compiled_context_sha256,
    )


def evaluation_to_pb(decision: PolicyDecision) -> policy_pb.EvaluatePolicyResponse:
    return policy_pb.EvaluatePolicyResponse(
        effect=_EFFECTS[decision.effect],
        gate_ids=decision.gate_ids,
        reasons=decision.reasons,
        controls=controls_to_pb(decision.as_json(), decision.gate_ids),
        decision_key=decision.decision_key,
        findings=[
            policy_pb.Finding(
                rule_id=f.rule_id,
                effect=_EFFECTS[f.effect],
                reason=f.reason,
                gate_id=f.gate_id,
                refuse=f.refuse,
                escalate_to=f.escalate_to,
                redact=f.redact,
            )
            for f in decision.findings
        ],
        error=decision.error,
    )


def policy_to_pb(bundle: BundleRef, gates: list[Gate]) -> policy_pb.GetPolicyResponse:
    return policy_pb.GetPolicyResponse(
        bundle=pb.PolicyRef(
            bundle_id=bundle.bundle_id, version=bundle.version, sha256=bundle.sha256
        ),
        gates=[
            policy_pb.GateDefinition(
                gate_id=g.gate_id,
                description=g.description,
                principals=sorted(g.principals),
                roles=sorted(g.roles),
                quorum=g.quorum,
                rejections_to_settle=g.rejections_to_settle,
                ttl_seconds=int(g.ttl.total_seconds()),
                on_timeout=g.on_timeout.value,
                escalate_to=g.escalate_to,
                reminder_seconds=[int(r.total_seconds()) for r in g.reminders],
            )
            for g in gates
        ],
    )


_EFFECTS = {
    Effect.ALLOW: policy_pb.EFFECT_ALLOW,
    Effect.REQUIRE_APPROVAL: policy_pb.EFFECT_REQUIRE_APPROVAL,
    Effect.DENY: policy_pb.EFFECT_DENY,
}


def approval_change_to_pb(change: models.ApprovalChange) -> approval_pb.ApprovalChange:
    return approval_pb.ApprovalChange(
        cursor=change.cursor,
        tenant_id=change.tenant_id,
        kind=enum_to_pb(approval_pb.ApprovalChangeKind, "APPROVAL_CHANGE_KIND", change.kind),
        action_id=change.action_id,
        instance_id=change.instance_id,
        revision=change.revision,
        action_state=enum_to_pb(pb.ActionState, "ACTION_STATE", change.action_state),
        tool=change.tool,
        gate_id=change.gate_id,
        actor=change.actor,
        time=timestamp(change.time),
    )
