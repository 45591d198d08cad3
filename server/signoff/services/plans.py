"""Plans: the critic's check of an agent's plan before any step runs (CheckPlan); a submitted
plan and its one approval for every gated step (SubmitPlan); and, when a step is requested,
its execute_when and the approval it runs under (RequestDecision)."""

import json
from dataclasses import dataclass, replace
from datetime import datetime

from signoff.domain.canonical import sha256_of
from signoff.domain.errors import (
    ErrorReason,
    FailedPrecondition,
    FieldViolation,
    IdempotencyKeyReused,
    InvalidArgument,
    StateTampered,
)
from signoff.domain.ids import new_id
from signoff.domain.models import Action, Approval, Instance, Json, Principal, ProposedAction
from signoff.domain.plans import (
    PLAN_TOOL,
    ConditionResult,
    Finding,
    Plan,
    Step,
    StepUse,
    SubmittedPlan,
    evaluate_condition,
    parse_plan,
)
from signoff.domain.states import (
    TERMINAL_INSTANCE_STATES,
    ActionState,
    EventType,
    InstanceState,
    RiskClass,
    Verdict,
    transition_instance,
)
from signoff.policy import Effect, PolicyDecision
from signoff.policy.critic import critique, variables
from signoff.policy.manifest import CompiledContext
from signoff.services.context import Context, once_more_on_key_conflict
from signoff.services.evaluation import evaluate_policy
from signoff.services.gating import open_gate, params_diff
from signoff.services.instances import locked_instance
from signoff.store.unit import Repository


@dataclass(frozen=True)
class PlanVerdict:
    findings: list[Finding]
    plan_sha256: str
    # The revision of the PLAN_CHECKED event.
    revision: int

    @property
    def accepted(self) -> bool:
        return not self.findings


async def check_plan(ctx: Context, who: Principal, instance_id: str, raw_plan: Json) -> PlanVerdict:
    """The critic's verdict on `raw_plan` (the JSON form of signoff.v1.Plan) for the instance.
    A dry run: the only write is the PLAN_CHECKED event that records the verdict."""
    plan = parse_plan(raw_plan)  # INVALID_ARGUMENT before anything is read or written
    async with ctx.db.write() as tx:
        instance = await locked_instance(tx, instance_id, who)
        if instance.state in TERMINAL_INSTANCE_STATES:
            raise FailedPrecondition(
                ErrorReason.INSTANCE_NOT_ACTIVE,
                f"instance {instance_id} is {instance.state.value.lower()}; "
                "a plan is checked for an instance that can still run it",
            )
        findings = critique(
            plan, _intent(instance), CompiledContext(instance.compiled_context), instance.budget()
        )
        verdict = (
            "ACCEPTED"
            if not findings
            else "REJECTED: " + ", ".join(sorted({f.reason.value for f in findings}))
        )
        await tx.append_event(
            instance,
            EventType.PLAN_CHECKED,
            ctx.clock(),
            actor=who.id,
            reason=f"plan {plan.plan_id} {verdict}",
            plan_sha256=plan.sha256,
        )
        await tx.save_instance(instance)
    return PlanVerdict(findings, plan.sha256, instance.revision)


# -- SubmitPlan: the plan approval ---------------------------------------------------------

_ORDER = list(RiskClass)


@dataclass(frozen=True)
class PlanSubmission:
    plan: SubmittedPlan
    # The plan approval (tool signoff.plan), or None when policy gated no step.
    approval: Action | None
    revision: int


def _step_proposal(plan: Plan, step: Step, compiled: CompiledContext) -> ProposedAction:
    """A step as policy sees it: with the risk class the critic judged it by."""
    bound = compiled.binding(step.tool)
    risk = step.approval_mode or (RiskClass(bound["approval_mode"]) if bound else None)
    return ProposedAction(
        tool_call_id=f"{plan.plan_id}.{step.step_id}",
        tool=step.tool,
        params=step.params,
        risk_class=risk or RiskClass.READ_ONLY,
        estimated_cost_cents=step.estimated_cost_cents,
    )


