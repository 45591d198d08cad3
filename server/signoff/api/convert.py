"""Protobuf messages to and from domain models."""

import dataclasses
import re
from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any, TypeVar

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


P = TypeVar("P")


@cache
def _to_field(field: Any) -> Callable[[Any], Any]:
    """How a model value becomes the value of a message field, by the field's type."""
    if field.enum_type is not None:
        # ActionState → ACTION_STATE_ + the domain value; None → 0 (unset).
        prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", field.enum_type.name).upper()
        numbers = {v.name.removeprefix(f"{prefix}_"): v.number for v in field.enum_type.values}
        return lambda value: 0 if value is None else numbers[value.value]
    if field.message_type is not None:
        kind = field.message_type.full_name
        if kind == "google.protobuf.Timestamp":
            return timestamp
        if kind == "google.protobuf.Struct":
            return struct
    return lambda value: value


def _model_value(model: Any, name: str) -> Any:
    """The model's field `name`, or that of a dataclass it holds (Action.proposal)."""
    if hasattr(model, name):
        return getattr(model, name)
    for field in dataclasses.fields(model):
        inner = getattr(model, field.name)
        if dataclasses.is_dataclass(inner) and hasattr(inner, name):
            return getattr(inner, name)
    raise AttributeError(f"{type(model).__name__} has no field {name} for the message")


def to_pb(message_type: type[P], model: Any, **named: Any) -> P:
    """The message whose fields are the model's fields of the same names, converted by the
    message field's type (enum, Timestamp, Struct); `named` gives the fields that are not a
    plain copy. Fields left None are unset."""
    values: dict[str, Any] = {}
    for field in message_type.DESCRIPTOR.fields:  # type: ignore[attr-defined]
        if field.name in named:
            value = named[field.name]
        else:
            value = _model_value(model, field.name)
            if value is not None:
                value = _to_field(field)(value)
        if value is not None:
            values[field.name] = value
    return message_type(**values)


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
    return to_pb(
        pb.Action,
        action,
        gates=[to_pb(pb.GateStatus, g) for g in action.gates],
        proposed_sha256=action.proposed_sha256 or action.action_sha256,
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
    return to_pb(
        pb.Event,
        event,
        controls=controls_to_pb(event.controls) if event.controls else None,
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
    return to_pb(
        pb.DecisionRecord,
        record,
        approvals=[
            to_pb(pb.Approval, a, params_diff=struct(a.params_diff) if a.params_diff else None)
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
        budget=budget_to_pb(record.budget),
        compiled_context_sha256=record.compiled_context_sha256,
        plan_approval=pb.PlanApprovalRef(**record.plan_approval) if record.plan_approval else None,
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
    return to_pb(approval_pb.ApprovalChange, change)
