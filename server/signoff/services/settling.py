"""Settling an action: the one way a waiting action is decided, expires or is cancelled (and
an approval revoked), whoever does it (an approver's vote, a timer, a cancel)."""

from datetime import datetime, timedelta
from functools import partial

from signoff.domain.models import Action, DecisionRecord, Instance, Vote
from signoff.domain.states import (
    SETTLEMENTS,
    ActionState,
    InstanceState,
    transition_instance,
)
from signoff.services.records import approvals_of, record_for
from signoff.store.unit import Repository
from signoff.telemetry import metrics


async def settle(
    tx: Repository,
    instance: Instance,
    action: Action,
    target: ActionState,
    now: datetime,
    *,
    actor: str,
    reason: str,
    votes: list[Vote] | None = None,
    timed_out: str = "",
    grant_ttl: timedelta | None = None,
) -> DecisionRecord:
    """Moves the action to target (domain: Action.settle), writes it, its DecisionRecord
    and its event (SETTLEMENTS says which), counts the decision, and lets the instance stop
    waiting once nothing else waits. `votes` are the action's votes (read when not given);
    `timed_out` names the gate whose deadline passed. The caller saves the instance."""
    how = SETTLEMENTS[target]
    previous = action.settle(
        instance,
        target,
        now,
        decided_by=actor if how.decides else None,
        reason=reason,
        timed_out=timed_out,
        grant_ttl=grant_ttl,
    )
    await tx.save_action(action, expected_state=previous)
    if previous is ActionState.APPROVED:
        # A revoked approval stands in its record; the record now also says it was revoked.
        record = await tx.get_record_for_action(action.action_id)
        assert record is not None, "every approval is written with its record"
        record.execution_state = target
        await tx.attach_execution(record)
    else:
        if votes is None:
            votes = await tx.votes_for(action.action_id)
        record = record_for(
            action, instance, how.status, now, approvals=approvals_of(action, votes)
        )
        await tx.insert_record(record)
    if how.decides:
        tx.after_commit.append(
            partial(metrics.record_decision, action.state, action.create_time, now)
        )
        await leave_waiting_if_idle(tx, instance)
    await tx.append_event(
        instance,
        how.event,
        now,
        action=action,
        actor=actor,
        reason=reason,
        record=record,
        gate_id=timed_out,
    )
    return record


async def leave_waiting_if_idle(tx: Repository, instance: Instance) -> None:
    """WAITING_FOR_HUMAN → RUNNING once no action of the instance waits any more."""
    waiting = await tx.waiting_actions(instance.instance_id)
    if not waiting and instance.state is InstanceState.WAITING_FOR_HUMAN:
        instance.state = transition_instance(instance.state, InstanceState.RUNNING)
