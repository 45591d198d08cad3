"""What signoff stores and reasons about. Plain data: no I/O, no protobuf."""

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from enum import Enum, StrEnum
from typing import Any, get_type_hints

from signoff.domain.budget import BudgetReport, cents, charge
from signoff.domain.canonical import sha256_of
from signoff.domain.states import (
    ActionState,
    ApprovalChangeKind,
    DecisionStatus,
    EventType,
    GateState,
    InstanceState,
    Outcome,
    RiskClass,
    Verdict,
    transition_action,
    transition_gate,
)

# JSON-shaped data, as exchanged with clients (protobuf JSON names).
Json = dict[str, Any]


@dataclass
class Instance:
    instance_id: str
    tenant_id: str
    request_id: str
    # The InvokeAgent envelope as JSON (request_id, session_id, user, agent, input …).
    envelope: Json
    envelope_sha256: str
    state: InstanceState
    revision: int
    tool_calls_used: int
    create_time: datetime
    update_time: datetime
    # The authenticated principal that created the instance (the agent, for duties).
    created_by: str = ""
    # The hash of the newest event: what the next event's prev_hash names.
    chain_head: str = ""
    # The W3C traceparent of the InvokeAgent call ("" when the agent sent none).
    traceparent: str = ""
    # What the instance's actions hold against runtime.max_cost_cents (domain/budget.py).
    cost_spent_cents: float = 0.0
    cost_reserved_cents: float = 0.0
    # What InvokeAgent compiled for the instance's intent (policy/manifest.py); {} when the
    # bundle declares nothing for it.
    compiled_context: Json = field(default_factory=dict)

    def budget(self) -> BudgetReport:
        runtime = self.envelope.get("runtime", {})
        return BudgetReport(
            tool_calls_used=self.tool_calls_used,
            max_tool_calls=int(runtime.get("max_tool_calls", 0) or 0),
            cost_spent_cents=self.cost_spent_cents,
            cost_reserved_cents=self.cost_reserved_cents,
            max_cost_cents=float(runtime.get("max_cost_cents", 0) or 0),
        )

    def move_charge(self, before: tuple[float, float], after: tuple[float, float]) -> None:
        """Moves the cost totals by what one action holds before and after a change."""
        self.cost_spent_cents = cents(self.cost_spent_cents - before[0] + after[0])
        self.cost_reserved_cents = cents(self.cost_reserved_cents - before[1] + after[1])


@dataclass(frozen=True)
class ProposedAction:
    tool_call_id: str
    tool: str
    params: Json
    risk_class: RiskClass
    evidence_refs: tuple[str, ...] = ()
    estimated_cost_cents: float = 0.0

    def canonical(self) -> Json:
        """What the action's hash covers: what would run, on what evidence, and (when
        the agent gave one) at what expected cost; actions without one keep their hashes."""
        body: Json = {
            "tool": self.tool,
            "params": self.params,
            "risk_class": self.risk_class.value,
            "evidence_refs": list(self.evidence_refs),
        }
        if self.estimated_cost_cents:
            body["estimated_cost_cents"] = self.estimated_cost_cents
        return body

    def sha256(self) -> str:
        return sha256_of(self.canonical())

    def as_json(self) -> Json:
        """Every field: as policy sees the action, and as its state is sealed."""
        return {
            "tool_call_id": self.tool_call_id,
            "tool": self.tool,
            "params": self.params,
            "risk_class": self.risk_class.value,
            "evidence_refs": list(self.evidence_refs),
            "estimated_cost_cents": self.estimated_cost_cents,
        }


@dataclass
class GateStatus:
    """One gate of one action: its votes so far and its deadline."""

    gate_id: str
    state: GateState
    quorum: int
    rejections_to_settle: int
    opened: datetime
    deadline: datetime
    approvals: int = 0
    rejections: int = 0
    next_reminder: datetime | None = None
    reminders_sent: int = 0
    escalated_from: str = ""

    def move(self, target: GateState) -> None:
        """Moves the gate to target by the gate transition table."""
        self.state = transition_gate(self.state, target)

    def as_json(self) -> Json:
        """As stored with its action, and as its state is sealed in the chain: every field,
        an enum as its value, a time in ISO 8601."""
        # Field by field: dataclasses.asdict deep-copies, at ten times the cost.
        return {name: _to_json(getattr(self, name)) for name in _GATE_FIELDS}

    @classmethod
    def from_json(cls, body: Json) -> "GateStatus":
        """The gate as as_json stored it (a field it did not store yet keeps its default)."""
        return cls(**{key: _GATE_READERS.get(key, _same)(value) for key, value in body.items()})


