"""Gates at run time: opening them, counting votes, and what the votes settle. Pure."""

from datetime import datetime

from signoff.domain.models import Action, GateStatus
from signoff.domain.states import ActionState, GateState, Verdict
from signoff.policy import Policy
from signoff.policy.gates import Gate

# Gates that no longer take part in the decision.
_RETIRED = frozenset({GateState.CLOSED, GateState.ESCALATED})


def admits(policy: Policy, gate_id: str, principal_id: str, roles: frozenset[str]) -> bool:
    """Whether the gate admits the approver; a gate the bundle no longer defines admits
    nobody (fail closed), and its timer expires the action."""
    gate = policy.find_gate(gate_id)
    return gate is not None and gate.admits(principal_id, roles)


def open_gate(gate: Gate, now: datetime, escalated_from: str = "") -> GateStatus:
    return GateStatus(
        gate_id=gate.gate_id,
        state=GateState.WAITING,
        quorum=gate.quorum,
        rejections_to_settle=gate.rejections_to_settle,
        opened=now,
        deadline=now + gate.ttl,
        next_reminder=now + gate.reminders[0] if gate.reminders else None,
        escalated_from=escalated_from,
    )


def count_vote(gates: list[GateStatus], verdict: Verdict) -> None:
    """Counts one approver's vote on each gate it is eligible for (the given gates)."""
    for status in gates:
        if verdict is Verdict.APPROVE:
            status.approvals += 1
            if status.approvals >= status.quorum:
                status.state = GateState.SATISFIED
        else:
            status.rejections += 1
            if status.rejections >= status.rejections_to_settle:
                status.state = GateState.REJECTED


def settled_state(action: Action) -> ActionState | None:
    """APPROVED when every gate in play is satisfied, REJECTED when one rejected, else None."""
    active = [g for g in action.gates if g.state not in _RETIRED]
    if any(g.state is GateState.REJECTED for g in active):
        return ActionState.REJECTED
    if active and all(g.state is GateState.SATISFIED for g in active):
        return ActionState.APPROVED
    return None


def close_waiting(action: Action) -> None:
    for status in action.waiting_gates():
        status.state = GateState.CLOSED


def params_diff(before: dict[str, object], after: dict[str, object]) -> dict[str, object]:
    """{"param": {"from": old, "to": new}} for every top-level param that changed."""
    keys = sorted(set(before) | set(after))
    return {
        key: {"from": before.get(key), "to": after.get(key)}
        for key in keys
        if before.get(key) != after.get(key)
    }