def _stored_step(
    ctx: Context, step: Step, proposal: ProposedAction, decision: PolicyDecision
) -> Json:
    """A step as the plans table keeps it: its params redacted as policy says, the sha256
    of its params as sent (what a request must match), and its route."""
    stored = ctx.policy.redact(step.params, decision.redaction_rules_active)
    return {
        "id": step.step_id,
        "tool": step.tool,
        "risk_class": proposal.risk_class.value,
        "params": stored,
        "params_sha256": sha256_of(step.params),
        # Whether the stored params differ from the params sent (see _check_sealed).
        "redacted": stored != step.params,
        "execute_when": step.execute_when,
        "reads": sorted(variables(step.execute_when)) if step.execute_when is not None else [],
        "effect": decision.effect.name,
        "gate_ids": list(decision.gate_ids),
        "reason": "; ".join(decision.reasons),
    }


def _rejected(plan: Plan, findings: list[Finding]) -> FailedPrecondition:
    listed = "; ".join(f"{f.step_id or 'plan'}: {f.reason.value}: {f.message}" for f in findings)
    return FailedPrecondition(
        ErrorReason.PLAN_REJECTED,
        f"the critic rejects plan {plan.plan_id}: {listed}",
        metadata={
            "plan_id": plan.plan_id,
            "reasons": ",".join(sorted({f.reason.value for f in findings})),
            "findings": json.dumps([f.as_json() for f in findings]),
        },
    )


def _approval_policy(plan: Plan, decisions: list[PolicyDecision]) -> Json:
    """The policy part of a plan approval (as Action.policy): the bundle, the plan it is
    about, and its gated steps' controls."""
    bundle = decisions[0].bundle
    return {
        "bundle_id": bundle.bundle_id,
        "version": bundle.version,
        "sha256": bundle.sha256,
        "decision_key": f"{PLAN_TOOL}.{plan.plan_id}",
        # The plan the approval is about: its record names it (services/records.py).
        "plan_id": plan.plan_id,
        "plan_sha256": plan.sha256,
        "must_refuse": [],
        **_steps_controls(decisions),
    }


def _steps_controls(decisions: list[PolicyDecision]) -> Json:
    """What the gated steps' decisions say together: every rule, escalation and redaction."""
    return {
        name: sorted({x for d in decisions for x in getattr(d, name)})
        for name in ("rule_ids", "must_escalate", "redaction_rules_active")
    }


def _gate_union(steps: list[Json]) -> list[str]:
    """The gates of the gated steps, each once, in the order they first appear."""
    return list(dict.fromkeys(g for s in steps for g in s["gate_ids"]))


def _approval_params(steps: list[Json]) -> Json:
    return {s["id"]: {"tool": s["tool"], "params": s["params"]} for s in steps}


