"""Gates at decision time: who may decide an action, how votes count toward a quorum, and
what they settle. Pure."""

from collections.abc import Iterable
from typing import Any, Protocol

from signoff.domain.models import Action, GateStatus, Instance, Principal
from signoff.domain.states import ActionState, GateState, Verdict

# Where an instance names who asked for its work (its parties): the principal that created
# it, and the envelope's user and agent. A path is an Instance field, then keys inside it.
# The pending-approvals query filters by the same paths (store/repository.py).
PARTY_PATHS: tuple[tuple[str, ...], ...] = (
    ("created_by",),
    ("envelope", "user", "user_id"),
    ("envelope", "agent", "agent_id"),
)


def parties_of(instance: Instance) -> frozenset[str]:
    """The instance's parties (PARTY_PATHS): separation of duties bars each of them from
    deciding its actions."""
    found: list[Any] = []
    for field, *keys in PARTY_PATHS:
        value: Any = getattr(instance, field)
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        found.append(value)
    return frozenset(who for who in found if who)


class GateRule(Protocol):
    """A gate as the policy bundle defines it: whom it admits (policy.gates.Gate)."""

    @property
    def gate_id(self) -> str: ...

    def admits(self, principal_id: str, roles: frozenset[str]) -> bool: ...


def barred_by_duties(principal: Principal, parties: frozenset[str]) -> bool:
    """Separation of duties: nobody decides the actions of an instance they asked for."""
    return principal.id in parties


def admitting(principal: Principal, gates: Iterable[GateRule | None]) -> list[str]:
    """The ids of the gates that admit the principal (by id or by one of its roles). A gate
    the bundle no longer defines (None) admits nobody: fail closed."""
    return [g.gate_id for g in gates if g is not None and g.admits(principal.id, principal.roles)]


def may_decide(
    principal: Principal, parties: frozenset[str], gates: Iterable[GateRule | None]
) -> bool:
    """Whether `principal` may vote on a waiting action: it is not one of the action's
    instance's `parties` (parties_of), and one of the gates the action still waits on
    (`gates`, their definitions; None for one the bundle no longer defines) admits it.

    `principal.roles` must hold every role it has, the bundle's included (services/gating:
    decider). This is the one rule for every way of deciding (SubmitDecision, the pending
    list, the console, chat callbacks): ask it rather than re-checking ids or roles."""
    return not barred_by_duties(principal, parties) and bool(admitting(principal, gates))


# Gates that no longer take part in the decision.
_RETIRED = frozenset({GateState.CLOSED, GateState.ESCALATED})


def count_vote(gates: list[GateStatus], verdict: Verdict) -> None:
    """Counts one approver's vote on each waiting gate of `gates` (those it is eligible for):
    an approval toward the gate's quorum, a rejection toward its rejections_to_settle."""
    for status in gates:
        if status.state is not GateState.WAITING:
            continue  # settled or retired already: a vote no longer moves it
        if verdict is Verdict.APPROVE:
            status.approvals += 1
            if status.approvals >= status.quorum:
                status.move(GateState.SATISFIED)
        else:
            status.rejections += 1
            if status.rejections >= status.rejections_to_settle:
                status.move(GateState.REJECTED)


def settled_state(action: Action) -> ActionState | None:
    """APPROVED when every gate in play is satisfied, REJECTED when one rejected, else None."""
    active = [g for g in action.gates if g.state not in _RETIRED]
    if any(g.state is GateState.REJECTED for g in active):
        return ActionState.REJECTED
    if active and all(g.state is GateState.SATISFIED for g in active):
        return ActionState.APPROVED
    return None
