"""Gates at run time, as the loaded policy bundle defines them: opening them, and asking
domain/gates.py (who may decide, how votes count) with the bundle's gates and roles."""

from dataclasses import replace
from datetime import datetime

from signoff.domain import gates
from signoff.domain.gates import GateRule
from signoff.domain.models import Action, GateStatus, Principal
from signoff.domain.states import GateState
from signoff.policy import Policy
from signoff.policy.gates import Gate


def decider(policy: Policy, who: Principal) -> Principal:
    """The caller with the roles the bundle gives it besides those its credentials carry:
    what domain.gates.may_decide is asked about."""
    extra = policy.roles_of(who.id)
    return replace(who, roles=who.roles | extra) if extra - who.roles else who


def waiting_rules(policy: Policy, action: Action) -> list[GateRule | None]:
    """The definitions of the gates the action still waits on (None: no longer defined)."""
    return [policy.find_gate(g.gate_id) for g in action.waiting_gates()]


def may_decide(policy: Policy, who: Principal, parties: frozenset[str], action: Action) -> bool:
    """domain.gates.may_decide for the authenticated caller on a stored action, with the
    loaded bundle's gates and roles."""
    return gates.may_decide(decider(policy, who), parties, waiting_rules(policy, action))


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


def params_diff(before: dict[str, object], after: dict[str, object]) -> dict[str, object]:
    """{"param": {"from": old, "to": new}} for every top-level param that changed."""
    keys = sorted(set(before) | set(after))
    return {
        key: {"from": before.get(key), "to": after.get(key)}
        for key in keys
        if before.get(key) != after.get(key)
    }