async def submit_plan(
    ctx: Context, who: Principal, instance_id: str, raw_plan: Json
) -> PlanSubmission:
    """Stores an accepted plan; its steps that policy routes to a human become one waiting
    action, the plan approval. Idempotent by (instance, plan_id)."""
    plan = parse_plan(raw_plan)  # INVALID_ARGUMENT before anything is read or written

    async def submit() -> PlanSubmission:
        async with ctx.db.write() as tx:
            instance = await locked_instance(tx, instance_id, who)
            existing = await tx.get_plan(instance_id, plan.plan_id)
            if existing is not None:
                if existing.plan_sha256 != plan.sha256:
                    raise IdempotencyKeyReused("plan.plan_id", "plan")
                approval = None
                if existing.approval_action_id:
                    approval = await tx.get_action(existing.approval_action_id)
                return PlanSubmission(existing, approval, instance.revision)
            if instance.state in TERMINAL_INSTANCE_STATES:
                raise FailedPrecondition(
                    ErrorReason.INSTANCE_NOT_ACTIVE,
                    f"instance {instance_id} is {instance.state.value.lower()}; "
                    "a plan is submitted for an instance that can still run it",
                )
            compiled = CompiledContext(instance.compiled_context)
            findings = critique(plan, _intent(instance), compiled, instance.budget())
            if findings:
                raise _rejected(plan, findings)
            now = ctx.clock()
            proposals = [_step_proposal(plan, s, compiled) for s in plan.steps]
            decided = [evaluate_policy(ctx, instance, p, who) for p in proposals]
            steps = [
                _stored_step(ctx, s, p, d)
                for s, p, d in zip(plan.steps, proposals, decided, strict=True)
            ]
            gated = [(s, d) for s, d in zip(steps, decided, strict=True) if _gated(s)]
            approval = _plan_approval(ctx, instance, plan, gated, now) if gated else None
            submitted = SubmittedPlan(
                instance_id=instance_id,
                tenant_id=instance.tenant_id,
                plan_id=plan.plan_id,
                plan_sha256=plan.sha256,
                approval_action_id=approval.action_id if approval else "",
                plan={
                    "plan_id": plan.plan_id,
                    "intent": plan.intent,
                    "steps": steps,
                    "decision_checkpoints": [
                        {"decision_id": c.decision_id, "after_step": c.after_step}
                        for c in plan.checkpoints
                    ],
                },
                create_time=now,
            )
            await tx.insert_plan(submitted)
            routes = ", ".join(
                f"{s['id']} {s['effect']}" + (f" {'+'.join(s['gate_ids'])}" if _gated(s) else "")
                for s in steps
            )
            await tx.append_event(
                instance,
                EventType.PLAN_SUBMITTED,
                now,
                actor=who.id,
                reason=f"plan {plan.plan_id}: {routes}",
                plan_sha256=plan.sha256,
            )
            if approval is not None:
                approval.move(instance, ActionState.WAITING_FOR_HUMAN)
                await tx.insert_action(approval)
                if instance.state is InstanceState.RUNNING:
                    instance.state = transition_instance(
                        instance.state, InstanceState.WAITING_FOR_HUMAN
                    )
                await tx.append_event(
                    instance,
                    EventType.ACTION_REQUESTED,
                    now,
                    action=approval,
                    actor="policy",
                    reason=approval.decision_reason,
                    controls=approval.policy,
                    plan_sha256=plan.sha256,
                )
            await tx.save_instance(instance)
            return PlanSubmission(submitted, approval, instance.revision)

    return await once_more_on_key_conflict(submit)


def _intent(instance: Instance) -> str:
    return str(instance.envelope.get("input", {}).get("intent", ""))


def _gated(step: Json) -> bool:
    return bool(step["effect"] == Effect.REQUIRE_APPROVAL.name)


def _plan_approval(
    ctx: Context,
    instance: Instance,
    plan: Plan,
    gated: list[tuple[Json, PolicyDecision]],
    now: datetime,
) -> Action:
    """The one waiting action whose approval covers the gated steps: params {step id:
    {tool, params}}, the union of their gates, the strongest of their risk classes."""
    steps = [s for s, _ in gated]
    proposal = ProposedAction(
        tool_call_id=f"{PLAN_TOOL}:{plan.plan_id}",
        tool=PLAN_TOOL,
        params=_approval_params(steps),
        risk_class=max((RiskClass(s["risk_class"]) for s in steps), key=_ORDER.index),
    )
    gate_ids = _gate_union(steps)
    digest = proposal.sha256()
    return Action(
        action_id=new_id("act"),
        instance_id=instance.instance_id,
        tenant_id=instance.tenant_id,
        proposal=proposal,
        action_sha256=digest,
        proposed_sha256=digest,
        state=ActionState.NEW,
        gate_ids=gate_ids,
        gates=[open_gate(ctx.policy.gate(g), now) for g in gate_ids],
        decided_by="",
        decision_reason=f"plan {plan.plan_id}: "
        + "; ".join(f"{s['id']} ({s['tool']}): {s['reason']}" for s in steps),
        create_time=now,
        decide_time=None,
        policy=_approval_policy(plan, [d for _, d in gated]),
    )