def _to_json(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _same(value: Any) -> Any:
    return value


def _time_or_none(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


_GATE_FIELDS = tuple(f.name for f in fields(GateStatus))
# What turns a stored value back into the field's type: by the field's annotation.
_GATE_READERS: dict[str, Callable[[Any], Any]] = {
    f.name: (
        GateState
        if hint is GateState
        else _time_or_none
        if hint in (datetime, datetime | None)
        else _same
    )
    for f in fields(GateStatus)
    for hint in [get_type_hints(GateStatus)[f.name]]
}


@dataclass
class Action:
    action_id: str
    instance_id: str
    tenant_id: str
    proposal: ProposedAction
    action_sha256: str
    state: ActionState
    gate_ids: list[str]
    decided_by: str
    decision_reason: str
    create_time: datetime
    decide_time: datetime | None
    # What policy said when the action was proposed: bundle, rule ids, reasons, decision key.
    policy: Json = field(default_factory=dict)
    execution_evidence_ref: str = ""
    gates: list[GateStatus] = field(default_factory=list)
    # The hash of what the agent proposed; action_sha256 moves on when an approver edits.
    proposed_sha256: str = ""
    # The single-use grant of an approved action: the sha256 of its current token (the
    # token itself is never stored) and when the approval stops being usable.
    grant_sha256: str = ""
    grant_expires: datetime | None = None
    # The W3C traceparent of the RequestDecision call: the human wait joins this trace.
    traceparent: str = ""
    # The revision of the event that last changed the action: the event seals its state
    # (domain/chain.py). 0 until the action is first stored.
    event_revision: int = 0
    # What the execution cost, once reported (None until then).
    cost_cents: float | None = None

    def waiting_gates(self) -> list[GateStatus]:
        return [g for g in self.gates if g.state is GateState.WAITING]

    def charge(self) -> tuple[float, float]:
        return charge(self.state, self.proposal.estimated_cost_cents, self.cost_cents)

    def move(
        self, instance: Instance, target: ActionState, *, cost_cents: float | None = None
    ) -> ActionState:
        """Moves the action to target by the transition table (reporting cost_cents, if
        given), and its instance's cost totals with it. Returns the previous state."""
        previous, before = self.state, self.charge()
        self.state = transition_action(previous, target)
        if cost_cents is not None:
            self.cost_cents = cost_cents
        instance.move_charge(before, self.charge())
        return previous

    def close_gates(self, timed_out: str = "") -> None:
        """Closes every gate still waiting; the gate that timed out, if one did, EXPIRED."""
        for status in self.waiting_gates():
            status.move(GateState.EXPIRED if status.gate_id == timed_out else GateState.CLOSED)

    def settle(
        self,
        instance: Instance,
        target: ActionState,
        now: datetime,
        *,
        decided_by: str | None,
        reason: str,
        timed_out: str = "",
        grant_ttl: timedelta | None = None,
    ) -> ActionState:
        """Ends the action's wait at target (or revokes its approval): the decider (None
        keeps what the action has), why and when, the waiting gates closed, and an approval's
        grant clock started (it runs from the decision). Returns the previous state."""
        previous = self.move(instance, target)
        if decided_by is not None:
            self.decided_by = decided_by
            self.decision_reason = reason
            self.decide_time = now
        if target is ActionState.APPROVED:
            assert grant_ttl is not None, "an approval carries a grant"
            self.grant_expires = now + grant_ttl
        self.close_gates(timed_out)
        return previous


@dataclass(frozen=True)
class Event:
    instance_id: str
    tenant_id: str
    revision: int
    type: EventType
    time: datetime
    instance_state: InstanceState
    action_id: str = ""
    action_state: ActionState | None = None
    outcome: Outcome | None = None
    actor: str = ""
    reason: str = ""
    record_id: str = ""
    tool: str = ""
    gate_id: str = ""
    # The policy's controls, on ACTION_REQUESTED events.
    controls: Json = field(default_factory=dict)
    # The hash chain (see domain/chain.py).
    record_sha256: str = ""
    prev_hash: str = ""
    hash: str = ""
    # The trace this event belongs to: the action's, else the instance's ("" when none).
    trace_id: str = ""
    # The sha256 of the instance's and of the action's current state after this event
    # (domain/chain.py: instance_fields, action_fields); "" on events written before.
    instance_seal: str = ""
    action_seal: str = ""
    # The instance's budget after the event (BudgetReport.as_json); None on events
    # written before budgets were reported.
    budget: Json | None = None
    # The plan a PLAN_CHECKED event judged.
    plan_sha256: str = ""


@dataclass(frozen=True)
class ApprovalChange:
    """One change to a waiting approval, in a tenant's feed (WatchApprovals)."""

    tenant_id: str
    cursor: int
    kind: ApprovalChangeKind
    action_id: str
    instance_id: str
    revision: int
    action_state: ActionState
    tool: str
    gate_id: str
    actor: str
    time: datetime


@dataclass(frozen=True)
class Bookmark:
    revision: int
    time: datetime


@dataclass(frozen=True)
class Vote:
    action_id: str
    tenant_id: str  # the action's: a request_id is unique within its tenant
    approver: str
    verdict: Verdict
    reason: str
    request_id: str
    request_sha256: str
    time: datetime
    # The gates this vote counted for, what the approver saw, and what they changed.
    gate_ids: tuple[str, ...] = ()
    evidence_snapshot_hash: str = ""
    params_diff: Json = field(default_factory=dict)


@dataclass(frozen=True)
class Approval:
    gate_id: str
    approver: str
    approval_mode_effective: str
    evidence_snapshot_hash: str
    verdict: Verdict
    reason: str
    time: datetime
    params_diff: Json = field(default_factory=dict)


@dataclass
class DecisionRecord:
    record_id: str
    decision_key: str
    status: DecisionStatus
    # What the agent was told; None for a decision checkpoint's record (no action).
    outcome: Outcome | None
    tenant_id: str
    instance_id: str
    action_id: str
    tool: str
    action_sha256: str
    revision: int
    create_time: datetime
    evidence_refs: list[str]
    approvals: list[Approval] = field(default_factory=list)
    approval_gates_active: list[str] = field(default_factory=list)
    must_refuse: list[str] = field(default_factory=list)
    must_escalate: list[str] = field(default_factory=list)
    redaction_rules_active: list[str] = field(default_factory=list)
    policy_bundle_id: str = ""
    policy_version: str = ""
    policy_sha256: str = ""
    rule_ids: list[str] = field(default_factory=list)
    trace_id: str = ""
    outputs: Json = field(default_factory=dict)
    execution_state: ActionState | None = None
    estimated_cost_cents: float = 0.0
    cost_cents: float | None = None
    # The instance's budget once the decision took effect (BudgetReport.as_json).
    budget: Json = field(default_factory=dict)
    # The sha256 of the instance's compiled context ("" when it had none).
    compiled_context_sha256: str = ""
    # A decision checkpoint's outcome as the agent recorded it (RecordCheckpoint), for
    # example "eligible"; "" for the record of an action. A checkpoint's record has no
    # action: action_id, tool and action_sha256 are "".
    checkpoint_outcome: str = ""
    # Set when the action was approved under a plan approval (SubmitPlan): {"action_id",
    # "plan_id", "plan_sha256", "step_id", "approvers"}; {} otherwise.
    plan_approval: Json = field(default_factory=dict)


class PrincipalKind(StrEnum):
    AGENT = "agent"
    HUMAN = "human"
    SERVICE = "service"


ALL_TENANTS = "*"


@dataclass(frozen=True)
class Principal:
    """Who calls, as the credentials say: never taken from a request body."""

    id: str
    kind: PrincipalKind
    # The one tenant the principal acts in, or "*" for a platform-wide principal.
    tenant: str
    roles: frozenset[str] = frozenset()

    def sees(self, tenant: str) -> bool:
        return self.tenant in (ALL_TENANTS, tenant)

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles
