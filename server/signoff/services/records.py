"""How a DecisionRecord is composed from an action and what decided it."""

from datetime import datetime
from typing import Any

from signoff.domain.ids import new_id
from signoff.domain.models import Action, Approval, DecisionRecord, Instance, Json, Vote
from signoff.domain.plans import PLAN_TOOL
from signoff.domain.states import DecisionStatus, Verdict, outcome_of
from signoff.policy.manifest import CompiledContext
from signoff.telemetry import tracing


def approvals_of(action: Action, votes: list[Vote]) -> list[Approval]:
    """Every vote, once per gate it counted on. A vote that counted on no gate (an edit
    that needed a fresh approval) still appears, with an empty gate_id and its diff."""
    return [
        Approval(
            gate_id=gate_id,
            approver=vote.approver,
            approval_mode_effective=action.proposal.risk_class.value.lower(),
            evidence_snapshot_hash=vote.evidence_snapshot_hash,
            verdict=vote.verdict,
            reason=vote.reason,
            time=vote.time,
            params_diff=vote.params_diff,
        )
        for vote in votes
        for gate_id in (vote.gate_ids or ("",))
    ]


def instance_part(instance: Instance, now: datetime, traceparent: str = "") -> dict[str, Any]:
    """What every DecisionRecord says of its instance, written with the instance's next event
    (whose revision it carries): its trace is `traceparent`'s (the action's), else the
    instance's."""
    return {
        "tenant_id": instance.tenant_id,
        "instance_id": instance.instance_id,
        "revision": instance.revision + 1,
        "create_time": now,
        "trace_id": tracing.trace_id_of(traceparent, instance.traceparent),
        "budget": instance.budget().as_json(),
        "compiled_context_sha256": CompiledContext(instance.compiled_context).sha256,
    }


def record_for(
    action: Action,
    instance: Instance,
    status: DecisionStatus,
    now: datetime,
    approvals: list[Approval] | None = None,
) -> DecisionRecord:
    """The record of the action's decision (see instance_part for what it says of the
    instance)."""
    policy = action.policy
    approvals = approvals or []
    return DecisionRecord(
        record_id=new_id("dr"),
        decision_key=policy.get("decision_key", "") or action.proposal.tool,
        status=status,
        outcome=outcome_of(action.state),
        action_id=action.action_id,
        tool=action.proposal.tool,
        action_sha256=action.action_sha256,
        evidence_refs=list(action.proposal.evidence_refs),
        approvals=approvals,
        approval_gates_active=list(action.gate_ids),
        must_refuse=list(policy.get("must_refuse", [])),
        must_escalate=list(policy.get("must_escalate", [])),
        redaction_rules_active=list(policy.get("redaction_rules_active", [])),
        policy_bundle_id=policy.get("bundle_id", ""),
        policy_version=policy.get("version", ""),
        policy_sha256=policy.get("sha256", ""),
        rule_ids=list(policy.get("rule_ids", [])),
        estimated_cost_cents=action.proposal.estimated_cost_cents,
        cost_cents=action.cost_cents,
        plan_approval=_plan_of_approval(action, approvals),
        **instance_part(instance, now, action.traceparent),
    )


def _plan_of_approval(action: Action, approvals: list[Approval]) -> Json:
    """A plan approval's own record names the plan it is about (no step: it covers all the
    gated ones); an action approved under it gets its plan_approval from services/plans."""
    if action.proposal.tool != PLAN_TOOL or not action.policy.get("plan_sha256"):
        return {}
    return {
        "action_id": action.action_id,
        "plan_id": action.policy["plan_id"],
        "plan_sha256": action.policy["plan_sha256"],
        "step_id": "",
        "approvers": list(
            dict.fromkeys(a.approver for a in approvals if a.verdict is Verdict.APPROVE)
        ),
    }