async def plan_of_approval(tx: Repository, approval: Action) -> SubmittedPlan:
    found = next(
        (
            p
            for p in await tx.plans_of(approval.instance_id)
            if p.approval_action_id == approval.action_id
        ),
        None,
    )
    assert found is not None, "a plan approval is stored with its plan"
    return found


async def apply_plan_edit(
    ctx: Context,
    tx: Repository,
    who: Principal,
    instance: Instance,
    approval: Action,
    edited: Json,
    eligible: list[str],
    now: datetime,
) -> tuple[Json, list[str]]:
    """An approver narrows the gated steps of a plan approval: the same steps and tools,
    other params. Each edited step is checked against its tool's schema and evaluated by
    policy again (a denial refuses the edit); the plan's steps then match the edited params.
    Returns the diff and the gates the vote counts for: none when an edited step needs a
    gate the approval was not waiting on (those gates approve it afresh)."""
    plan = await plan_of_approval(tx, approval)
    current = approval.proposal.params
    bad: list[FieldViolation] = []
    if set(edited) != set(current):
        bad.append(
            FieldViolation("edited_params", f"must name exactly the steps {sorted(current)}")
        )
    for step_id, body in edited.items():
        where = f"edited_params.{step_id}"
        if not isinstance(body, dict) or set(body) - {"tool", "params"}:
            bad.append(FieldViolation(where, 'must be {"tool": …, "params": {…}}'))
        elif step_id in current and body.get("tool") != current[step_id]["tool"]:
            bad.append(FieldViolation(f"{where}.tool", "an edit changes params, not the tool"))
        elif not isinstance(body.get("params", {}), dict):
            bad.append(FieldViolation(f"{where}.params", "must be an object"))
    if bad:
        raise InvalidArgument(bad)
    compiled = CompiledContext(instance.compiled_context)
    steps = {s["id"]: s for s in plan.steps()}
    decided: list[tuple[Json, PolicyDecision]] = []
    for step_id, body in edited.items():
        params = body.get("params", {})
        step = steps[step_id]
        proposal = replace(
            approval.proposal,
            tool=body["tool"],
            params=params,
            risk_class=RiskClass(step["risk_class"]),
        )
        refusal = compiled.refusal(
            body["tool"], params, proposal.risk_class, where=f"edited_params.{step_id}"
        )
        if refusal is not None and refusal.reason == "PARAMS_INVALID":
            raise InvalidArgument([FieldViolation(refusal.field, refusal.message)])
        decision = evaluate_policy(ctx, instance, proposal, who)
        if decision.effect is Effect.DENY:
            raise FailedPrecondition(
                ErrorReason.EDIT_DENIED_BY_POLICY,
                f"policy denies step {step_id} as edited: " + "; ".join(decision.reasons),
                metadata={"rule_ids": ",".join(decision.rule_ids), "step_id": step_id},
            )
        step["params"] = ctx.policy.redact(params, decision.redaction_rules_active)
        step["params_sha256"] = sha256_of(params)
        step["redacted"] = step["params"] != params
        step["gate_ids"] = list(decision.gate_ids) or step["gate_ids"]
        step["reason"] = "; ".join(decision.reasons)
        decided.append((step, decision))
    await tx.save_plan(plan)
    edited_steps = [s for s, _ in decided]
    diff = ctx.policy.redact(
        params_diff(current, edited),
        sorted({r for _, d in decided for r in d.redaction_rules_active}),
    )
    approval.proposal = replace(approval.proposal, params=_approval_params(edited_steps))
    approval.action_sha256 = approval.proposal.sha256()
    approval.policy = {**approval.policy, **_steps_controls([d for _, d in decided])}
    known = {g.gate_id for g in approval.gates}
    needed = _gate_union(edited_steps)
    if all(g in known for g in needed):
        return diff, eligible
    approval.close_gates()
    approval.gates += [open_gate(ctx.policy.gate(g), now) for g in needed]
    approval.gate_ids = needed
    return diff, []


