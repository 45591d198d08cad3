"""What policy sees of a proposed action, and its evaluation: the one way RequestDecision,
SubmitPlan, an approver's edit and EvaluatePolicy ask policy."""

from typing import Any

from signoff.domain.models import Instance, Principal, ProposedAction
from signoff.policy import PolicyDecision
from signoff.services.context import Context
from signoff.telemetry import tracing


def evaluation_input(
    instance: Instance, proposal: ProposedAction, who: Principal
) -> dict[str, Any]:
    """What a bundle's rules see: the envelope, the action, and the authenticated caller."""
    return {
        "envelope": instance.envelope,
        "action": proposal.as_json(),
        "principal": {
            "id": who.id,
            "kind": who.kind.value,
            "tenant": who.tenant,
            "roles": sorted(who.roles),
        },
        "instance": instance.budget().policy_input(),
    }


def evaluate_policy(
    ctx: Context, instance: Instance, proposal: ProposedAction, who: Principal
) -> PolicyDecision:
    """What policy says about the proposal (in a span of its own when tracing is on)."""
    with tracing.span("signoff policy evaluate", **{"signoff.action.tool": proposal.tool}) as span:
        decision = ctx.policy.evaluate(evaluation_input(instance, proposal, who))
        if span.is_recording():
            span.set_attributes(
                {
                    "signoff.policy.bundle_id": decision.bundle.bundle_id,
                    "signoff.policy.version": decision.bundle.version,
                    "signoff.policy.effect": decision.effect.value,
                    "signoff.policy.rule_ids": decision.rule_ids,
                    "signoff.policy.gate_ids": decision.gate_ids,
                }
            )
    return decision
