"""Asking before acting, deciding, and reporting what was done."""

from dataclasses import dataclass

from signoff.domain.canonical import sha256_of
from signoff.domain.errors import (
    AlreadyDecided,
    FailedPrecondition,
    IdempotencyKeyReused,
    NotFound,
)
from signoff.domain.ids import new_id
from signoff.domain.models import (
    Action,
    Approval,
    DecisionRecord,
    Instance,
    Json,
    ProposedAction,
    Vote,
)
from signoff.domain.states import (
    DECIDED_ACTION_STATES,
    ActionState,
    DecisionStatus,
    EventType,
    ExecutionResult,
    InstanceState,
    Outcome,
    Verdict,
    outcome_of,
    transition_action,
    transition_instance,
)
from signoff.policy import Effect
from signoff.services import pagination
from signoff.services.context import Context, once_more_on_key_conflict
from signoff.services.instances import locked_instance
from signoff.services.records import record_for
from signoff.store.repository import Tx

_STATE_FOR_EFFECT = {
    Effect.ALLOW: ActionState.APPROVED,
    Effect.REQUIRE_APPROVAL: ActionState.WAITING_FOR_HUMAN,
    Effect.DENY: ActionState.REJECTED,
}


@dataclass(frozen=True)
class DecisionAnswer:
    outcome: Outcome
    reason: str
    # The instance revision after the call: watch from here to learn what comes next.
    revision: int
    action: Action | None


async def request_decision(
    ctx: Context, instance_id: str, proposal: ProposedAction
) -> DecisionAnswer:
    digest = proposal.sha256()
    async with ctx.db.write() as tx:
        instance = await locked_instance(tx, instance_id)
        existing = await tx.find_action(instance_id, proposal.tool_call_id)
        if existing is not None:
            if existing.action_sha256 != digest:
                raise IdempotencyKeyReused("action.tool_call_id", "action")
            # A repeat (say, after the agent restarted): tell it where the action stands now.
            return DecisionAnswer(
                outcome_of(existing.state), existing.decision_reason, instance.revision, existing
            )
        if instance.state is InstanceState.TERMINATED:
            return DecisionAnswer(
                Outcome.TERMINATED, "the instance is terminated", instance.revision, None
            )
        if instance.state is InstanceState.COMPLETED:
            raise FailedPrecondition(
                "INSTANCE_COMPLETED",
                f"instance {instance_id} is completed; start a new instance for new work",
            )

        decision = ctx.policy.evaluate(instance, proposal)
        now = ctx.clock()
        state = transition_action(ActionState.NEW, _STATE_FOR_EFFECT[decision.effect])
        waits = state is ActionState.WAITING_FOR_HUMAN
        action = Action(
            action_id=new_id("act"),
            instance_id=instance_id,
            tenant_id=instance.tenant_id,
            proposal=proposal,
            action_sha256=digest,
            state=state,
            gate_ids=list(decision.gate_ids),
            decided_by="" if waits else "policy",
            decision_reason="; ".join(decision.reasons),
            create_time=now,
            decide_time=None if waits else now,
            policy={
                "bundle_id": decision.bundle_id,
                "version": decision.bundle_version,
                "sha256": decision.bundle_sha256,
                "rule_ids": decision.rule_ids,
                "decision_key": decision.decision_key,
            },
        )
        await tx.insert_action(action)
        instance.tool_calls_used += 1
        if waits and instance.state is InstanceState.RUNNING:
            instance.state = transition_instance(instance.state, InstanceState.WAITING_FOR_HUMAN)
        record_id = ""
        if not waits:
            record = record_for(action, DecisionStatus.DECIDED, instance.revision + 1, now)
            await tx.insert_record(record)
            record_id = record.record_id
        await tx.append_event(
            instance,
            EventType.ACTION_REQUESTED,
            now,
            action=action,
            actor="policy",
            reason=action.decision_reason,
            record_id=record_id,
        )
        await tx.save_instance(instance)
        return DecisionAnswer(outcome_of(state), action.decision_reason, instance.revision, action)


def _winning_verdict(action: Action) -> Verdict:
    return Verdict.REJECT if action.state is ActionState.REJECTED else Verdict.APPROVE


async def _locked_action(tx: Tx, action_id: str) -> tuple[Action, Instance]:
    """The action and its instance, read under the instance lock, so a concurrent
    decision that committed first is seen."""
    found = await tx.get_action(action_id)
    if found is None:
        raise NotFound("action", action_id)
    instance = await locked_instance(tx, found.instance_id)
    action = await tx.get_action(action_id)
    assert action is not None, "actions are never deleted"
    return action, instance