def dry_run(
    ctx: Context, instance: Instance, proposal: ProposedAction, who: Principal
) -> PolicyDecision:
    """EvaluatePolicy of a plan approval (tool signoff.plan, params {step_id: {"tool",
    "params"}}, say an edit the console is about to submit): each step as policy would judge
    it, at its tool's binding, taken together. A step denied denies all (as SubmitDecision
    refuses such an edit); otherwise the gates of every step."""
    compiled = CompiledContext(instance.compiled_context)
    decided: list[tuple[str, PolicyDecision]] = []
    for step_id, body in proposal.params.items():
        if not isinstance(body, dict) or not isinstance(body.get("params", {}), dict):
            raise InvalidArgument(
                [FieldViolation(f"action.params.{step_id}", 'must be {"tool": …, "params": {…}}')]
            )
        tool = str(body.get("tool", ""))
        bound = compiled.binding(tool)
        step = replace(
            proposal,
            tool=tool,
            params=body.get("params", {}),
            risk_class=RiskClass(bound["approval_mode"]) if bound else proposal.risk_class,
        )
        decided.append((step_id, evaluate_policy(ctx, instance, step, who)))
    decisions = [d for _, d in decided]
    effects = {d.effect for d in decisions}
    effect = next((e for e in (Effect.DENY, Effect.REQUIRE_APPROVAL) if e in effects), Effect.ALLOW)
    return PolicyDecision(
        effect=effect,
        reasons=[f"{step_id}: {r}" for step_id, d in decided for r in d.reasons],
        bundle=ctx.policy.bundle,
        gate_ids=list(dict.fromkeys(g for d in decisions for g in d.gate_ids)),
        decision_key=PLAN_TOOL,
        must_refuse=sorted({r for d in decisions for r in d.must_refuse}),
        **_steps_controls(decisions),
    )


# -- RequestDecision: the step a call runs --------------------------------------------------


@dataclass(frozen=True)
class StepMatch:
    """The step of a submitted plan that a requested call runs (same tool, canonical params
    equal to the step's as approved), and what the plan says of it now."""

    plan: SubmittedPlan
    step: Json
    # The step's execute_when over the outputs reported so far; None without a condition.
    condition: ConditionResult | None
    # The live plan approval (APPROVED, not expired) of a gated step; None otherwise.
    approval: Action | None

    @property
    def runs(self) -> bool:
        """Whether the call is the step's run: its condition, if any, holds. A call refused
        for its condition leaves the step to a later call."""
        return self.condition is None or self.condition.holds


async def step_of(
    tx: Repository, instance: Instance, proposal: ProposedAction, now: datetime
) -> StepMatch | None:
    """The first step, of the instance's plans in submission order, that the call runs and
    that no earlier call ran; None when the call is no plan's step (it deviates)."""
    digest = sha256_of(proposal.params)
    candidates = [
        (plan, step)
        for plan in await tx.plans_of(instance.instance_id)
        for step in plan.steps()
        if step["tool"] == proposal.tool and step["params_sha256"] == digest
    ]
    if not candidates:
        return None  # no plan, or a call no plan has: nothing more to read
    uses = await tx.step_uses(instance.instance_id)
    used = {(u.plan_id, u.step_id) for u in uses}
    for plan, step in candidates:
        if (plan.plan_id, step["id"]) in used:
            continue
        condition = None
        if step.get("execute_when") is not None:
            outputs = await _reported_outputs(tx, plan, uses)
            condition = evaluate_condition(
                step["execute_when"], outputs, set(step.get("reads", []))
            )
        return StepMatch(plan, step, condition, await _live_approval(tx, plan, step, now))
    return None


async def _live_approval(
    tx: Repository, plan: SubmittedPlan, step: Json, now: datetime
) -> Action | None:
    """The plan approval covering a gated step, if it is APPROVED and not expired."""
    if not _gated(step) or not plan.approval_action_id:
        return None
    found = await tx.get_action(plan.approval_action_id)
    if (
        found is None
        or found.state is not ActionState.APPROVED
        or found.grant_expires is None
        or found.grant_expires <= now
    ):
        return None
    _check_sealed(plan, step, found)
    return found


