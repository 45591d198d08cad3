"""Asking before acting, voting, and reporting what was done."""

from dataclasses import dataclass, replace
from datetime import datetime

from signoff.domain.canonical import sha256_of
from signoff.domain.errors import (
    AlreadyDecided,
    ErrorReason,
    FailedPrecondition,
    FieldViolation,
    IdempotencyKeyReused,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from signoff.domain.gates import (
    admitting,
    barred_by_duties,
    count_vote,
    parties_of,
    settled_state,
)
from signoff.domain.ids import new_id
from signoff.domain.models import (
    Action,
    DecisionRecord,
    Instance,
    Json,
    Principal,
    ProposedAction,
    Vote,
)
from signoff.domain.plans import PLAN_TOOL
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
    transition_instance,
)
from signoff.policy import Effect, PolicyDecision
from signoff.policy.manifest import CompiledContext
from signoff.services import grants, pagination, plans
from signoff.services.context import Context, once_more_on_key_conflict
from signoff.services.evaluation import evaluate_policy
from signoff.services.gating import decider, may_decide, open_gate, params_diff, waiting_rules
from signoff.services.instances import locked_instance, revoke_open_actions, scoped_tenant
from signoff.services.records import record_for
from signoff.services.settling import settle
from signoff.store.unit import Repository

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
    # On APPROVED: the single-use token to execute with (see services/grants.py).
    grant_token: str = ""


def _budget_exhausted(
    ctx: Context, instance: Instance, proposal: ProposedAction
) -> PolicyDecision | None:
    """A denial when the action would take the instance past its runtime budget."""
    refusal = instance.budget().refusal(proposal.estimated_cost_cents)
    if not refusal:
        return None
    return PolicyDecision(
        effect=Effect.DENY,
        reasons=[refusal],
        rule_ids=["BUDGET_EXHAUSTED"],
        bundle=ctx.policy.bundle,
    )


def _outside_context(
    ctx: Context, instance: Instance, proposal: ProposedAction
) -> PolicyDecision | None:
    """A denial when the action is outside the instance's compiled context (a tool not in its
    manifest, a risk class below the tool's binding): it overrides whatever policy answers
    but a refusal that ends the instance. INVALID_ARGUMENT for params that fail the tool's
    schema, before policy runs."""
    refusal = CompiledContext(instance.compiled_context).refusal(
        proposal.tool, proposal.params, proposal.risk_class
    )
    if refusal is None:
        return None
    if refusal.reason == "PARAMS_INVALID":
        raise InvalidArgument([FieldViolation(refusal.field, refusal.message)])
    return PolicyDecision(
        effect=Effect.DENY,
        reasons=[refusal.message],
        rule_ids=[refusal.reason],
        bundle=ctx.policy.bundle,
    )


async def request_decision(
    ctx: Context, who: Principal, instance_id: str, proposal: ProposedAction, traceparent: str = ""
) -> DecisionAnswer:
    """`traceparent` is the W3C trace context of the call, stored with a new action."""
    if proposal.tool == PLAN_TOOL:
        raise InvalidArgument(
            [FieldViolation("action.tool", f"{PLAN_TOOL} is reserved for plan approvals")]
        )

    # Two calls racing for one step of a plan: the second finds the step's use the first
    # wrote (plan_step_uses), and its call gets a decision of its own.
    return await once_more_on_key_conflict(
        lambda: _request_decision(ctx, who, instance_id, proposal, traceparent)
    )