async def submit_decision(
    ctx: Context,
    action_id: str,
    verdict: Verdict,
    reason: str,
    approver: str,
    request_id: str,
) -> tuple[Action, DecisionRecord]:
    request_digest = sha256_of(
        {"action_id": action_id, "verdict": verdict.value, "reason": reason, "approver": approver}
    )

    async def decide() -> tuple[Action, DecisionRecord]:
        async with ctx.db.write() as tx:
            action, instance = await _locked_action(tx, action_id)
            # Under the lock, so a retry racing its own first attempt still gets its answer.
            prior = await tx.find_vote_by_request(request_id)
            if prior is not None:
                if prior.request_sha256 != request_digest:
                    raise IdempotencyKeyReused("request_id", "decision")
                return action, await _record_of(tx, action_id)
            if action.state in DECIDED_ACTION_STATES:
                raise AlreadyDecided(
                    action_id, action.state.value, _winning_verdict(action).value, action.decided_by
                )
            if action.state is not ActionState.WAITING_FOR_HUMAN:
                raise FailedPrecondition(
                    "ACTION_NOT_WAITING",
                    f"action {action_id} is {action.state.value}; only a waiting action can be "
                    "decided",
                    metadata={"action_id": action_id, "state": action.state.value},
                )

            now = ctx.clock()
            previous = action.state
            target = ActionState.APPROVED if verdict is Verdict.APPROVE else ActionState.REJECTED
            action.state = transition_action(previous, target)
            action.decided_by = approver
            action.decision_reason = reason
            action.decide_time = now
            await tx.save_action(action, expected_state=previous)
            await tx.insert_vote(
                Vote(action_id, approver, verdict, reason, request_id, request_digest, now)
            )
            still_waiting = await tx.actions_in_states(
                instance.instance_id, {ActionState.WAITING_FOR_HUMAN}
            )
            if not still_waiting and instance.state is InstanceState.WAITING_FOR_HUMAN:
                instance.state = transition_instance(instance.state, InstanceState.RUNNING)
            approvals = [
                Approval(
                    gate_id=gate_id,
                    approver=approver,
                    approval_mode_effective=action.proposal.risk_class.value.lower(),
                    evidence_snapshot_hash=action.action_sha256,
                    verdict=verdict,
                    reason=reason,
                    time=now,
                )
                for gate_id in action.gate_ids
            ]
            record = record_for(
                action, DecisionStatus.DECIDED, instance.revision + 1, now, approvals=approvals
            )
            await tx.insert_record(record)
            await tx.append_event(
                instance,
                EventType.ACTION_DECIDED,
                now,
                action=action,
                actor=approver,
                reason=reason,
                record_id=record.record_id,
            )
            await tx.save_instance(instance)
            return action, record

    # Two requests racing with one request_id on different actions: the second finds the first.
    return await once_more_on_key_conflict(decide)


async def _record_of(tx: Tx, action_id: str) -> DecisionRecord:
    record = await tx.get_record_for_action(action_id)
    assert record is not None, "a vote is always written with its record"
    return record


async def report_execution(
    ctx: Context,
    action_id: str,
    result: ExecutionResult,
    evidence_ref: str,
    outputs: Json,
    error_message: str,
) -> Action:
    target = ActionState.EXECUTED if result is ExecutionResult.SUCCEEDED else ActionState.FAILED
    async with ctx.db.write() as tx:
        action, instance = await _locked_action(tx, action_id)
        if action.state is target and action.execution_evidence_ref == evidence_ref:
            return action  # a repeated report
        if action.state not in (ActionState.APPROVED, ActionState.EXECUTING):
            raise FailedPrecondition(
                "ACTION_NOT_APPROVED",
                f"action {action_id} is {action.state.value}; only an approved action can be "
                "reported as executed",
                metadata={"action_id": action_id, "state": action.state.value},
            )
        if instance.state not in (InstanceState.RUNNING, InstanceState.WAITING_FOR_HUMAN):
            raise FailedPrecondition(
                "INSTANCE_NOT_ACTIVE",
                f"instance {instance.instance_id} is {instance.state.value}",
            )
        now = ctx.clock()
        previous = action.state
        action.state = transition_action(previous, target)
        action.execution_evidence_ref = evidence_ref
        await tx.save_action(action, expected_state=previous)
        record = await tx.get_record_for_action(action_id)
        record_id = ""
        if record is not None:
            record.outputs = outputs
            if evidence_ref:
                record.evidence_refs.append(evidence_ref)
            record.execution_state = target
            await tx.attach_execution(record)
            record_id = record.record_id
        await tx.append_event(
            instance,
            EventType.ACTION_EXECUTION_REPORTED,
            now,
            action=action,
            actor="agent",
            reason=error_message,
            record_id=record_id,
        )
        await tx.save_instance(instance)
        return action


async def list_pending(
    ctx: Context, tenant_id: str, size: int, token: str
) -> tuple[list[Action], str]:
    limit = pagination.page_size(size, 50)
    async with ctx.db.read() as tx:
        rows = await tx.list_waiting_actions(tenant_id, pagination.decode(token), limit + 1)
    page = rows[:limit]
    next_token = pagination.encode(page[-1][0]) if len(rows) > limit else ""
    return [action for _, action in page], next_token