def _check_sealed(plan: SubmittedPlan, step: Json, approval: Action) -> None:
    """The plans table is not in the audit chain; the plan approval is (its params sealed,
    and checked when it was read). A gated step covered by it must be what it approved:
    the same tool and stored params, and, when nothing was redacted, the params whose
    sha256 the step matches calls by. StateTampered otherwise: nothing is approved."""
    sealed = approval.proposal.params.get(step["id"])
    same = (
        isinstance(sealed, dict)
        and sealed.get("tool") == step["tool"]
        and sha256_of(sealed.get("params", {})) == sha256_of(step["params"])
        and (step.get("redacted") or sha256_of(step["params"]) == step["params_sha256"])
    )
    if not same:
        raise StateTampered(
            "plan",
            plan.plan_id,
            plan.instance_id,
            f"step {step['id']} is not what plan approval {approval.action_id} approved",
        )


async def _reported_outputs(
    tx: Repository, plan: SubmittedPlan, uses: list[StepUse]
) -> dict[str, Json]:
    """The outputs ReportExecution reported for each step of the plan that ran (as stored
    in the step's DecisionRecord, redacted as policy said); a step not reported is absent."""
    outputs: dict[str, Json] = {}
    for use in uses:
        if use.plan_id != plan.plan_id:
            continue
        record = await tx.get_record_for_action(use.action_id)
        if record is not None and record.execution_state is ActionState.EXECUTED:
            outputs[use.step_id] = record.outputs
    return outputs


CONDITION_NOT_MET = "CONDITION_NOT_MET"


def unmet_condition(ctx: Context, match: StepMatch | None) -> PolicyDecision | None:
    """A denial when the call runs a step whose execute_when does not hold: its reason
    names the step, the condition and every value it read."""
    if match is None or match.condition is None or match.condition.holds:
        return None
    step, result = match.step, match.condition
    seen = ", ".join(f"{k}={json.dumps(v)}" for k, v in result.seen.items()) or "nothing"
    reason = (
        f"{CONDITION_NOT_MET}: step {step['id']} of plan {match.plan.plan_id} runs when "
        f"{json.dumps(step['execute_when'], separators=(',', ':'))}, which {result.why}; "
        f"it saw {seen}"
    )
    return PolicyDecision(
        effect=Effect.DENY, reasons=[reason], rule_ids=[CONDITION_NOT_MET], bundle=ctx.policy.bundle
    )


def covered_by_approval(decision: PolicyDecision, match: StepMatch | None) -> bool:
    """Whether the plan approval stands in for the human gates policy routes the call to:
    the step is gated, its approval is live, and policy asks for no gate it did not cover.
    It never stands in for a denial."""
    if match is None or match.approval is None:
        return False
    if decision.effect is not Effect.REQUIRE_APPROVAL:
        return False
    return set(decision.gate_ids) <= set(match.step["gate_ids"])


async def approvals_under_plan(
    tx: Repository, match: StepMatch, risk_class: RiskClass
) -> tuple[list[Approval], Json]:
    """The plan approval's approvals (for the step's record) and the record's plan_approval."""
    assert match.approval is not None
    record = await tx.get_record_for_action(match.approval.action_id)
    approvals = [
        replace(a, approval_mode_effective=risk_class.value.lower())
        for a in (record.approvals if record else [])
    ]
    approvers = list(dict.fromkeys(a.approver for a in approvals if a.verdict is Verdict.APPROVE))
    return approvals, {
        "action_id": match.approval.action_id,
        "plan_id": match.plan.plan_id,
        "plan_sha256": match.plan.plan_sha256,
        "step_id": match.step["id"],
        "approvers": approvers,
    }


async def record_use(tx: Repository, match: StepMatch, action: Action, now: datetime) -> None:
    """The step ran as `action`: no later call runs it again (the table's key says so)."""
    await tx.insert_step_use(
        StepUse(
            instance_id=action.instance_id,
            plan_id=match.plan.plan_id,
            step_id=match.step["id"],
            action_id=action.action_id,
            create_time=now,
        )
    )