async def _request_decision(
    ctx: Context, who: Principal, instance_id: str, proposal: ProposedAction, traceparent: str
) -> DecisionAnswer:
    digest = proposal.sha256()
    async with ctx.db.write() as tx:
        instance = await locked_instance(tx, instance_id, who)
        existing = await tx.find_action(instance_id, proposal.tool_call_id)
        if existing is not None:
            if (existing.proposed_sha256 or existing.action_sha256) != digest:
                raise IdempotencyKeyReused("action.tool_call_id", "action")
            # A repeat (say, after the agent restarted, or after the approval it waited
            # for): tell it where the action stands now, with a fresh grant if approved.
            outcome = outcome_of(existing.state)
            if instance.state is InstanceState.TERMINATED:
                outcome = Outcome.TERMINATED
            token = grants.issue(
                existing, ctx.clock(), existing.decide_time or ctx.clock(), ctx.grant_ttl
            )
            if token:
                await tx.save_grant(existing)
            return DecisionAnswer(
                outcome,
                existing.decision_reason,
                instance.revision,
                _as_proposed(existing, proposal, digest),
                token,
            )
        if instance.state is InstanceState.TERMINATED:
            return DecisionAnswer(
                Outcome.TERMINATED, "the instance is terminated", instance.revision, None
            )
        if instance.state is InstanceState.COMPLETED:
            raise FailedPrecondition(
                ErrorReason.INSTANCE_COMPLETED,
                f"instance {instance_id} is completed; start a new instance for new work",
            )

        outside = _outside_context(ctx, instance, proposal)
        decision = evaluate_policy(ctx, instance, proposal, who)
        now = ctx.clock()
        planned = await plans.step_of(tx, instance, proposal, now)
        under_plan = False
        if not decision.must_refuse:  # a refusal ends the instance, context or budget or not
            denial = (
                outside
                or _budget_exhausted(ctx, instance, proposal)
                or plans.unmet_condition(ctx, planned)
            )
            # A live plan approval stands in for the humans policy asks for, never for a
            # denial.
            under_plan = denial is None and plans.covered_by_approval(decision, planned)
            decision = denial or decision
        state = ActionState.APPROVED if under_plan else _STATE_FOR_EFFECT[decision.effect]
        waits = state is ActionState.WAITING_FOR_HUMAN
        stored = replace(
            proposal, params=ctx.policy.redact(proposal.params, decision.redaction_rules_active)
        )
        action = Action(
            action_id=new_id("act"),
            instance_id=instance_id,
            tenant_id=instance.tenant_id,
            proposal=stored,
            action_sha256=digest,
            proposed_sha256=digest,
            state=ActionState.NEW,
            gate_ids=list(decision.gate_ids),
            gates=[open_gate(ctx.policy.gate(g), now) for g in decision.gate_ids] if waits else [],
            decided_by="" if waits else "policy",
            decision_reason="; ".join(decision.reasons),
            create_time=now,
            decide_time=None if waits else now,
            policy=decision.as_json(),
            traceparent=traceparent,
        )
        if under_plan:
            assert planned is not None and planned.approval is not None
            action.decided_by = planned.approval.decided_by
            action.decision_reason = (
                f"approved under plan approval {planned.approval.action_id} (plan "
                f"{planned.plan.plan_id}, step {planned.step['id']})"
            )
        # Through the transition table, which moves the instance's cost totals with it.
        action.move(instance, state)
        token = grants.issue(action, now, now, ctx.grant_ttl)
        await tx.insert_action(action)
        if planned is not None and planned.runs:
            await plans.record_use(tx, planned, action, now)
        instance.tool_calls_used += 1
        if waits and instance.state is InstanceState.RUNNING:
            instance.state = transition_instance(instance.state, InstanceState.WAITING_FOR_HUMAN)
        record = None
        if not waits:
            record = record_for(action, instance, _status_at_once(state, decision), now)
            if under_plan:
                assert planned is not None
                record.approvals, record.plan_approval = await plans.approvals_under_plan(
                    tx, planned, proposal.risk_class
                )
            await tx.insert_record(record)
        await tx.append_event(
            instance,
            EventType.ACTION_REQUESTED,
            now,
            action=action,
            actor="policy",
            reason=action.decision_reason,
            record=record,
            controls=action.policy,
        )
        outcome = outcome_of(state)
        if decision.must_refuse:
            # Policy ends the instance: nothing else on it may run either.
            await revoke_open_actions(tx, instance, now, action.decision_reason, actor="policy")
            instance.state = transition_instance(instance.state, InstanceState.TERMINATED)
            await tx.append_event(
                instance,
                EventType.INSTANCE_TERMINATED,
                now,
                actor="policy",
                reason=action.decision_reason,
            )
            outcome, token = Outcome.TERMINATED, ""
        await tx.save_instance(instance)
        return DecisionAnswer(
            outcome,
            action.decision_reason,
            instance.revision,
            _as_proposed(action, proposal, digest),
            token,
        )


