"""States, the transition tables, and what an agent is told about each state."""

from dataclasses import dataclass
from enum import StrEnum

from signoff.domain.errors import IllegalTransition


class InstanceState(StrEnum):
    RUNNING = "RUNNING"
    WAITING_FOR_HUMAN = "WAITING_FOR_HUMAN"
    COMPLETED = "COMPLETED"
    TERMINATED = "TERMINATED"


class ActionState(StrEnum):
    # NEW is the state of an action before it is stored; it is never persisted.
    NEW = "NEW"
    WAITING_FOR_HUMAN = "WAITING_FOR_HUMAN"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"
    EXECUTING = "EXECUTING"
    EXECUTED = "EXECUTED"
    FAILED = "FAILED"


class Outcome(StrEnum):
    APPROVED = "APPROVED"
    WAITING_FOR_HUMAN = "WAITING_FOR_HUMAN"
    REJECTED = "REJECTED"
    TERMINATED = "TERMINATED"


class RiskClass(StrEnum):
    READ_ONLY = "READ_ONLY"
    LOCAL_WRITE = "LOCAL_WRITE"
    NETWORK = "NETWORK"
    DELEGATED = "DELEGATED"
    DESTRUCTIVE = "DESTRUCTIVE"


class Verdict(StrEnum):
    APPROVE = "APPROVE"
    REJECT = "REJECT"


class ExecutionResult(StrEnum):
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class EventType(StrEnum):
    INSTANCE_CREATED = "INSTANCE_CREATED"
    ACTION_REQUESTED = "ACTION_REQUESTED"
    ACTION_DECIDED = "ACTION_DECIDED"
    ACTION_CANCELLED = "ACTION_CANCELLED"
    ACTION_EXECUTION_REPORTED = "ACTION_EXECUTION_REPORTED"
    INSTANCE_COMPLETED = "INSTANCE_COMPLETED"
    INSTANCE_TERMINATED = "INSTANCE_TERMINATED"
    ACTION_VOTED = "ACTION_VOTED"
    ACTION_ESCALATED = "ACTION_ESCALATED"
    ACTION_EXPIRED = "ACTION_EXPIRED"
    ACTION_REMINDER = "ACTION_REMINDER"
    ACTION_EXECUTING = "ACTION_EXECUTING"
    PLAN_CHECKED = "PLAN_CHECKED"
    CHECKPOINT_RECORDED = "CHECKPOINT_RECORDED"
    PLAN_SUBMITTED = "PLAN_SUBMITTED"


class GateState(StrEnum):
    WAITING = "WAITING"
    SATISFIED = "SATISFIED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    ESCALATED = "ESCALATED"
    CLOSED = "CLOSED"


class ApprovalChangeKind(StrEnum):
    REQUESTED = "REQUESTED"
    VOTED = "VOTED"
    DECIDED = "DECIDED"
    EXPIRED = "EXPIRED"
    ESCALATED = "ESCALATED"
    CANCELLED = "CANCELLED"


class DecisionStatus(StrEnum):
    DECIDED = "DECIDED"
    ESCALATED = "ESCALATED"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"


TERMINAL_INSTANCE_STATES = frozenset({InstanceState.COMPLETED, InstanceState.TERMINATED})
TERMINAL_EVENT_TYPES = frozenset({EventType.INSTANCE_COMPLETED, EventType.INSTANCE_TERMINATED})

# The one transition table. Every write path asks it before changing a state.
INSTANCE_TRANSITIONS: dict[InstanceState, frozenset[InstanceState]] = {
    InstanceState.RUNNING: frozenset(
        {InstanceState.WAITING_FOR_HUMAN, InstanceState.COMPLETED, InstanceState.TERMINATED}
    ),
    InstanceState.WAITING_FOR_HUMAN: frozenset({InstanceState.RUNNING, InstanceState.TERMINATED}),
    InstanceState.COMPLETED: frozenset(),
    InstanceState.TERMINATED: frozenset(),
}

