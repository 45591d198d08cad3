"""Composing the audit trail: the next event of an instance (its revision, its place in the
hash chain, the seals of what it changed) and the approval-feed change it makes. Pure: the
repository writes what these return."""

from dataclasses import replace
from datetime import datetime

from signoff.domain.chain import event_body, event_hash, instance_fields, seal
from signoff.domain.models import Action, ApprovalChange, Event, Instance, Json
from signoff.domain.states import ApprovalChangeKind, EventType, outcome_of

_APPROVAL_KINDS = {
    EventType.ACTION_VOTED: ApprovalChangeKind.VOTED,
    EventType.ACTION_DECIDED: ApprovalChangeKind.DECIDED,
    EventType.ACTION_EXPIRED: ApprovalChangeKind.EXPIRED,
    EventType.ACTION_ESCALATED: ApprovalChangeKind.ESCALATED,
}

# The changes that end a wait for humans.
WAIT_ENDS = frozenset(
    {ApprovalChangeKind.DECIDED, ApprovalChangeKind.EXPIRED, ApprovalChangeKind.CANCELLED}
)


def next_event(
    instance: Instance,
    type: EventType,
    now: datetime,
    *,
    action: Action | None,
    actor: str,
    reason: str,
    record_id: str,
    record_sha256: str,
    gate_id: str,
    controls: Json | None,
    action_seal: str,
    trace_id: str,
    plan_sha256: str = "",
) -> tuple[Event, Json]:
    """The instance's next event, chained to its newest one, and the instance fields it
    seals. Advances the instance (revision, update time, chain head) to match.
    `record_sha256` is the hash of the record the event writes or changes, `action_seal`
    the seal of what was written for `action` (chain.action_fields), and `trace_id` the
    trace the event belongs to (the action's, else the instance's)."""
    instance.revision += 1
    instance.update_time = now
    sealed = instance_fields(instance)
    unhashed = Event(
        instance_id=instance.instance_id,
        tenant_id=instance.tenant_id,
        revision=instance.revision,
        type=type,
        time=now,
        instance_state=instance.state,
        action_id=action.action_id if action else "",
        action_state=action.state if action else None,
        outcome=outcome_of(action.state) if action else None,
        actor=actor,
        reason=reason,
        record_id=record_id,
        record_sha256=record_sha256,
        tool=action.proposal.tool if action else "",
        gate_id=gate_id,
        controls=controls or {},
        prev_hash=instance.chain_head,
        trace_id=trace_id,
        instance_seal=seal(sealed),
        action_seal=action_seal,
        budget=instance.budget().as_json(),
        plan_sha256=plan_sha256,
    )
    event = replace(unhashed, hash=event_hash(event_body(unhashed)))
    instance.chain_head = event.hash
    return event, sealed


def approval_kind(event: Event, action: Action | None) -> ApprovalChangeKind | None:
    """Which events are changes to a waiting approval (for the tenant's feed)."""
    if action is None or not action.gates:
        return None  # never waited for a human
    if event.type is EventType.ACTION_REQUESTED:
        return ApprovalChangeKind.REQUESTED
    if event.type is EventType.ACTION_CANCELLED and action.decide_time is None:
        return ApprovalChangeKind.CANCELLED  # cancelled while it waited
    return _APPROVAL_KINDS.get(event.type)


def approval_change(
    event: Event, action: Action, kind: ApprovalChangeKind, cursor: int
) -> ApprovalChange:
    """The feed's row for an event about a waiting approval, at the tenant's next cursor."""
    return ApprovalChange(
        tenant_id=event.tenant_id,
        cursor=cursor,
        kind=kind,
        action_id=action.action_id,
        instance_id=event.instance_id,
        revision=event.revision,
        action_state=action.state,
        tool=action.proposal.tool,
        gate_id=event.gate_id,
        actor=event.actor,
        time=event.time,
    )