def _status_at_once(state: ActionState, decision: PolicyDecision) -> DecisionStatus:
    """The record of an action settled without a human. A denial that leaves the instance
    running (a deny rule, a failed evaluation, an exhausted budget) hands the matter to
    people outside the agent's run: ESCALATED, as the reference refund workflow records
    it. An approval, and a refusal that ends the instance, are DECIDED."""
    if state is ActionState.REJECTED and not decision.must_refuse:
        # A plan's false execute_when is the plan deciding, not a matter for others.
        if decision.rule_ids == [plans.CONDITION_NOT_MET]:
            return DecisionStatus.DECIDED
        return DecisionStatus.ESCALATED
    return DecisionStatus.DECIDED


def _as_proposed(action: Action, proposal: ProposedAction, proposal_sha256: str) -> Action:
    """The action to answer the agent with. Unedited, its params are exactly what the agent
    proposed (the hash proves it), so redacted values go back to the agent unredacted
    without ever being stored; edited, they are the approver's params as stored."""
    if action.action_sha256 != proposal_sha256:
        return action
    return replace(action, proposal=proposal)


async def _locked_action(tx: Repository, action_id: str, who: Principal) -> tuple[Action, Instance]:
    """The action and its instance, the action read under the instance lock, so a
    concurrent decision that committed first is seen. Another tenant's action is not
    found."""
    found = await tx.locked_action(action_id)
    if found is None or not who.sees(found[0].tenant_id):
        raise NotFound("action", action_id)
    return found


def _winning_verdict(action: Action) -> Verdict:
    return Verdict.REJECT if action.state is ActionState.REJECTED else Verdict.APPROVE


def _check_voter(ctx: Context, instance: Instance, action: Action, who: Principal) -> list[str]:
    """The waiting gates this approver may vote on; raises, saying which half of
    domain.gates.may_decide bars them, when they may vote on none."""
    approver = decider(ctx.policy, who)
    if barred_by_duties(approver, parties_of(instance)):
        raise PermissionDenied(
            ErrorReason.SEPARATION_OF_DUTIES,
            f"{approver.id} is this instance's user or agent and cannot approve its actions",
            metadata={"approver": approver.id},
        )
    eligible = admitting(approver, waiting_rules(ctx.policy, action))
    if not eligible:
        waiting = [g.gate_id for g in action.waiting_gates()]
        raise PermissionDenied(
            ErrorReason.NOT_ELIGIBLE,
            f"{approver.id} is not an approver of {', '.join(waiting)}",
            metadata={"approver": approver.id, "gates": ",".join(waiting)},
        )
    return eligible