ACTION_TRANSITIONS: dict[ActionState, frozenset[ActionState]] = {
    # Policy answers at once (APPROVED, REJECTED) or hands the action to humans.
    ActionState.NEW: frozenset(
        {ActionState.WAITING_FOR_HUMAN, ActionState.APPROVED, ActionState.REJECTED}
    ),
    # Escalation moves a waiting action to its next gate and keeps it waiting.
    ActionState.WAITING_FOR_HUMAN: frozenset(
        {
            ActionState.WAITING_FOR_HUMAN,
            ActionState.APPROVED,
            ActionState.REJECTED,
            ActionState.EXPIRED,
            ActionState.CANCELLED,
        }
    ),
    # Cancelling the instance revokes an approval that has not been acted on.
    # An execution may be reported without a separate grant-consume step.
    ActionState.APPROVED: frozenset(
        {
            ActionState.EXECUTING,
            ActionState.EXECUTED,
            ActionState.FAILED,
            ActionState.CANCELLED,
        }
    ),
    ActionState.EXECUTING: frozenset({ActionState.EXECUTED, ActionState.FAILED}),
    ActionState.REJECTED: frozenset(),
    ActionState.EXPIRED: frozenset(),
    ActionState.CANCELLED: frozenset(),
    ActionState.EXECUTED: frozenset(),
    ActionState.FAILED: frozenset(),
}

# A gate waits for votes until they settle it (SATISFIED, REJECTED), its deadline passes
# (EXPIRED, or ESCALATED to the next gate), or its action settles without it (CLOSED).
GATE_TRANSITIONS: dict[GateState, frozenset[GateState]] = {
    GateState.WAITING: frozenset(
        {
            GateState.SATISFIED,
            GateState.REJECTED,
            GateState.EXPIRED,
            GateState.ESCALATED,
            GateState.CLOSED,
        }
    ),
    GateState.SATISFIED: frozenset(),
    GateState.REJECTED: frozenset(),
    GateState.EXPIRED: frozenset(),
    GateState.ESCALATED: frozenset(),
    GateState.CLOSED: frozenset(),
}

DECIDED_ACTION_STATES = frozenset(
    {
        ActionState.APPROVED,
        ActionState.REJECTED,
        ActionState.EXECUTING,
        ActionState.EXECUTED,
        ActionState.FAILED,
    }
)


def transition_instance(current: InstanceState, target: InstanceState) -> InstanceState:
    if target not in INSTANCE_TRANSITIONS[current]:
        raise IllegalTransition("instance", current, target)
    return target


def transition_action(current: ActionState, target: ActionState) -> ActionState:
    if target not in ACTION_TRANSITIONS[current]:
        raise IllegalTransition("action", current, target)
    return target


def transition_gate(current: GateState, target: GateState) -> GateState:
    if target not in GATE_TRANSITIONS[current]:
        raise IllegalTransition("gate", current, target)
    return target


@dataclass(frozen=True)
class Settlement:
    """How an action that leaves WAITING_FOR_HUMAN (or loses its approval) is written down."""

    event: EventType
    status: DecisionStatus
    # Whether the actor becomes the action's decider, and the instance may stop waiting. A
    # cancel decides nothing: it revokes, and the instance it belongs to ends.
    decides: bool


SETTLEMENTS: dict[ActionState, Settlement] = {
    ActionState.APPROVED: Settlement(EventType.ACTION_DECIDED, DecisionStatus.DECIDED, True),
    ActionState.REJECTED: Settlement(EventType.ACTION_DECIDED, DecisionStatus.DECIDED, True),
    ActionState.EXPIRED: Settlement(EventType.ACTION_EXPIRED, DecisionStatus.EXPIRED, True),
    ActionState.CANCELLED: Settlement(EventType.ACTION_CANCELLED, DecisionStatus.CANCELLED, False),
}


def outcome_of(action: ActionState) -> Outcome:
    """What the agent that proposed an action in this state is told."""
    if action is ActionState.WAITING_FOR_HUMAN:
        return Outcome.WAITING_FOR_HUMAN
    if action in (ActionState.REJECTED, ActionState.EXPIRED):
        return Outcome.REJECTED
    if action is ActionState.CANCELLED:
        return Outcome.TERMINATED
    if action is ActionState.NEW:
        raise ValueError("an action that was never stored has no outcome")
    return Outcome.APPROVED