async def submit_decision(
    ctx: Context,
    who: Principal,
    action_id: str,
    verdict: Verdict,
    reason: str,
    request_id: str,
    edited_params: Json | None = None,
    evidence_snapshot_hash: str = "",
) -> tuple[Action, DecisionRecord | None]:
    """One vote by the authenticated caller. `evidence_snapshot_hash` is the action hash
    the approver reviewed: a vote on an action that changed since is refused."""
    approver = who.id
    if edited_params is not None and verdict is not Verdict.APPROVE:
        raise InvalidArgument([FieldViolation("edited_params", "only an approval can edit")])
    request_digest = sha256_of(
        {
            "action_id": action_id,
            "verdict": verdict.value,
            "reason": reason,
            "approver": approver,
            "edited_params": edited_params,
            "evidence_snapshot_hash": evidence_snapshot_hash,
        }
    )

    # Losers of a race learn it from a read, without queueing for the write lock: a decided
    # action stays decided. (A retry of the winning call still takes the write path.)
    async with ctx.db.read() as tx:
        seen = await tx.get_action(action_id)
        if (
            seen is not None
            and who.sees(seen.tenant_id)
            and seen.state in DECIDED_ACTION_STATES
            and await tx.find_vote_by_request(seen.tenant_id, request_id) is None
        ):
            raise AlreadyDecided(
                action_id, seen.state.value, _winning_verdict(seen).value, seen.decided_by
            )

    async def vote() -> tuple[Action, DecisionRecord | None]:
        async with ctx.db.write() as tx:
            action, instance = await _locked_action(tx, action_id, who)
            # Under the lock, so a retry racing its own first attempt still gets its answer.
            earlier, prior = await tx.votes_and_request(action_id, action.tenant_id, request_id)
            if prior is not None:
                if prior.request_sha256 != request_digest:
                    raise IdempotencyKeyReused("request_id", "decision")
                return action, await tx.get_record_for_action(action_id)
            if action.state in DECIDED_ACTION_STATES:
                raise AlreadyDecided(
                    action_id, action.state.value, _winning_verdict(action).value, action.decided_by
                )
            if action.state is not ActionState.WAITING_FOR_HUMAN:
                raise FailedPrecondition(
                    ErrorReason.ACTION_NOT_WAITING,
                    f"action {action_id} is {action.state.value}; only a waiting action can be "
                    "decided",
                    metadata={"action_id": action_id, "state": action.state.value},
                )
            if evidence_snapshot_hash and evidence_snapshot_hash != action.action_sha256:
                raise FailedPrecondition(
                    ErrorReason.EVIDENCE_CHANGED,
                    f"action {action_id} changed since it was reviewed: it is now "
                    f"{action.action_sha256}; review it again",
                    metadata={"action_sha256": action.action_sha256},
                )
            eligible = _check_voter(ctx, instance, action, who)
            if any(v.approver == approver for v in earlier):
                raise FailedPrecondition(
                    ErrorReason.ALREADY_VOTED,
                    f"{approver} already voted on action {action_id}; one approver votes once",
                    metadata={"action_id": action_id, "approver": approver},
                )
            now = ctx.clock()
            seen_hash = action.action_sha256
            diff: Json = {}
            if edited_params is not None and action.proposal.tool == PLAN_TOOL:
                diff, eligible = await plans.apply_plan_edit(
                    ctx, tx, who, instance, action, edited_params, eligible, now
                )
            elif edited_params is not None:
                diff, eligible = _apply_edit(
                    ctx, who, instance, action, edited_params, eligible, now
                )
            count_vote([g for g in action.gates if g.gate_id in eligible], verdict)
            this_vote = Vote(
                action_id=action_id,
                tenant_id=action.tenant_id,
                approver=approver,
                verdict=verdict,
                reason=reason,
                request_id=request_id,
                request_sha256=request_digest,
                time=now,
                gate_ids=tuple(eligible),
                evidence_snapshot_hash=seen_hash,
                params_diff=diff,
            )
            await tx.insert_vote(this_vote)
            settled = settled_state(action)
            record = None
            if settled is None:
                # Quorum not reached yet (or the edit needs a fresh approval).
                await tx.save_action(action, expected_state=action.state)
                await tx.append_event(
                    instance,
                    EventType.ACTION_VOTED,
                    now,
                    action=action,
                    actor=approver,
                    reason=reason,
                    gate_id=",".join(eligible),
                )
            else:
                record = await settle(
                    tx,
                    instance,
                    action,
                    settled,
                    now,
                    actor=approver,
                    reason=reason,
                    votes=[*earlier, this_vote],
                    grant_ttl=ctx.grant_ttl,
                )
            await tx.save_instance(instance)
            return action, record

    # Two requests racing with one request_id (or one approver) on different calls: the
    # second transaction finds what the first wrote and answers from it.
    return await once_more_on_key_conflict(vote)


def _apply_edit(
    ctx: Context,
    who: Principal,
    instance: Instance,
    action: Action,
    edited: Json,
    eligible: list[str],
    now: datetime,
) -> tuple[Json, list[str]]:
    """Re-evaluates policy on the edited action. Returns the diff and the gates the vote
    counts for: none when the edit needs a gate the action was not waiting on."""
    proposal = replace(action.proposal, params=edited)
    decision = evaluate_policy(ctx, instance, proposal, who)
    if decision.effect is Effect.DENY:
        raise FailedPrecondition(
            ErrorReason.EDIT_DENIED_BY_POLICY,
            "policy denies the edited action: " + "; ".join(decision.reasons),
            metadata={"rule_ids": ",".join(decision.rule_ids)},
        )
    rules = decision.redaction_rules_active
    diff = ctx.policy.redact(params_diff(action.proposal.params, edited), rules)
    action.proposal = replace(proposal, params=ctx.policy.redact(edited, rules))
    action.action_sha256 = proposal.sha256()
    action.policy = decision.as_json()
    known = {g.gate_id for g in action.gates}
    stricter = [g for g in decision.gate_ids if g not in known]
    if not stricter:
        return diff, eligible
    # A stricter gate: the edit stands, and those gates approve it afresh.
    action.close_gates()
    action.gates += [open_gate(ctx.policy.gate(g), now) for g in decision.gate_ids]
    action.gate_ids = list(decision.gate_ids)
    return diff, []


async def consume_grant(ctx: Context, who: Principal, action_id: str, token: str) -> Action:
    """APPROVED → EXECUTING with the action's live grant: the last check before it runs."""
    async with ctx.db.write() as tx:
        action, instance = await _locked_action(tx, action_id, who)
        now = ctx.clock()
        grants.check(action, token, now)
        action.move(instance, ActionState.EXECUTING)
        await tx.save_action(action, expected_state=ActionState.APPROVED)
        await tx.append_event(
            instance, EventType.ACTION_EXECUTING, now, action=action, actor=who.id
        )
        await tx.save_instance(instance)
        return action


async def report_execution(
    ctx: Context,
    who: Principal,
    action_id: str,
    result: ExecutionResult,
    evidence_ref: str,
    outputs: Json,
    error_message: str,
    grant_token: str = "",
    cost_cents: float | None = None,
) -> Action:
    """`cost_cents` is what the execution cost; without it the estimate stays spent."""
    target = ActionState.EXECUTED if result is ExecutionResult.SUCCEEDED else ActionState.FAILED
    async with ctx.db.write() as tx:
        action, instance = await _locked_action(tx, action_id, who)
        if action.state is target and action.execution_evidence_ref == evidence_ref:
            return action  # a repeated report
        if instance.state not in (InstanceState.RUNNING, InstanceState.WAITING_FOR_HUMAN):
            raise FailedPrecondition(
                ErrorReason.INSTANCE_NOT_ACTIVE,
                f"instance {instance.instance_id} is {instance.state.value}",
            )
        if action.state is not ActionState.EXECUTING:
            # Not consumed yet: the report itself must carry the live grant.
            grants.check(action, grant_token, ctx.clock())
        now = ctx.clock()
        previous = action.move(instance, target, cost_cents=cost_cents)
        action.execution_evidence_ref = evidence_ref
        await tx.save_action(action, expected_state=previous)
        record = await tx.get_record_for_action(action_id)
        if record is not None:
            record.outputs = ctx.policy.redact(outputs, record.redaction_rules_active)
            if evidence_ref:
                record.evidence_refs.append(evidence_ref)
            record.execution_state = target
            record.cost_cents = cost_cents
            await tx.attach_execution(record)
        await tx.append_event(
            instance,
            EventType.ACTION_EXECUTION_REPORTED,
            now,
            action=action,
            actor=who.id,
            reason="; ".join(filter(None, [error_message, _overspend(action, instance)])),
            record=record,
        )
        await tx.save_instance(instance)
        return action


def _overspend(action: Action, instance: Instance) -> str:
    """What the trail says when a reported cost passes the estimate or the budget."""
    reported, estimated = action.cost_cents, action.proposal.estimated_cost_cents
    notes = []
    if reported is not None and reported > estimated:
        notes.append(f"cost {reported:g} cents is over the estimate of {estimated:g}")
    budget = instance.budget()
    if budget.max_cost_cents and budget.cost_spent_cents > budget.max_cost_cents:
        notes.append(
            f"BUDGET_EXHAUSTED: spent {budget.cost_spent_cents:g} cents, over "
            f"runtime.max_cost_cents ({budget.max_cost_cents:g}); new actions are refused"
        )
    return "; ".join(notes)


async def list_pending(
    ctx: Context, who: Principal, tenant_id: str, size: int, token: str
) -> tuple[list[Action], str]:
    """Waiting actions the caller may decide (domain.gates.may_decide; admins see all of
    their tenants'). The query leaves out the instances the caller is a party to; a page may
    still hold fewer than `size` when gates left others out; the token still moves."""
    limit = pagination.page_size(size, 50)
    scope = scoped_tenant(who, tenant_id)
    if scope is None:
        return [], ""
    party = "" if who.is_admin else who.id
    async with ctx.db.read() as tx:
        rows = await tx.list_waiting_actions(scope, pagination.decode(token), limit + 1, party)
    found, next_token = pagination.page(rows, limit)
    return [
        action
        for action, parties in found
        if who.is_admin or may_decide(ctx.policy, who, parties, action)
    ], next_token
